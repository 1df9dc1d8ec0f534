/** Names of the schedules API's enums (see enum-names.ts for the rule), and how an interval rule is written. */
import {
  OverlapPolicySchema,
  ScheduleRunOutcomeSchema,
  type OverlapPolicy,
  type Schedule,
  type ScheduleRunOutcome,
} from "../../gen/carapace/tasks/v1/schedules_pb.js";
import { EnumNames } from "./enum-names.js";

/** skip, allow */
export const overlapPolicyNames = new EnumNames<OverlapPolicy>(OverlapPolicySchema);
/** created, skipped_overlap, failed_to_create */
export const scheduleRunOutcomeNames = new EnumNames<ScheduleRunOutcome>(ScheduleRunOutcomeSchema);

const UNITS: readonly [string, number][] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
];

/** An interval in the largest unit that divides it: 900000 -> "15m", 86400000 -> "1d", 1500 -> "1500ms". */
export function intervalText(ms: number | bigint): string {
  const n = Number(ms);
  for (const [unit, size] of UNITS) if (n > 0 && n % size === 0) return `${n / size}${unit}`;
  return `${n}ms`;
}

/** "15m", "90s", "2h", "1d" as ms; undefined when the text is not a whole number with one of s, m, h, d. */
export function parseIntervalText(text: string): number | undefined {
  const m = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  const size = UNITS.find(([unit]) => unit === m[2])![1];
  const ms = Number(m[1]) * size;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** A schedule's rule for people: "0 3 * * * (Europe/Berlin)" or "every 15m". */
export function ruleText(s: Pick<Schedule, "rule" | "timezone">): string {
  if (s.rule.case === "cron") return `${s.rule.value} (${s.timezone})`;
  if (s.rule.case === "intervalMs") return `every ${intervalText(s.rule.value)}`;
  return "no rule";
}
