import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "clipanion";
import { LogLevel, OpsService, type LogEntry } from "../../gen/carapace/ops/v1/ops_pb.js";
import { logLevelNames } from "../wire/ops.js";
import { ClientCommand } from "./base.js";
import { stripTerminalUnsafe } from "./terminal.js";
import { CliUsageError } from "./target.js";
import { formatCount } from "../format-count.js";
import { printJsonLine } from "./output.js";

/** A level's name ("warn"); "" when unset, "info" for a level this build does not know. */
const levelName = (level: LogLevel) => (level === LogLevel.UNSPECIFIED ? "" : (logLevelNames.name(level) ?? "info"));

function formatValue(v: unknown): string {
  return typeof v === "string" ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v);
}

export class LogsCommand extends ClientCommand {
  static override paths = [["logs"]];
  static override usage = Command.Usage({
    description: "Show the server's recent log lines (redacted), or follow them live",
    details: `
      Reads the running server's in-memory log ring (the lines of this process, never a stale file).
      Secrets (tokens, API keys, passwords, the server's own token and secret) are redacted by the server.
      With \`--follow\`, new lines stream as they are logged until Ctrl-C (exit 0).
    `,
    examples: [
      ["The last 200 lines", "cara logs"],
      ["Warnings and errors from the last 1000 lines", "cara logs -n 1000 --level warn"],
      ["Follow lines mentioning a task", "cara logs -f --grep 7c0e"],
      ["As JSON lines, for jq", "cara logs --json | jq .message"],
    ],
  });

  lines = Option.String("-n,--lines", "200", { description: "How many recent lines (1-5000, default 200)" });
  follow = Option.Boolean("-f,--follow", false, { description: "Keep streaming new lines" });
  level = Option.String("--level", { description: "Only this level and above: trace, debug, info, warn, error, fatal" });
  grep = Option.String("--grep", { description: "Only lines whose message or component contains this text" });
  pattern = Option.String("--pattern", { description: "Only lines whose message matches this regular expression" });
  json = Option.Boolean("--json", false, { description: "One JSON object per line" });

  async run(): Promise<number> {
    if (!/^\d+$/.test(this.lines) || Number(this.lines) < 1 || Number(this.lines) > 5000) throw new CliUsageError(`--lines must be from 1 to 5000 (got '${this.lines}')`);
    const limit = Number(this.lines);
    let minLevel: LogLevel | undefined;
    if (this.level !== undefined) {
      const name = this.level.toLowerCase();
      minLevel = logLevelNames.value(name === "warning" ? "warn" : name);
      if (minLevel === undefined) throw new CliUsageError(`--level must be one of ${logLevelNames.names.join(", ")} (got '${this.level}')`);
    }
    const filter = { ...(minLevel ? { minLevel } : {}), contains: this.grep ?? "", pattern: this.pattern ?? "" };
    const out = this.context.stdout;
    const print = (e: LogEntry) => (this.json ? printJsonLine(out, this.entryJson(e)) : out.write(this.human(e)));
    return this.withClient(OpsService, this.follow ? 0 : 10_000, async (client) => {
      if (!this.follow) {
        const res = await client.tailLogs({ limit, filter });
        if (res.reset) this.context.stderr.write("(older lines were dropped from the server's ring)\n");
        for (const e of res.entries) print(e);
        if (res.truncated) this.context.stderr.write("(output cut at the size limit; narrow it with --level/--grep or fewer --lines)\n");
        return 0;
      }
      const stop = this.interruption();
      try {
        for await (const msg of client.followLogs({ tail: limit, filter }, { signal: stop.signal, timeoutMs: 0 })) {
          if (msg.event.case === "entry") print(msg.event.value);
          else if (msg.event.case === "dropped") this.context.stderr.write(`(${formatCount(msg.event.value, "line")} skipped: this terminal read too slowly)\n`);
        }
        this.context.stderr.write("(the server closed the stream: it is shutting down)\n");
      } catch (err) {
        if (stop.signal.aborted) return 0;
        throw err;
      } finally {
        stop.dispose();
      }
      return 0;
    });
  }

  private entryJson(e: LogEntry) {
    return {
      seq: Number(e.seq),
      time: e.time ? new Date(timestampMs(e.time)).toISOString() : null,
      level: levelName(e.level),
      component: e.component,
      message: e.message,
      fields: e.fields ?? {},
    };
  }

  private human(e: LogEntry): string {
    const p = this.painter();
    const time = e.time ? new Date(timestampMs(e.time)).toISOString() : "-";
    const name = levelName(e.level).toUpperCase().padEnd(5);
    const level = e.level >= LogLevel.ERROR ? p.red(name) : e.level === LogLevel.WARN ? p.yellow(name) : e.level <= LogLevel.DEBUG ? p.dim(name) : name;
    const fields = Object.entries(e.fields ?? {})
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    return `${time} ${level} ${stripTerminalUnsafe(e.component || "-")}  ${stripTerminalUnsafe(e.message)}${fields ? ` ${stripTerminalUnsafe(fields)}` : ""}\n`;
  }
}
