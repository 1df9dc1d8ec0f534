import { Option } from "clipanion";
import { ConnectError, type Client } from "@connectrpc/connect";
import { SchedulesService, type Schedule, type ScheduleRun, type TaskTemplate } from "../../../gen/carapace/tasks/v1/schedules_pb.js";
import { badRequestOf } from "../../wire/error-details.js";
import { overlapPolicyNames, parseIntervalText, ruleText, scheduleRunOutcomeNames } from "../../wire/schedules.js";
import { taskStateNames } from "../../wire/tasks.js";
import { ClientCommand } from "../base.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { CliFailure, CliUsageError } from "../target.js";
import { payloadText } from "../../wire/payload-text.js";
import { payloadJson } from "../task/common.js";

/** A payload for the examples in --help: the nightly backup that keeps seven archives. */
export const BACKUP_PAYLOAD = `'{"kind":"backup","keep":7}'`;

/** `--every 15m` as milliseconds (the server checks the minimum of 60 s). */
export function parseEvery(value: string): number {
  const ms = parseIntervalText(value);
  if (ms === undefined) throw new CliUsageError(`--every must be a whole number with a unit s, m, h or d, like 15m, 2h or 1d (got '${value}')`);
  return ms;
}

/** `--overlap skip|allow` as the wire enum. */
export function parseOverlap(value: string) {
  const v = overlapPolicyNames.value(value.trim().toLowerCase());
  if (v === undefined) throw new CliUsageError(`--overlap must be one of ${overlapPolicyNames.names.join(", ")} (got '${value}')`);
  return v;
}

/** The schedule id or name the user gave, checked. */
export function requireScheduleId(id: string): string {
  const trimmed = id.trim();
  if (trimmed === "") throw new CliUsageError("schedule id or name cannot be empty");
  return trimmed;
}

const ms = (v: bigint) => Number(v);

function templateJson(t: TaskTemplate | undefined): Record<string, unknown> {
  const p = t?.policy;
  return {
    payload: payloadJson(t?.payload),
    policy: p
      ? {
          ...(p.maxAttempts !== undefined ? { maxAttempts: p.maxAttempts } : {}),
          ...(p.maxTotalRuntimeMs !== undefined ? { maxTotalRuntimeMs: ms(p.maxTotalRuntimeMs) } : {}),
          ...(p.maxTurns !== undefined ? { maxTurns: p.maxTurns } : {}),
          ...(p.maxRunTimeoutSeconds !== undefined ? { maxRunTimeoutSeconds: p.maxRunTimeoutSeconds } : {}),
        }
      : {},
    labels: { ...(t?.labels ?? {}) },
    priority: t?.priority ?? 0,
  };
}

/** A run as JSON: times in Unix ms, outcome and task state by their CLI names. */
export function runJson(r: ScheduleRun): Record<string, unknown> {
  return {
    dueAtMs: ms(r.dueAtMs),
    atMs: ms(r.atMs),
    outcome: scheduleRunOutcomeNames.name(r.outcome) ?? "unknown",
    taskId: r.taskId === "" ? null : r.taskId,
    taskState: r.taskState !== undefined ? (taskStateNames.name(r.taskState) ?? "unknown") : null,
    error: r.error === "" ? null : r.error,
    manual: r.manual,
  };
}

/** The schedule as one JSON object: numbers as numbers, enums by their CLI names, every key present. */
export function scheduleJson(s: Schedule): Record<string, unknown> {
  return {
    id: s.id,
    name: s.name,
    cron: s.rule.case === "cron" ? s.rule.value : null,
    intervalMs: s.rule.case === "intervalMs" ? ms(s.rule.value) : null,
    timezone: s.timezone,
    state: s.enabled ? "enabled" : "paused",
    overlap: overlapPolicyNames.name(s.overlap) ?? "skip",
    template: templateJson(s.template),
    nextDueMs: s.nextDueMs.map(ms),
    lastRun: s.lastRun ? runJson(s.lastRun) : null,
    missedRuns: s.missedRuns,
    createdAtMs: ms(s.createdAtMs),
    updatedAtMs: ms(s.updatedAtMs),
  };
}

const iso = (v: bigint | number) => new Date(Number(v)).toISOString();

/** "2026-01-02 03:00" in `timezone`. */
function wallClock(v: bigint | number, timezone: string): string {
  const f = new Intl.DateTimeFormat("sv-SE", {
    timeZone: timezone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  return f.format(new Date(Number(v)));
}

/** A due time in UTC, and on the schedule's wall clock when its cron rule has another zone. */
export function dueText(v: bigint | number, s: Pick<Schedule, "rule" | "timezone">): string {
  return s.rule.case === "cron" && s.timezone !== "UTC" ? `${iso(v)}  (${wallClock(v, s.timezone)} ${s.timezone})` : iso(v);
}

/** "created (done)", "skipped_overlap (running)", "failed_to_create": a run without its task id. */
export function runOutcomeText(r: ScheduleRun): string {
  const outcome = scheduleRunOutcomeNames.name(r.outcome) ?? "unknown";
  return r.taskId ? `${outcome} (${r.taskState !== undefined ? (taskStateNames.name(r.taskState) ?? "unknown") : "removed"})` : outcome;
}

/** "created, task 7c0e… (done)", "skipped_overlap, task … (running)", "failed_to_create: disk full". */
export function runText(r: ScheduleRun): string {
  const outcome = scheduleRunOutcomeNames.name(r.outcome) ?? "unknown";
  const task = r.taskId ? `, task ${r.taskId}${r.taskState !== undefined ? ` (${taskStateNames.name(r.taskState) ?? "unknown"})` : " (removed)"}` : "";
  const error = r.error ? `: ${stripTerminalUnsafe(r.error)}` : "";
  return `${outcome}${task}${error}`;
}

/** Human summary of one schedule. */
export function formatSchedule(s: Schedule): string {
  const t = s.template;
  const p = t?.policy;
  const lines = [
    `Schedule ${stripTerminalUnsafe(s.name)}  ${s.enabled ? "enabled" : "paused"}`,
    `  Id:         ${s.id}`,
    `  When:       ${stripTerminalUnsafe(ruleText(s))}`,
    `  Overlap:    ${overlapPolicyNames.name(s.overlap) ?? "skip"}`,
    `  Payload:    ${stripTerminalUnsafe(payloadText(t?.payload))}`,
  ];
  if (p)
    lines.push(
      `  Policy:     maxAttempts ${p.maxAttempts ?? "-"}, maxTotalRuntimeMs ${p.maxTotalRuntimeMs ?? "-"}, maxTurns ${p.maxTurns ?? "-"}, maxRunTimeoutSeconds ${p.maxRunTimeoutSeconds ?? "-"}`,
    );
  if (t?.priority) lines.push(`  Priority:   ${t.priority}`);
  if (t && Object.keys(t.labels).length > 0)
    lines.push(
      `  Labels:     ${stripTerminalUnsafe(
        Object.entries(t.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(", "),
      )}`,
    );
  if (s.nextDueMs.length === 0) lines.push(`  Next due:   - (${s.enabled ? "none" : "paused"})`);
  for (const [i, v] of s.nextDueMs.entries()) lines.push(`  ${i === 0 ? "Next due:" : "         "}   ${dueText(v, s)}`);
  if (s.lastRun) {
    const r = s.lastRun;
    lines.push(`  Last run:   ${iso(r.atMs)}  ${runText(r)}${r.manual ? " (run now)" : ""}`);
  } else lines.push("  Last run:   - (none yet)");
  if (s.missedRuns > 0) lines.push(`  Missed:     ${s.missedRuns} due times passed while the server was down (a catch-up run stood for them)`);
  lines.push(`  Created:    ${iso(s.createdAtMs)}   Updated: ${iso(s.updatedAtMs)}`);
  return `${lines.join("\n")}\n`;
}

/**
 * The error for a server's answer: its message, and the request field it names (from the
 * BadRequest detail) when there is one: "unknown time zone 'Mars/Base': ... (field timezone)".
 */
function withField(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  const field = badRequestOf(err)?.fieldViolations[0]?.field;
  return field ? new CliFailure(`${err.rawMessage} (field ${field})`) : err;
}

/** Base for `cara schedule ...` commands: connection flags, --json, and a SchedulesService client. */
export abstract class ScheduleCommand extends ClientCommand {
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  protected call<T>(fn: (client: Client<typeof SchedulesService>) => Promise<T>): Promise<T> {
    return this.withClient(SchedulesService, this.timeoutMs(30_000), async (client) => {
      try {
        return await fn(client);
      } catch (err) {
        throw withField(err);
      }
    });
  }

  protected printSchedule(schedule: Schedule | undefined, note?: string): number {
    if (!schedule) throw new CliFailure("the server answered without a schedule");
    this.print({ schedule: scheduleJson(schedule) }, { json: this.json, human: () => `${note ? `${note}\n` : ""}${formatSchedule(schedule)}` });
    return 0;
  }
}

/** A schedule command that acts on one schedule, named by id or name. */
export abstract class OneScheduleCommand extends ScheduleCommand {
  id = Option.String({ name: "id-or-name" });
}
