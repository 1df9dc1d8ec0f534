import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { basename, dirname } from "node:path";
import { Command, Option } from "clipanion";
import { LogLevel, OpsService, type LogEntry } from "../../gen/carapace/ops/v1/ops_pb.js";
import { statePaths } from "../state/paths.js";
import { logLevelNames } from "../wire/ops.js";
import { ClientCommand } from "./base.js";
import { describeError, isConnectionRefused, rpcClient } from "./rpc.js";
import { stripTerminalUnsafe } from "./terminal.js";
import { CliFailure, CliUsageError, isLoopbackHost } from "./target.js";
import { formatCount } from "../format-count.js";
import { printJsonLine } from "./output.js";
import { errorFacts } from "./json-error.js";

/** A level's name ("warn"); "" when unset, "info" for a level this build does not know. */
const levelName = (level: LogLevel) => (level === LogLevel.UNSPECIFIED ? "" : (logLevelNames.name(level) ?? "info"));

function formatValue(v: unknown): string {
  return typeof v === "string" ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v);
}

/** One record as printed, from the server's ring or from a log file. */
interface LogLine {
  seq?: number;
  /** Unix ms, or undefined when the record has none. */
  time: number | undefined;
  level: string;
  component: string;
  message: string;
  fields: Record<string, unknown>;
  file?: string;
  line?: number;
}

const fromWire = (e: LogEntry): LogLine => ({
  seq: Number(e.seq),
  time: e.time ? timestampMs(e.time) : undefined,
  level: levelName(e.level),
  component: e.component,
  message: e.message,
  fields: (e.fields ?? {}) as Record<string, unknown>,
});

export class LogsCommand extends ClientCommand {
  static override paths = [["logs"]];
  static override usage = Command.Usage({
    description: "Show the server's recent log lines (redacted), or follow them live; reads the log files when the server is down",
    details: `
      Reads the running server's in-memory log ring (the lines of this process). When no server answers on this
      machine, or with \`--offline\`, it reads the log files instead (\`<state>/logs/cara.log\` and its rotated
      predecessors, oldest first), so lines from before a restart or a crash are reachable; \`--file PATH\` reads
      another log file and its rotated predecessors (PATH.1, PATH.2, ...). The same filters apply on both paths.
      Secrets (tokens, API keys, passwords, the server's own token and secret) were redacted by the server.
      With \`--follow\`, new lines stream as they are logged until Ctrl-C (exit 0).
    `,
    examples: [
      ["The last 200 lines", "cara logs"],
      ["Warnings and errors from the last 1000 lines", "cara logs -n 1000 --level warn"],
      ["The last ten minutes", "cara logs --since 10m"],
      ["Follow lines mentioning a task", "cara logs -f --grep 7c0e"],
      ["The log files, without asking the server", "cara logs --offline --since 2h --level error"],
      ["A copied log file (and its rotated predecessors)", "cara logs --file ./cara.log --grep backup"],
      ["As JSON lines, for jq", "cara logs --json | jq .message"],
    ],
  });

  lines = Option.String("-n,--lines", "200", { description: "How many recent lines (1-5000, default 200)" });
  follow = Option.Boolean("-f,--follow", false, { description: "Keep streaming new lines" });
  level = Option.String("--level", { description: "Only this level and above: trace, debug, info, warn, error, fatal" });
  grep = Option.String("--grep", { description: "Only lines whose message, component or a field value contains this text" });
  pattern = Option.String("--pattern", { description: "Only lines whose message matches this regular expression" });
  since = Option.String("--since", { description: "Only lines from the last 10m, 2h, 3d ..., or since an ISO time" });
  offline = Option.Boolean("--offline", false, { description: "Read the log files of --state-dir without asking the server" });
  file = Option.String("--file", { description: "Read this log file (and its rotated predecessors) instead of the server" });
  json = Option.Boolean("--json", false, { description: "One JSON object per line" });

  async run(): Promise<number> {
    if (!/^\d+$/.test(this.lines) || Number(this.lines) < 1 || Number(this.lines) > 5000)
      throw new CliUsageError(`--lines must be from 1 to 5000 (got '${this.lines}')`);
    const limit = Number(this.lines);
    let minLevel: LogLevel | undefined;
    if (this.level !== undefined) {
      const name = this.level.toLowerCase();
      minLevel = logLevelNames.value(name === "warning" ? "warn" : name);
      if (minLevel === undefined) throw new CliUsageError(`--level must be one of ${logLevelNames.names.join(", ")} (got '${this.level}')`);
    }
    let sinceMs: number | undefined;
    if (this.since !== undefined) {
      const { parseSince } = await import("../ops/log-files.js");
      try {
        sinceMs = parseSince(this.since);
      } catch (err) {
        throw new CliUsageError((err as Error).message);
      }
    }
    const local = this.offline || this.file !== undefined;
    if (this.offline && this.file !== undefined) throw new CliUsageError("--offline reads <state>/logs/ and --file reads the file named: pick one");
    if (local && this.follow)
      throw new CliUsageError("--follow streams from the server; the log files are read once (drop --follow, or drop --offline/--file)");
    if (local) return this.fromFiles(limit, minLevel, sinceMs, undefined);

    const target = await this.target();
    const filter = {
      ...(minLevel ? { minLevel } : {}),
      contains: this.grep ?? "",
      pattern: this.pattern ?? "",
      ...(sinceMs !== undefined ? { since: timestampFromMs(sinceMs) } : {}),
    };
    // A server older than `since` ignores it: the floor is applied here too.
    const print = (e: LogLine) => {
      if (sinceMs === undefined || e.time === undefined || e.time >= sinceMs) this.print1(e);
    };
    const timeoutMs = this.timeoutMs(30_000);
    const client = await rpcClient(OpsService, target, timeoutMs);
    try {
      // The recent lines come first, from TailLogs (answered at once, so a hung server is found
      // within --timeout); a follow then resumes after them and may stay quiet for as long as
      // nothing matches.
      const res = await client.tailLogs({ limit, filter });
      if (res.reset) this.context.stderr.write("(older lines were dropped from the server's ring)\n");
      for (const e of res.entries) print(fromWire(e));
      if (res.truncated) this.context.stderr.write("(output cut at the size limit; narrow it with --level/--grep or fewer --lines)\n");
      if (!this.follow) return 0;
      const follower = await rpcClient(OpsService, target, 0, { quietStream: true });
      const stop = this.interruption();
      try {
        for await (const msg of follower.followLogs({ tail: 0, afterSeq: res.nextSeq, filter }, { signal: stop.signal, timeoutMs: 0 })) {
          if (msg.event.case === "entry") print(fromWire(msg.event.value));
          else if (msg.event.case === "dropped")
            this.context.stderr.write(`(${formatCount(msg.event.value, "line")} skipped: this terminal read too slowly)\n`);
        }
        this.context.stderr.write("(the server closed the stream: it is shutting down)\n");
      } catch (err) {
        if (stop.signal.aborted) return 0;
        throw err;
      } finally {
        stop.dispose();
      }
      return 0;
    } catch (err) {
      if (err instanceof CliFailure || err instanceof CliUsageError) throw err;
      // Nothing listens on this machine: the log files say what happened.
      if (!this.follow && isConnectionRefused(err) && isLoopbackHost(target.host)) return this.fromFiles(limit, minLevel, sinceMs, target.display);
      throw new CliFailure(describeError(err, target, timeoutMs, "logs"), errorFacts(err));
    }
  }

  /** Reads the log files (see the details above); `down` is the address that did not answer. */
  private async fromFiles(limit: number, minLevel: LogLevel | undefined, sinceMs: number | undefined, down: string | undefined): Promise<number> {
    const { logFiles, readLogFiles } = await import("../ops/log-files.js");
    const { compileLogPattern, loadLogPatternEngine } = await import("../ops/log-pattern.js");
    await loadLogPatternEngine();
    let files: string[];
    let where: string;
    if (this.file !== undefined) {
      const path = this.resolvePath(this.file);
      files = (await logFiles(dirname(path), basename(path)).catch(() => [])).filter((f) => f !== path);
      files.push(path);
      where = this.file;
    } else {
      const logsDir = statePaths(this.resolveStateDir(this.stateDir)).logsDir;
      files = await logFiles(logsDir).catch((err: Error) => {
        throw new CliFailure(`cannot read ${logsDir}: ${err.message}`);
      });
      where = logsDir;
      if (files.length === 0)
        throw new CliFailure(
          `${down ? `no server answers at ${down}, and there are` : "there are"} no log files in ${logsDir} (is this the server's --state-dir?)`,
        );
    }
    let pattern;
    if (this.pattern !== undefined && this.pattern !== "") {
      try {
        pattern = compileLogPattern(this.pattern);
      } catch (err) {
        throw new CliUsageError(`--pattern: ${(err as Error).message}`);
      }
    }
    const level = minLevel !== undefined ? (levelName(minLevel) as "info") : undefined;
    const res = await readLogFiles("", {
      files,
      limit,
      ...(level ? { minLevel: level } : {}),
      ...(this.grep ? { contains: this.grep } : {}),
      ...(pattern ? { pattern } : {}),
      ...(sinceMs !== undefined ? { sinceMs } : {}),
    }).catch((err: NodeJS.ErrnoException) => {
      throw new CliFailure(err.code === "ENOENT" ? `no such log file: ${where}` : `cannot read ${err.path ?? where}: ${err.message}`);
    });
    const err = this.context.stderr;
    err.write(`(${down ? `no server answers at ${down}: ` : ""}reading ${res.files.map((f) => basename(f)).join(", ")} in ${dirname(res.files[0]!)})\n`);
    for (const e of res.entries)
      this.print1({ time: e.time, level: e.level, component: e.component, message: e.message, fields: { ...e.fields }, file: e.file, line: e.line });
    if (res.truncated) err.write(`(more lines matched: these are the newest ${limit}; raise --lines or narrow with --since)\n`);
    if (res.skippedLines > 0) err.write(`(${res.skippedLines === 1 ? "1 line was" : `${res.skippedLines} lines were`} not a log record and skipped)\n`);
    return 0;
  }

  private print1(e: LogLine): void {
    if (this.json) printJsonLine(this.context.stdout, this.entryJson(e));
    else this.context.stdout.write(this.human(e));
  }

  private entryJson(e: LogLine) {
    return {
      ...(e.seq !== undefined ? { seq: e.seq } : {}),
      time: e.time !== undefined ? new Date(e.time).toISOString() : null,
      level: e.level,
      component: e.component,
      message: e.message,
      fields: e.fields,
      ...(e.file !== undefined ? { file: e.file, line: e.line } : {}),
    };
  }

  private human(e: LogLine): string {
    const p = this.painter();
    const time = e.time !== undefined ? new Date(e.time).toISOString() : "-";
    const name = e.level.toUpperCase().padEnd(5);
    const rank = ["trace", "debug", "info", "warn", "error", "fatal"].indexOf(e.level);
    const level = rank >= 4 ? p.red(name) : rank === 3 ? p.yellow(name) : rank >= 0 && rank <= 1 ? p.dim(name) : name;
    const fields = Object.entries(e.fields)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    return `${time} ${level} ${stripTerminalUnsafe(e.component || "-")}  ${stripTerminalUnsafe(e.message)}${fields ? ` ${stripTerminalUnsafe(fields)}` : ""}\n`;
  }
}
