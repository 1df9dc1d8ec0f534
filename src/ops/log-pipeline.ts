/**
 * The log pipeline: a pino destination that redacts every JSON line once and writes the result
 * to stdout (JSON lines), the rotating file and the in-memory ring.
 *
 * Fast path: a line that is plain ASCII with no escape, no trigger word and no known secret
 * (`lineNeedsRedaction`) is written as is, and the ring keeps the line itself, decoded only when
 * read. Other lines are parsed, redacted field by field and re-serialized.
 */
import { pino, type DestinationStream } from "pino";
import { RotatingLogFile, type RotatingFileOptions } from "./log-file.js";
import { LogRing, LOG_LEVELS, type LogLevel, type NewLogEntry } from "./log-ring.js";
import { lineNeedsRedaction, redactFields } from "./redact.js";

/** Where stdout lines go: pino's SonicBoom destination, a Writable, or a test collector. */
export interface LineSink {
  write(line: string): unknown;
  flushSync?(): void;
}

export interface LogPipelineOptions {
  /** Ring capacity in records (default 5,000, at most 50,000). */
  ringCapacity?: number;
  /** Ring memory budget in approximate bytes (default 64 MiB). */
  ringMaxBytes?: number;
  /** The rotating file, or null/undefined for none. */
  file?: RotatingFileOptions | null;
  /** Stdout sink; undefined = asynchronous fd 1 (pino.destination, 16 MiB buffer cap), null = none. */
  stdout?: LineSink | null;
  /** Exact values to redact wherever they appear (the server's token and secret). */
  knownSecrets?: readonly string[];
  /** Longer lines have their long strings shortened after redaction (default 16 KiB). */
  maxLineLength?: number;
}

export interface LogPipeline {
  /** Give this to pino (`createLogger(level, pipeline.destination)`). */
  readonly destination: DestinationStream;
  readonly ring: LogRing;
  /** The rotating file, or null when file logging is off. */
  readonly file: RotatingLogFile | null;
  /** Replaces the exact values redacted everywhere (call once the credentials are loaded). */
  setKnownSecrets(values: readonly string[]): void;
  /** Writes buffered file and stdout output now (synchronous). */
  flush(): void;
  /** Flushes, closes the file and ends every follower; later lines go to stdout only. */
  close(): void;
}

/** Fields of a pino line that become the entry's own properties rather than `fields`. */
const ENVELOPE = new Set(["level", "time", "pid", "hostname", "component", "msg"]);
const PINO_NUMERIC_LEVELS: Record<number, LogLevel> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const LEVEL_SET = new Set<string>(LOG_LEVELS);

function levelOf(value: unknown): LogLevel {
  if (typeof value === "string" && LEVEL_SET.has(value)) return value as LogLevel;
  if (typeof value === "number") return PINO_NUMERIC_LEVELS[value] ?? "info";
  return "info";
}

function timeOf(value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string") {
    const t = Date.parse(value);
    if (Number.isFinite(t)) return t;
  }
  return Date.now();
}

/** Turns one parsed (and redacted) pino record into a ring entry. */
export function entryFromRecord(record: Record<string, unknown>): NewLogEntry {
  const fields: Record<string, unknown> = {};
  for (const key in record) if (!ENVELOPE.has(key)) fields[key] = record[key];
  const msg = record.msg;
  const component = record.component;
  return {
    time: timeOf(record.time),
    level: levelOf(record.level),
    component: typeof component === "string" ? component : component === undefined ? "" : JSON.stringify(component),
    message: typeof msg === "string" ? msg : msg === undefined ? "" : JSON.stringify(msg),
    fields,
  };
}

function shortenStrings(value: unknown, max: number): unknown {
  if (typeof value === "string") {
    return value.length > max ? `${value.slice(0, max)}…[${value.length - max} more characters]` : value;
  }
  if (Array.isArray(value)) return value.map((v) => shortenStrings(v, max));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = shortenStrings(v, max);
    return out;
  }
  return value;
}

/** Keeps an over-long record bounded: long strings shortened, then the fields dropped if needed. */
function boundRecord(record: Record<string, unknown>, maxLength: number): Record<string, unknown> {
  let out = shortenStrings(record, Math.max(256, Math.floor(maxLength / 4))) as Record<string, unknown>;
  if (JSON.stringify(out).length > maxLength) {
    const kept: Record<string, unknown> = {};
    for (const key of ENVELOPE) if (key in out) kept[key] = out[key];
    out = shortenStrings(kept, Math.max(256, Math.floor(maxLength / 2))) as Record<string, unknown>;
    out.fieldsOmitted = true;
  }
  return out;
}

/** The level of a pino line without parsing it (the logger puts `"level":"<label>"` first). */
function levelFromLine(line: string): LogLevel | null {
  if (!line.startsWith('{"level":"')) return null;
  const label = line.slice(10, line.indexOf('"', 10));
  return LEVEL_SET.has(label) ? (label as LogLevel) : null;
}

/** Decodes a line held by the ring (always one the pipeline wrote, so valid JSON in practice). */
export function decodeLogLine(line: string): NewLogEntry {
  return entryFromRecord(parseRecord(line) ?? { msg: line.replace(/\n$/, "") });
}

function parseRecord(line: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Open pipelines, flushed synchronously if the process exits without closing them. */
const openPipelines = new Set<LogPipeline>();
let exitHookInstalled = false;

function flushAllOnExit(): void {
  for (const p of openPipelines) {
    try {
      p.flush();
    } catch {
      // nothing more can be done while exiting
    }
  }
}

/**
 * Builds the pipeline; see LogPipelineOptions. Until `close()`, its file output is also flushed
 * on process exit (the stdout destination flushes itself).
 */
export function createLogPipeline(options: LogPipelineOptions = {}): LogPipeline {
  const ring = new LogRing({ capacity: options.ringCapacity, maxBytes: options.ringMaxBytes, decodeLine: decodeLogLine });
  const maxLineLength = options.maxLineLength ?? 16 * 1024;
  const stdout: LineSink | null = options.stdout === undefined ? pino.destination({ dest: 1, sync: false, maxLength: 16 * 1024 * 1024 }) : options.stdout;
  let secrets: readonly string[] = [...(options.knownSecrets ?? [])];
  let closed = false;

  let file: RotatingLogFile | null = null;
  let starting = true;

  /**
   * Records the pipeline logs about itself (file trouble), written like any other line: at once
   * during start, else on a microtask so they do not interleave with the line being written.
   */
  const notice = (level: LogLevel, msg: string, extra: Record<string, unknown>): void => {
    const emit = () => {
      const record = { level, time: new Date().toISOString(), pid: process.pid, component: "logs", ...extra, msg };
      destination.write(`${JSON.stringify(record)}\n`);
    };
    if (starting) emit();
    else queueMicrotask(emit);
  };

  const destination: DestinationStream = {
    write(line: string): void {
      let out = line;
      let level = levelFromLine(line);
      if (level === null || line.length > maxLineLength || lineNeedsRedaction(line, secrets)) {
        let record = parseRecord(line) ?? { level: "info", time: new Date().toISOString(), pid: process.pid, msg: line.replace(/\n$/, "") };
        record = redactFields(record, secrets);
        if (line.length > maxLineLength) record = boundRecord(record, maxLineLength);
        out = `${JSON.stringify(record)}\n`;
        level = levelOf(record.level);
      } else if (!line.endsWith("\n")) {
        out = `${line}\n`;
      }
      stdout?.write(out);
      if (closed) return;
      file?.write(out);
      ring.appendLine(out, level);
    },
  };

  const flushStdout = (): void => {
    try {
      stdout?.flushSync?.();
    } catch {
      // SonicBoom throws when a write is in flight or the fd is not ready; it drains on its own.
    }
  };

  const fileOptions = options.file;
  if (fileOptions) {
    file = new RotatingLogFile({
      ...fileOptions,
      onStateChange: (error, dropped) => {
        fileOptions.onStateChange?.(error, dropped);
        if (error) {
          notice("warn", "log file is not writable; logging continues on stdout and in memory", { path: fileOptions.path, error: error.message });
        } else {
          notice("warn", "log file is writable again", { path: fileOptions.path, linesNotWritten: dropped });
        }
      },
    });
  }
  starting = false;

  const pipeline: LogPipeline = {
    destination,
    ring,
    file,
    setKnownSecrets(values) {
      secrets = [...values];
    },
    flush() {
      file?.flush();
      flushStdout();
    },
    close() {
      if (closed) return;
      closed = true;
      openPipelines.delete(pipeline);
      file?.close();
      flushStdout();
      ring.closeAll();
    },
  };
  openPipelines.add(pipeline);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", flushAllOnExit);
  }
  return pipeline;
}
