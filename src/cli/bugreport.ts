import { lstat } from "node:fs/promises";
import { dirname } from "node:path";
import { Command, Option } from "clipanion";
import { liveServerAddress } from "../state/server-address.js";
import { LocalCheckCommand } from "./doctor.js";
import { localProbes, serverSnapshot } from "./local-server.js";
import { bytes, columns } from "./output.js";
import { CliFailure, CliUsageError } from "./target.js";
import { stripTerminalUnsafe } from "./terminal.js";

export class BugreportCommand extends LocalCheckCommand {
  static override paths = [["bugreport"]];
  static override usage = Command.Usage({
    description: "Pack what an issue needs into one .tar.gz (secrets redacted, no task payloads)",
    details: `
      Writes a \`.tar.gz\` (mode 0600) holding the doctor report (\`cara doctor --json\`), the server's status when it
      is up, the last log records (from the server's ring, or the log files when it is down), \`config.json\`, the
      versions of cara, Node.js, the OS and architecture, the update transaction and rollback marker, and the
      number of tasks per state. Every value goes through the redaction the logs use, and the token, the server
      secret and CARAPACE_AGENT_API_KEY are removed wherever they appear. Never included: \`auth/\` (token, server
      secret), backups, the task store files, task payloads (unless --include-payloads, and then redacted).

      Prints the file written, what it contains and what it left out. Works whether or not the server is up.
      An existing file is never overwritten.
    `,
    examples: [
      ["Write cara-bugreport-<time>.tar.gz here", "cara bugreport"],
      ["Choose the file, with more log lines", "cara bugreport -o /tmp/report.tar.gz --lines 5000"],
      ["Include task payloads (redacted)", "cara bugreport --include-payloads"],
      ["The summary as JSON", "cara bugreport --json"],
    ],
  });

  output = Option.String("-o,--output", { description: "File to write (default: ./cara-bugreport-<time>.tar.gz)" });
  includePayloads = Option.Boolean("--include-payloads", false, { description: "Include every task with its payload (redacted)" });
  lines = Option.String("--lines,-n", "1000", { description: "How many recent log records to include (1-5000, default 1000)" });
  json = Option.Boolean("--json", false, { description: 'Print {"path","bytes","contains","leftOut"} and nothing else' });

  async run(): Promise<number> {
    const { bugreportFileName, bugreportLines, writeBugreport } = await import("../ops/bugreport.js");
    if (!/^\d+$/.test(this.lines)) throw new CliUsageError(`--lines must be from 1 to 5000 (got '${this.lines}')`);
    let lines: number;
    try {
      lines = bugreportLines(Number(this.lines) || -1);
    } catch {
      throw new CliUsageError(`--lines must be from 1 to 5000 (got '${this.lines}')`);
    }
    const output = this.resolvePath(this.output ?? bugreportFileName());
    if (
      await lstat(output).then(
        () => true,
        () => false,
      )
    )
      throw new CliUsageError(`${output} exists already; choose another file with -o, or remove it`);
    const parent = await lstat(dirname(output)).catch(() => undefined);
    if (!parent?.isDirectory()) throw new CliUsageError(`cannot write ${output}: ${dirname(output)} is not a directory`);
    const local = await this.local();
    const { runDoctor } = await import("../ops/doctor.js");
    const { VERSION } = await import("../package-info.js");
    const doctor = await runDoctor({ paths: local.paths, env: local.env, probes: localProbes(local) });
    const address = doctor.server.url ? await liveServerAddress(local.paths.root) : undefined;
    const snapshot = address ? await serverSnapshot(address.url, lines, local) : {};
    let result;
    try {
      result = await writeBugreport({
        paths: local.paths,
        env: local.env,
        output,
        doctor,
        version: VERSION,
        logLines: lines,
        includePayloads: this.includePayloads,
        ...(snapshot.status !== undefined ? { status: snapshot.status } : {}),
        ...(snapshot.ringLogs ? { ringLogs: snapshot.ringLogs } : {}),
        ...(snapshot.problem ? { leftOut: [`the server's status and log ring: ${snapshot.problem}`] } : {}),
      });
    } catch (err) {
      throw new CliFailure(`could not write ${output}: ${(err as Error).message}`);
    }
    const clean = stripTerminalUnsafe;
    this.print(result, {
      json: this.json,
      human: () => [
        `Wrote ${clean(result.path)} (${bytes(result.bytes)}, mode 0600)`,
        "",
        "Contains:",
        ...columns(result.contains.map((c) => [c.name, clean(c.what)])).map((l) => `  ${l}`),
        "",
        "Left out:",
        ...result.leftOut.map((l) => `  ${clean(l)}`),
        "",
        this.includePayloads
          ? "Task payloads are inside (redacted): read them before you share the file."
          : "No token, secret, API key or task payload is inside; attach it to the issue with the exact steps that led there.",
      ],
    });
    return 0;
  }
}
