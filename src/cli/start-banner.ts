/**
 * `cara start` on a terminal: a short banner (where the server listens, the console, where the
 * token is, what to run next) and log lines as text, instead of JSON lines. Off a terminal the
 * server writes JSON lines to stdout as always; the log file is JSON either way.
 */
import { statePaths } from "../state/paths.js";
import { stripTerminalUnsafe, type Painter } from "./terminal.js";

export interface BannerFacts {
  version: string;
  url: string;
  consoleUrl?: string;
  stateDir: string;
  tokenSource: "env" | "file";
}

/** The banner's lines. */
export function startBanner(f: BannerFacts, paint: Painter): string[] {
  const token = f.tokenSource === "env" ? "CARAPACE_GATEWAY_TOKEN (from the environment)" : statePaths(f.stateDir).token;
  return [
    paint.bold(`cara ${f.version} is running`),
    `  API:      ${f.url}`,
    ...(f.consoleUrl ? [`  Console:  ${f.consoleUrl}`] : []),
    `  Token:    ${token}`,
    `  State:    ${f.stateDir}`,
    `Next: run 'cara status' in another terminal. Ctrl-C stops the server.`,
  ];
}

const LEVEL_NAMES: Record<string, string> = { trace: "trace", debug: "debug", info: "info", warn: "warning", error: "error", fatal: "fatal" };

/**
 * A log sink that writes each JSON line as `HH:MM:SS level: message`. The "listening" line is
 * left out (the banner says it); a line that is not JSON is written as it came.
 */
export function humanLogSink(out: NodeJS.WritableStream, paint: Painter): { write(chunk: string): boolean } {
  return {
    write(chunk: string): boolean {
      for (const line of chunk.split("\n")) {
        if (line === "") continue;
        let record: { level?: unknown; time?: unknown; msg?: unknown; err?: unknown; port?: unknown };
        try {
          record = JSON.parse(line) as typeof record;
        } catch {
          out.write(`${stripTerminalUnsafe(line)}\n`);
          continue;
        }
        const msg = typeof record.msg === "string" ? record.msg : "";
        if (record.port !== undefined && msg.startsWith("listening on ")) continue;
        const time = typeof record.time === "string" ? record.time.slice(11, 19) : "";
        const level = LEVEL_NAMES[String(record.level)] ?? String(record.level);
        const colour = level === "warning" ? paint.yellow : level === "error" || level === "fatal" ? paint.red : (s: string) => s;
        const err = typeof record.err === "string" ? ` (${record.err})` : "";
        out.write(`${paint.dim(time)} ${colour(`${level}:`)} ${stripTerminalUnsafe(msg + err)}\n`);
      }
      return true;
    },
  };
}
