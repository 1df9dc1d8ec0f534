import { readFile } from "node:fs/promises";
import { Command, Option } from "clipanion";
import type { DoctorReport, DoctorStep } from "../ops/doctor.js";
import { statePaths } from "../state/paths.js";
import { CaraCommand } from "./base.js";
import { localProbes, type LocalServerOptions } from "./local-server.js";
import { parsePortFlag, parseTimeout, CliUsageError } from "./target.js";
import { stripTerminalUnsafe } from "./terminal.js";

/** Flags shared by `cara doctor` and `cara bugreport`: which state dir, how to reach its server. */
export abstract class LocalCheckCommand extends CaraCommand {
  stateDir = Option.String("--state-dir", { description: "The state dir to examine (default: CARAPACE_STATE_DIR or ~/.config/carapace)" });
  port = Option.String("--port,-p", { description: "The port the server was started with, when not the configured one (compared with where it listens)" });
  tlsCa = Option.String("--tls-ca", { description: "PEM file of a CA to trust when the server uses TLS (default: its configured certificate)" });
  timeout = Option.String("--timeout", "5s", { description: "Give up on the server after this long per request (default 5s)" });

  /** The state dir's paths, the environment (with --port as CARAPACE_PORT) and how to reach its server. */
  protected async local(): Promise<LocalServerOptions> {
    const timeoutMs = parseTimeout(this.timeout);
    const env = { ...this.context.env };
    if (this.port !== undefined) env.CARAPACE_PORT = String(parsePortFlag(this.port));
    const options: LocalServerOptions = { paths: statePaths(this.resolveStateDir(this.stateDir)), env, timeoutMs };
    if (this.tlsCa !== undefined) {
      try {
        options.ca = await readFile(this.resolvePath(this.tlsCa));
      } catch (err) {
        throw new CliUsageError(`cannot read --tls-ca ${this.tlsCa}: ${(err as Error).message}`);
      }
    }
    return options;
  }
}

export class DoctorCommand extends LocalCheckCommand {
  static override paths = [["doctor"]];
  static override usage = Command.Usage({
    description: "Walk the first-response checklist: what is wrong, and the one thing to do next",
    details: `
      Works whether or not the server is up: it reads the state dir itself and asks the server (found at the
      address it recorded beside its lock) only what the server alone knows. In order:

      - server: is one running for this state dir (the lock), where it listens, does \`GET /health\` answer there, and does that match the configured port and bind; token: is it readable.
      - configuration: \`config.json\` is valid.
      - recent logs: the first failing component (server, tasks, agent provider, backup, update, auth) with its first occurrence and count, from the server's log ring, or from the log files when it is down.
      - stores: the task queue and schedules load (or the corrupt file and the copy kept of it).
      - agent provider settings when agentTurn tasks wait; TLS files readable and not expiring within 14 days; the server secret set (not generated); the state dir's owner and modes.
      - the update transaction and any rollback; an interrupted restore.
      - backups: the newest archive that verifies with this deployment's secret, and its age.

      Each step prints \`ok\`, \`warn\` or \`fail\` with what was found and, unless ok, the next action. When a step
      fails and an archive verifies, the exact \`cara restore\` command for it follows. Exit code 0 when no step
      fails (warnings allowed), 1 when any fails.
    `,
    examples: [
      ["Check the local deployment", "cara doctor"],
      ["Another state dir, as JSON for a script", "cara doctor --state-dir /srv/carapace --json"],
      ["A server started with --port 18800", "cara doctor --port 18800"],
    ],
  });

  json = Option.Boolean("--json", false, { description: "Print the report as one JSON document" });

  async run(): Promise<number> {
    const local = await this.local();
    const { runDoctor } = await import("../ops/doctor.js");
    const report = await runDoctor({ paths: local.paths, env: local.env, probes: localProbes(local) });
    this.print(report, { json: this.json, human: () => formatDoctorReport(report) });
    return report.verdict === "fail" ? 1 : 0;
  }
}

/** The human form of a report: one line per step, its next action indented, the verdict, the restore command. */
export function formatDoctorReport(r: DoctorReport): string[] {
  const clean = stripTerminalUnsafe;
  const lines = [`cara doctor: ${clean(r.stateDir)}`, ""];
  for (const s of r.steps) {
    lines.push(`${s.status.padEnd(4)}  ${clean(s.title)} — ${clean(s.summary)}`);
    for (const d of s.details ?? []) lines.push(`        ${clean(d)}`);
    if (s.next) lines.push(`      → ${clean(s.next)}`);
  }
  lines.push("", verdictLine(r.steps, r.verdict));
  if (r.restore) {
    lines.push(`To restore the newest verified backup (${r.restore.ageDays} days old):`, `  ${clean(r.restore.command)}`);
  }
  return lines;
}

function verdictLine(steps: DoctorStep[], verdict: DoctorReport["verdict"]): string {
  const count = (status: DoctorStep["status"]) => steps.filter((s) => s.status === status).length;
  const fails = count("fail");
  const warns = count("warn");
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (verdict === "fail") return `Verdict: FAIL (${plural(fails, "step")} failing${warns ? `, ${plural(warns, "warning")}` : ""})`;
  if (verdict === "warn") return `Verdict: WARN (${plural(warns, "warning")}, nothing failing)`;
  return `Verdict: OK (all ${steps.length} steps ok)`;
}
