import { create } from "@bufbuild/protobuf";
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  OverlapPolicy,
  ScheduleRunOutcome,
  ScheduleSchema,
  type SchedulesService,
  type TaskTemplate as ProtoTemplate,
} from "../../gen/carapace/tasks/v1/schedules_pb.js";
import type { TaskState, TaskPolicyOverrides } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { invalidField, rpcError } from "../wire/error-details.js";
import { applyPolicy, DEFAULT_POLICY, TaskValidationError, TASK_STATES, validateLabels } from "./model.js";
import {
  checkCron,
  checkInterval,
  checkName,
  checkTimezone,
  nextDueTimes,
  ScheduleNotFoundError,
  type OverlapPolicy as OverlapName,
  type ScheduleRecord,
  type ScheduleRun,
  type TaskTemplate,
} from "./schedule.js";
import { ScheduleStoreClosedError, type ScheduleStore } from "./schedule-store.js";
import type { Scheduler } from "./scheduler.js";
import { payloadFromProto, payloadToProto, policyOverrides } from "./service.js";
import type { TaskStore } from "./task-store.js";

const OVERLAP_TO_PROTO: Record<OverlapName, OverlapPolicy> = { skip: OverlapPolicy.SKIP, allow: OverlapPolicy.ALLOW };
const OUTCOME_TO_PROTO = {
  created: ScheduleRunOutcome.CREATED,
  skipped_overlap: ScheduleRunOutcome.SKIPPED_OVERLAP,
  failed_to_create: ScheduleRunOutcome.FAILED_TO_CREATE,
} as const;

function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof TaskValidationError) return invalidField(err.message, "SCHEDULE_INVALID_ARGUMENT", err.field);
  if (err instanceof ScheduleNotFoundError) return rpcError(err.message, Code.NotFound, { reason: "SCHEDULE_NOT_FOUND" });
  if (err instanceof ScheduleStoreClosedError) return rpcError(err.message, Code.Unavailable, { reason: "SCHEDULES_UNAVAILABLE", retryAfterMs: 2_000 });
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT")
    return rpcError(`the schedule could not be written: the filesystem is full (${code}); nothing was changed`, Code.ResourceExhausted, {
      reason: "DISK_FULL",
    });
  return rpcError("internal error", Code.Internal, { reason: "INTERNAL" });
}

function guard<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/** The template as stored: payload validated, policy completed, labels checked. */
export function templateFromProto(t: ProtoTemplate | undefined): TaskTemplate {
  if (!t) throw new TaskValidationError("template is required (with a payload)", "template");
  let payload;
  try {
    payload = payloadFromProto(t.payload);
  } catch (err) {
    if (err instanceof TaskValidationError) throw new TaskValidationError(err.message, `template.${err.field ?? "payload"}`);
    throw err;
  }
  const policy = applyPolicy({ ...DEFAULT_POLICY }, policyOverrides(t.policy as TaskPolicyOverrides | undefined));
  validateLabels(t.labels, "template.labels");
  if (t.priority < -1000 || t.priority > 1000) throw new TaskValidationError("priority must be between -1000 and 1000", "template.priority");
  return { payload, policy, ...(Object.keys(t.labels).length > 0 ? { labels: { ...t.labels } } : {}), ...(t.priority !== 0 ? { priority: t.priority } : {}) };
}

function overlapFromProto(v: OverlapPolicy): OverlapName {
  if (v === OverlapPolicy.UNSPECIFIED || v === OverlapPolicy.SKIP) return "skip";
  if (v === OverlapPolicy.ALLOW) return "allow";
  throw new TaskValidationError(`unknown overlap policy ${v}`, "overlap");
}

function runToProto(run: ScheduleRun, tasks: TaskStore) {
  const task = run.taskId ? tasks.get(run.taskId) : undefined;
  return {
    dueAtMs: BigInt(run.dueAtMs),
    atMs: BigInt(run.atMs),
    outcome: OUTCOME_TO_PROTO[run.outcome],
    taskId: run.taskId ?? "",
    ...(task ? { taskState: (TASK_STATES.indexOf(task.state) + 1) as TaskState } : {}),
    error: run.error ?? "",
    manual: run.manual === true,
  };
}

export function scheduleToProto(s: ScheduleRecord, tasks: TaskStore, now: number) {
  const t = s.template;
  return create(ScheduleSchema, {
    id: s.id,
    name: s.name,
    rule: s.cron !== undefined ? { case: "cron", value: s.cron } : { case: "intervalMs", value: BigInt(s.intervalMs ?? 0) },
    timezone: s.timezone,
    template: {
      payload: payloadToProto(t.payload),
      policy: t.policy
        ? { ...t.policy, maxTotalRuntimeMs: t.policy.maxTotalRuntimeMs !== undefined ? BigInt(t.policy.maxTotalRuntimeMs) : undefined }
        : undefined,
      labels: t.labels ?? {},
      priority: t.priority ?? 0,
    },
    enabled: s.enabled,
    overlap: OVERLAP_TO_PROTO[s.overlap],
    nextDueMs: s.enabled ? nextDueTimes(s, now).map(BigInt) : [],
    ...(s.lastRun ? { lastRun: runToProto(s.lastRun, tasks) } : {}),
    missedRuns: s.missedRuns,
    createdAtMs: BigInt(s.createdAtMs),
    updatedAtMs: BigInt(s.updatedAtMs),
  });
}

/** Adapts the schedule store and the scheduler to `carapace.tasks.v1.SchedulesService`. */
export function schedulesService(d: {
  schedules: ScheduleStore;
  scheduler: Scheduler;
  tasks: TaskStore;
  now?: () => number;
}): ServiceImpl<typeof SchedulesService> {
  const now = d.now ?? Date.now;
  const find = (idOrName: string) => {
    const key = idOrName.trim();
    if (key === "") throw new TaskValidationError("id is required (a schedule id or name)", "id");
    return d.schedules.byName(key) ?? d.schedules.get(key);
  };
  const answer = (s: ScheduleRecord) => ({ schedule: scheduleToProto(s, d.tasks, now()) });
  return {
    createSchedule: guard(async (req) => {
      const name = checkName(req.name);
      const timezone = checkTimezone(req.timezone);
      const rule: Pick<ScheduleRecord, "cron" | "intervalMs"> =
        req.rule.case === "cron"
          ? { cron: checkCron(req.rule.value, timezone) }
          : req.rule.case === "intervalMs"
            ? { intervalMs: checkInterval(Number(req.rule.value)) }
            : {};
      if (rule.cron === undefined && rule.intervalMs === undefined) throw new TaskValidationError("a rule is required: cron or interval_ms", "cron");
      const template = templateFromProto(req.template);
      const at = now();
      const created = await d.schedules.create({
        id: randomUUID(),
        name,
        ...rule,
        timezone,
        template,
        enabled: !req.paused,
        overlap: overlapFromProto(req.overlap),
        createdAtMs: at,
        updatedAtMs: at,
        anchorMs: at,
        missedRuns: 0,
      });
      d.scheduler.wake();
      return answer(created);
    }),
    listSchedules: guard(async () => ({ schedules: d.schedules.list().map((s) => scheduleToProto(s, d.tasks, now())) })),
    getSchedule: guard(async (req) => answer(find(req.id))),
    updateSchedule: guard(async (req) => {
      const current = find(req.id);
      const at = now();
      const next: ScheduleRecord = { ...current, updatedAtMs: at };
      if (req.name !== undefined) next.name = checkName(req.name);
      if (req.timezone !== undefined) next.timezone = checkTimezone(req.timezone);
      if (req.cron !== undefined && req.intervalMs !== undefined) throw new TaskValidationError("give cron or interval_ms, not both", "cron");
      if (req.cron !== undefined) {
        next.cron = checkCron(req.cron, next.timezone);
        delete next.intervalMs;
      } else if (req.intervalMs !== undefined) {
        next.intervalMs = checkInterval(Number(req.intervalMs));
        delete next.cron;
      } else if (next.cron !== undefined) checkCron(next.cron, next.timezone);
      // A new rule counts from now: due times of the old rule are not caught up.
      if (req.cron !== undefined || req.intervalMs !== undefined || req.timezone !== undefined) {
        next.anchorMs = Math.max(current.anchorMs, at);
        if (next.intervalMs !== undefined) next.createdAtMs = at;
      }
      if (req.template) next.template = templateFromProto(req.template);
      if (req.overlap !== OverlapPolicy.UNSPECIFIED) next.overlap = overlapFromProto(req.overlap);
      const updated = await d.schedules.update(current.id, () => next);
      d.scheduler.wake();
      return answer(updated);
    }),
    pauseSchedule: guard(async (req) => answer(await d.schedules.update(find(req.id).id, (s) => ({ ...s, enabled: false, updatedAtMs: now() })))),
    resumeSchedule: guard(async (req) => {
      const at = now();
      // Due times that passed while paused are not caught up: the next one after now runs.
      const s = await d.schedules.update(find(req.id).id, (cur) =>
        cur.enabled ? cur : { ...cur, enabled: true, updatedAtMs: at, anchorMs: Math.max(cur.anchorMs, at) },
      );
      d.scheduler.wake();
      return answer(s);
    }),
    deleteSchedule: guard(async (req) => answer(await d.schedules.delete(find(req.id).id))),
    runScheduleNow: guard(async (req) => {
      const run = await d.scheduler.runNow(find(req.id).id);
      return { run: runToProto(run, d.tasks), schedule: answer(find(req.id)).schedule };
    }),
  };
}
