/**
 * A byte-transfer progress line on a terminal: `Uploading 12.3 MiB / 40.0 MiB (30%) 8.1 MiB/s`,
 * redrawn in place (carriage return + clear line) at most every 100 ms, replaced at the end by one
 * summary line. Off (every call does nothing) when the stream is not a terminal or for --json.
 */
import { formatBytes } from "../format-bytes.js";

/** Redraws closer together than this are skipped (the last state is drawn by finish). */
export const REDRAW_INTERVAL_MS = 100;

/** Carriage return and "erase the whole line". */
export const CLEAR_LINE = "\r\u001b[2K";

export interface Progress {
  /** `done` bytes so far, of `total` when known. */
  update(done: number, total?: number): void;
  /** Replaces the progress line with `summary(done, seconds)` and a newline; once. */
  finish(summary: (done: number, seconds: string) => string): void;
  /** Removes the progress line without a summary (failure or interruption). */
  clear(): void;
}

export interface ProgressOptions {
  /** `Uploading`, `Downloading`, ... */
  label: string;
  /** Draw only when true (a terminal, not --json). */
  enabled: boolean;
  /** Milliseconds clock (tests). */
  now?: () => number;
}

/** True when `stream` is a terminal. */
export function isTerminal(stream: NodeJS.WritableStream | NodeJS.ReadableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** The progress text for `done` of `total` bytes after `ms` milliseconds. */
export function progressText(label: string, done: number, total: number | undefined, ms: number): string {
  let text = `${label} ${formatBytes(done)}`;
  if (total !== undefined && total > 0) text += ` / ${formatBytes(total)} (${Math.min(100, Math.floor((done * 100) / total))}%)`;
  if (ms > 0) text += ` ${formatBytes(Math.round((done * 1000) / ms))}/s`;
  return text;
}

export function progress(stream: NodeJS.WritableStream, options: ProgressOptions): Progress {
  const now = options.now ?? (() => performance.now());
  const started = now();
  let drawnAt: number | undefined;
  let drawn = false;
  let ended = !options.enabled;
  let done = 0;
  return {
    update(bytes, total) {
      done = bytes;
      if (ended) return;
      const t = now();
      if (drawnAt !== undefined && t - drawnAt < REDRAW_INTERVAL_MS) return;
      drawnAt = t;
      stream.write(`${CLEAR_LINE}${progressText(options.label, bytes, total, t - started)}`);
      drawn = true;
    },
    finish(summary) {
      if (ended) return;
      ended = true;
      stream.write(`${drawn ? CLEAR_LINE : ""}${summary(done, ((now() - started) / 1000).toFixed(1))}\n`);
    },
    clear() {
      if (ended) return;
      ended = true;
      if (drawn) stream.write(CLEAR_LINE);
    },
  };
}
