/**
 * Validation of log queries (TailLogs / FollowLogs parameters) into ring queries. Bad input
 * throws LogQueryError naming the field (as in the API: `limit`, `max_bytes`, `min_level`,
 * `pattern`, `tail`, `after_seq`) and the allowed range; nothing is clamped silently.
 */
import { compileLogPattern, LogPatternError } from "./log-pattern.js";
import { DEFAULT_TAIL_LIMIT, DEFAULT_TAIL_MAX_BYTES, LOG_LEVELS, type LogFilter, type LogLevel, type TailQuery } from "./log-ring.js";

export const MAX_TAIL_LIMIT = 5_000;
export const MAX_TAIL_BYTES = 1024 * 1024;

/** A bad query parameter; `field` is the API field name. */
export class LogQueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = "LogQueryError";
  }
}

/**
 * Parses a level name: case-insensitive, `warning` accepted for `warn`. Throws LogQueryError
 * (`min_level: unknown log level 'x'; use one of trace, debug, info, warn, error, fatal`).
 */
export function parseLogLevel(name: string, field = "min_level"): LogLevel {
  const lower = name.trim().toLowerCase();
  const level = lower === "warning" ? "warn" : lower;
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new LogQueryError(field, `unknown log level '${name}'; use one of ${LOG_LEVELS.join(", ")}`);
}

function checkRange(field: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new LogQueryError(field, `must be an integer from ${min} to ${max} (got ${value})`);
  }
  return value;
}

function checkCursor(value: number | bigint | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === "bigint" ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < 0) throw new LogQueryError("after_seq", `must be an integer of 0 or more (got ${String(value)})`);
  return n;
}

/** Raw filter parameters; empty strings mean "not set" (proto3 defaults). */
export interface RawLogFilter {
  minLevel?: LogLevel | string;
  contains?: string;
  pattern?: string;
  /** Unix ms; 0 or unset: any time. */
  sinceMs?: number;
}

/**
 * Validates filter parameters; a bad pattern throws LogPatternError (field `pattern`). A pattern
 * needs `loadLogPatternEngine()` (./log-pattern.js) to have completed.
 */
export function checkLogFilter(raw: RawLogFilter): LogFilter {
  const filter: LogFilter = {};
  if (raw.minLevel) filter.minLevel = parseLogLevel(raw.minLevel);
  if (raw.contains) filter.contains = raw.contains;
  if (raw.pattern) filter.pattern = compileLogPattern(raw.pattern);
  if (raw.sinceMs) filter.sinceMs = raw.sinceMs;
  return filter;
}

/** Raw TailLogs parameters. */
export interface RawTailQuery extends RawLogFilter {
  limit?: number;
  maxBytes?: number;
  afterSeq?: number | bigint;
}

/**
 * Validates TailLogs parameters: limit 1..5,000 (default 200), max_bytes 1..1,048,576 (default
 * 256 KiB), after_seq ≥ 0, a known level, a safe pattern. Throws LogQueryError or LogPatternError.
 */
export function checkTailQuery(raw: RawTailQuery): TailQuery {
  return {
    ...checkLogFilter(raw),
    limit: checkRange("limit", raw.limit, DEFAULT_TAIL_LIMIT, 1, MAX_TAIL_LIMIT),
    maxBytes: checkRange("max_bytes", raw.maxBytes, DEFAULT_TAIL_MAX_BYTES, 1, MAX_TAIL_BYTES),
    afterSeq: checkCursor(raw.afterSeq),
  };
}

/** Raw FollowLogs parameters. */
export interface RawFollowQuery extends RawLogFilter {
  tail?: number;
  afterSeq?: number | bigint;
}

/** Validates FollowLogs parameters: tail 0..5,000 (default 200), after_seq ≥ 0, filters. */
export function checkFollowQuery(raw: RawFollowQuery): { filter: LogFilter; tail: number; afterSeq: number | undefined } {
  return {
    filter: checkLogFilter(raw),
    tail: checkRange("tail", raw.tail, DEFAULT_TAIL_LIMIT, 0, MAX_TAIL_LIMIT),
    afterSeq: checkCursor(raw.afterSeq),
  };
}

/** True for the errors of this module and log-pattern (map them to InvalidArgument). */
export function isLogQueryError(err: unknown): err is LogQueryError | LogPatternError {
  return err instanceof LogQueryError || err instanceof LogPatternError;
}
