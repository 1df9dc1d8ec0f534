/**
 * Recurring schedules: the record, its validation, and when it is due. Pure (no I/O, no clock of
 * its own), like model.ts for tasks.
 *
 * A schedule is due at the times of a 5-field cron expression (or an `@daily`-style shorthand) in
 * an IANA time zone, or every fixed interval. Cron times follow the zone's rules through DST
 * (croner): a time that does not exist at spring-forward runs at the first minute after the gap
 * (no lost run), and a time that occurs twice at fall-back runs once (no double run).
 */
import { Cron } from "croner";
import { normalizePayload, TaskValidationError, validateLabels, type TaskPayloadRecord, type TaskPolicyRecord } from "./model.js";

export const OVERLAP_POLICIES = ["skip", "allow"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/** What happened at a due time (or a "run now"). */
export const RUN_OUTCOMES = ["created", "skipped_overlap", "failed_to_create"] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

export const MIN_INTERVAL_MS = 60_000;
export const MAX_SCHEDULES = 1_000;
const SHORTHANDS = new Set(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]);

/** The task each run creates. */
export interface TaskTemplate {
  payload: TaskPayloadRecord;
  policy?: Partial<TaskPolicyRecord>;
  labels?: Record<string, string>;
  priority?: number;
}

export interface ScheduleRun {
  /** The due time this run was for (ms), or the moment of a "run now". */
  dueAtMs: number;
  atMs: number;
  outcome: RunOutcome;
  taskId?: string;
  /** Why a run could not create its task. */
  error?: string;
  manual?: boolean;
}

export interface ScheduleRecord {
  id: string;
  name: string;
  cron?: string;
  intervalMs?: number;
  timezone: string;
  template: TaskTemplate;
  enabled: boolean;
  overlap: OverlapPolicy;
  createdAtMs: number;
  updatedAtMs: number;
  /**
   * Due times are computed after this instant: the last due time handled, the creation, the
   * last resume, or the last change of the rule, whichever is latest.
   */
  anchorMs: number;
  lastRun?: ScheduleRun;
  /** Due times that passed while the server was down and were not run (one catch-up run ran instead). */
  missedRuns: number;
  lastMissed?: { count: number; fromMs: number; toMs: number };
}

/** A field of a schedule input that is wrong, with the proto field path for BadRequest. */
export class ScheduleValidationError extends TaskValidationError {}
export class ScheduleNotFoundError extends Error {
  constructor(id: string) {
    super(`no schedule '${id.slice(0, 100)}' (see cara schedule list)`);
  }
}

/** Refuses a time zone the runtime does not know (IANA names: Europe/Berlin, UTC, ...). */
export function checkTimezone(tz: string): string {
  const zone = tz.trim() === "" ? "UTC" : tz.trim();
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
  } catch {
    throw new ScheduleValidationError(`unknown time zone '${zone.slice(0, 60)}': use an IANA name such as UTC or Europe/Berlin`, "timezone");
  }
  return zone;
}

/** A 5-field cron expression or an @shorthand; anything else is refused with the reason. */
export function checkCron(expr: string, timezone: string): string {
  const e = expr.trim().replace(/\s+/g, " ");
  if (e === "") throw new ScheduleValidationError("cron expression is empty", "cron");
  if (e.startsWith("@")) {
    if (!SHORTHANDS.has(e)) throw new ScheduleValidationError(`unknown cron shorthand '${e.slice(0, 40)}' (one of ${[...SHORTHANDS].join(", ")})`, "cron");
  } else if (e.split(" ").length !== 5) {
    throw new ScheduleValidationError(
      `cron expression '${e.slice(0, 80)}' has ${e.split(" ").length} fields; use 5 (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'`,
      "cron",
    );
  }
  try {
    new Cron(e, { timezone, paused: true }).nextRun();
  } catch (err) {
    throw new ScheduleValidationError(`invalid cron expression '${e.slice(0, 80)}': ${(err as Error).message.replace(/^CronPattern: /, "")}`, "cron");
  }
  return e;
}

export function checkInterval(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < MIN_INTERVAL_MS)
    throw new ScheduleValidationError(`interval must be at least ${MIN_INTERVAL_MS / 1000} s (got ${ms} ms)`, "interval_ms");
  return ms;
}

export function checkName(name: string): string {
  const n = name.trim();
  if (n === "" || n.length > 100 || !/^[\p{L}\p{N}][\p{L}\p{N} ._:-]*$/u.test(n)) {
    throw new ScheduleValidationError("name must be 1-100 characters: letters, digits, space, '.', '_', ':' or '-', starting with a letter or digit", "name");
  }
  return n;
}

export function checkTemplate(t: { payload: unknown; labels?: Record<string, string>; priority?: number }): void {
  normalizePayload(t.payload);
  if (t.labels) validateLabels(t.labels);
}

/** The due times after `afterMs` up to and including `untilMs` (at most `max`, oldest first). */
export function dueTimes(
  s: Pick<ScheduleRecord, "cron" | "intervalMs" | "timezone" | "createdAtMs">,
  afterMs: number,
  untilMs: number,
  max = 10_000,
): number[] {
  const out: number[] = [];
  if (s.intervalMs) {
    // Intervals count from the creation: due at created + k * interval.
    const k0 = Math.floor((afterMs - s.createdAtMs) / s.intervalMs) + 1;
    for (let k = Math.max(1, k0); out.length < max; k++) {
      const t = s.createdAtMs + k * s.intervalMs;
      if (t > untilMs) break;
      out.push(t);
    }
    return out;
  }
  const cron = new Cron(s.cron as string, { timezone: s.timezone, paused: true });
  let from = new Date(afterMs);
  while (out.length < max) {
    const next = cron.nextRun(from);
    if (!next || next.getTime() > untilMs) break;
    out.push(next.getTime());
    from = next;
  }
  return out;
}

/** The next `n` due times after max(now, anchor). */
export function nextDueTimes(s: ScheduleRecord, now: number, n = 3): number[] {
  return dueTimes(s, Math.max(now, s.anchorMs), Number.MAX_SAFE_INTEGER, n);
}

/** The idempotency key of the task for one due time: a crash around it never creates two. */
export function runKey(id: string, dueAtMs: number): string {
  return `schedule:${id}:${new Date(dueAtMs).toISOString()}`;
}

/**
 * What is due now: the latest due time in (anchor, now], and how many earlier ones passed
 * (the server was down across them): those are not run, one catch-up run stands for them.
 */
export function dueNow(s: ScheduleRecord, now: number): { dueAtMs: number; missed: number[] } | undefined {
  if (!s.enabled) return undefined;
  const due = dueTimes(s, s.anchorMs, now);
  const last = due.at(-1);
  if (last === undefined) return undefined;
  return { dueAtMs: last, missed: due.slice(0, -1) };
}

/** What status, metrics and the CLI say about one schedule. */
export interface ScheduleSummaryValue {
  name: string;
  rule: string;
  enabled: boolean;
  nextDueMs?: number;
  lastRunAtMs?: number;
  /** "created: done", "skipped_overlap: running", "failed_to_create", or "" before the first run. */
  lastOutcome: string;
  lastRunFailed: boolean;
}

export function describeRule(s: Pick<ScheduleRecord, "cron" | "intervalMs" | "timezone">): string {
  if (s.cron !== undefined) return `${s.cron} (${s.timezone})`;
  const ms = s.intervalMs ?? 0;
  const unit = ms % 86_400_000 === 0 ? [86_400_000, "d"] : ms % 3_600_000 === 0 ? [3_600_000, "h"] : ms % 60_000 === 0 ? [60_000, "m"] : [1_000, "s"];
  return `every ${ms / (unit[0] as number)}${unit[1]}`;
}

export function summarizeSchedule(s: ScheduleRecord, taskState: (id: string) => string | undefined, now: number): ScheduleSummaryValue {
  const run = s.lastRun;
  const state = run?.taskId ? taskState(run.taskId) : undefined;
  const next = s.enabled ? nextDueTimes(s, now, 1)[0] : undefined;
  return {
    name: s.name,
    rule: describeRule(s),
    enabled: s.enabled,
    ...(next !== undefined ? { nextDueMs: next } : {}),
    ...(run ? { lastRunAtMs: run.atMs } : {}),
    lastOutcome: run ? `${run.outcome}${state ? `: ${state}` : ""}` : "",
    lastRunFailed: run !== undefined && (run.outcome === "failed_to_create" || (run.outcome === "created" && (state === "failed" || state === "blocked"))),
  };
}
