/**
 * Reading the log files when the server is down (or on purpose): `<state>/logs/cara.log` and its
 * rotated predecessors (`cara.log.1` is the newest of those), oldest first, with the same
 * filters as the ring (level, text in message, component or fields, pattern) plus a time floor.
 * The files hold redacted JSON lines, one record each, as the server wrote them; a line that is
 * not a record (cut by a crash) is skipped and counted.
 */
import { createReadStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { entryFromRecord } from "./log-pipeline.js";
import { compileFilter, entryMatches, levelRank, type LogFilter, type NewLogEntry } from "./log-ring.js";

export const LOG_FILE_NAME = "cara.log";

export interface FileLogEntry extends NewLogEntry {
  /** Which file, and the line number in it (from 1). */
  file: string;
  line: number;
}

export interface FileLogQuery extends LogFilter {
  /** The newest this many matching records (default 200). */
  limit?: number;
  /** Read only this file instead of the rotated set in `logsDir`. */
  file?: string;
  /** Read these files, in this order, instead of the rotated set in `logsDir`. */
  files?: string[];
}

export interface FileLogResult {
  entries: FileLogEntry[];
  /** Files read, oldest first. */
  files: string[];
  /** Lines that were not JSON records. */
  skippedLines: number;
  /** More records matched than `limit`: the oldest were left out. */
  truncated: boolean;
}

/**
 * The log files of a state dir's `logs/`, oldest first: cara.log.N ... cara.log.1, cara.log (or
 * `base` and its rotated predecessors `base.N`).
 */
export async function logFiles(logsDir: string, base = LOG_FILE_NAME): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(logsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const rotated = names
    .map((n) => ({ n, k: n.startsWith(`${base}.`) && /^\d+$/.test(n.slice(base.length + 1)) ? Number(n.slice(base.length + 1)) : Number.NaN }))
    .filter((x) => Number.isInteger(x.k) && x.k > 0)
    .sort((a, b) => b.k - a.k)
    .map((x) => join(logsDir, x.n));
  return [...rotated, ...(names.includes(base) ? [join(logsDir, base)] : [])];
}

/** Reads the matching records of the log files (see the module comment). */
export async function readLogFiles(logsDir: string, query: FileLogQuery = {}): Promise<FileLogResult> {
  const files = query.files ?? (query.file !== undefined ? [query.file] : await logFiles(logsDir));
  const limit = query.limit ?? 200;
  const filter = compileFilter(query);
  const kept: FileLogEntry[] = [];
  let head = 0;
  let skippedLines = 0;
  let matched = 0;
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
    let n = 0;
    for await (const text of lines) {
      n++;
      if (text === "") continue;
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(text) as Record<string, unknown>;
        if (typeof record !== "object" || record === null || Array.isArray(record)) throw new Error("not an object");
      } catch {
        skippedLines++;
        continue;
      }
      const e = entryFromRecord(record);
      if (levelRank(e.level) < filter.minRank || !entryMatches(e, filter)) continue;
      matched++;
      // Keep the newest `limit`: a ring over the matches.
      if (kept.length < limit) kept.push({ ...e, file, line: n });
      else {
        kept[head] = { ...e, file, line: n };
        head = (head + 1) % limit;
      }
    }
  }
  const entries = limit > 0 ? [...kept.slice(head), ...kept.slice(0, head)] : [];
  return { entries, files, skippedLines, truncated: matched > entries.length };
}

/**
 * Parses `--since`: a duration back from now (`90s`, `10m`, `2h`, `3d`) or an ISO 8601 time.
 * Returns Unix ms, or throws with what is accepted.
 */
export function parseSince(value: string, now = Date.now()): number {
  const v = value.trim();
  const rel = /^(\d+)(s|m|h|d)$/.exec(v);
  if (rel) return now - Number(rel[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"];
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new Error(`--since must be a duration like 10m, 2h or 3d, or an ISO time like 2026-12-05T03:00:00Z (got '${value.slice(0, 60)}')`);
}
