import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "clipanion";
import { AuthMode, CheckStatus, GetStatusResponseSchema, OpsService, SecretSource, type GetStatusResponse } from "../../gen/carapace/ops/v1/ops_pb.js";
import { ClientCommand } from "./base.js";
import { httpGet } from "./http-probe.js";
import { messageToCliJson } from "./json.js";
import { errorFacts } from "./json-error.js";
import { bytes } from "./output.js";
import { formatCount } from "../format-count.js";
import { describeError, rpcClient } from "./rpc.js";
import { formatDuration, stripTerminalUnsafe } from "./terminal.js";
import { CliFailure, parseTimeout, type Target } from "./target.js";

interface HealthBody {
  status?: string;
  uptimeSeconds?: number;
  version?: string;
}

export class StatusCommand extends ClientCommand {
  static override paths = [["status"]];
  static override usage = Command.Usage({
    description: "Show whether the server is healthy, and why",
    details: `
      Calls \`GET /health\` (is it up?) and then \`OpsService.GetStatus\` with the local token (what does it
      report?). Prints a one-line verdict and every check. Exit code 0 when the server is up and no check
      fails (warnings allowed), 1 when it is down, rejects the token, or a check fails.
    `,
    examples: [
      ["Status of the local server", "cara status"],
      ["Another port, as JSON", "cara status --port 18800 --json"],
      ["A remote server over TLS", "cara status --host ops.example.com --tls"],
    ],
  });

  json = Option.Boolean("--json", false, { description: 'Print {"health":{...},"status":{...}} and nothing else' });
  override timeout = Option.String("--timeout", "5s", { description: "Give up after this long per request (default 5s)" });

  async run(): Promise<number> {
    const timeoutMs = parseTimeout(this.timeout);
    const target = await this.target();
    let health: HealthBody;
    try {
      const res = await httpGet(target, "/health", timeoutMs);
      if (res.contentType !== "application/json") {
        throw new CliFailure(
          `${target.display} answered HTTP ${res.status} ${res.contentType || "without a content type"}: that is not a cara server (check --host and --port)`,
        );
      }
      if (res.status < 200 || res.status > 299) {
        throw new CliFailure(`Health endpoint of ${target.display} returned HTTP ${res.status}: ${stripTerminalUnsafe(res.body.slice(0, 500))}`);
      }
      health = JSON.parse(res.body) as HealthBody;
    } catch (err) {
      if (err instanceof CliFailure) throw err;
      if (err instanceof SyntaxError) throw new CliFailure(`Health endpoint of ${target.display} did not answer JSON: is that a carapace server?`);
      throw new CliFailure(describeError(err, target, timeoutMs, "status"), errorFacts(err));
    }
    let status: GetStatusResponse;
    try {
      const client = await rpcClient(OpsService, target, timeoutMs);
      status = await client.getStatus({});
    } catch (err) {
      throw new CliFailure(describeError(err, target, timeoutMs, "status"), errorFacts(err));
    }
    const failing = status.checks.some((c) => c.status === CheckStatus.FAIL) || status.shuttingDown;
    if (this.json) {
      this.printJson({ health, status: messageToCliJson(GetStatusResponseSchema, status) });
    } else {
      this.printHuman(target, status);
    }
    return failing ? 1 : 0;
  }

  private printHuman(target: Target, s: GetStatusResponse): void {
    const out = this.context.stdout;
    const p = this.painter();
    const clean = stripTerminalUnsafe;
    const warns = s.checks.filter((c) => c.status === CheckStatus.WARN).length;
    const fails = s.checks.filter((c) => c.status === CheckStatus.FAIL).length;
    const verdict =
      fails > 0 || s.shuttingDown
        ? p.red(`FAILING (${fails} failing${warns ? `, ${warns} warning${warns > 1 ? "s" : ""}` : ""})`)
        : warns > 0
          ? p.yellow(`DEGRADED (${warns} warning${warns > 1 ? "s" : ""})`)
          : p.green("HEALTHY");
    out.write(`carapace ${clean(s.version)} at ${target.display}: ${p.bold(verdict)}, up ${formatDuration(Number(s.uptimeSeconds))}\n`);
    const width = Math.max(...s.checks.map((c) => c.name.length), 4);
    for (const c of s.checks) {
      const label = c.status === CheckStatus.OK ? p.green("ok  ") : c.status === CheckStatus.WARN ? p.yellow("warn") : p.red("fail");
      out.write(`  ${label}  ${clean(c.name).padEnd(width)}  ${clean(c.message)}\n`);
    }
    const tokenFrom = s.authMode === AuthMode.TOKEN_ENV ? "CARAPACE_GATEWAY_TOKEN" : "<state>/auth/token";
    const secretFrom = s.secretSource === SecretSource.ENV ? "CARAPACE_SERVER_SECRET" : "generated (<state>/auth/server-secret)";
    const rows: [string, string][] = [
      ["Version", `${clean(s.version)} (node ${clean(s.nodeVersion)}, ${clean(s.platform)}/${clean(s.arch)}, pid ${s.pid})`],
      ["Listening", `${clean(s.bind)}:${s.port} (${s.tls ? "TLS" : "plaintext"})`],
      ["Started", s.startedAt ? timestampDate(s.startedAt).toISOString() : "unknown"],
      ["State dir", clean(s.stateDir)],
      ["Auth", `bearer token from ${tokenFrom}; server secret ${secretFrom}`],
    ];
    if (s.diagnostics) {
      rows.push(["Process", `${bytes(Number(s.diagnostics.memoryRssBytes))} RSS, ${formatCount(s.diagnostics.openFds, "open file")}`]);
    }
    out.write("\n");
    for (const [k, v] of rows) out.write(`  ${`${k}:`.padEnd(11)} ${v}\n`);
    if (s.shuttingDown) out.write(p.red("  The server is shutting down.\n"));
  }
}
