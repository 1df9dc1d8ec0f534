import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { errorTable, on } from "../wire/error-table.js";
import { blockedReasonNames, taskStateNames } from "../wire/tasks.js";
import {
  TaskPayloadSchema,
  TaskSchema,
  type TasksService,
  type CreateTaskRequest,
  type Task,
  type TaskPayload,
  type TaskPolicyOverrides,
} from "../../gen/carapace/tasks/v1/tasks_pb.js";
import {
  applyPolicy,
  cancelTransition,
  DEFAULT_POLICY,
  isTerminal,
  normalizePayload,
  rejectNul,
  normalizeReason,
  patchTransition,
  resumeTransition,
  retryTransition,
  TaskNotFoundError,
  TaskStateError,
  TaskValidationError,
  TASK_STATES,
  validateLabels,
  type TaskPatch,
  type TaskPayloadRecord,
  type TaskPolicyRecord,
  type TaskRecord,
  type TaskStateName,
} from "./model.js";
import { TaskQueueFullError, TaskStoreWriteError, type TaskInit, type TaskStore } from "./task-store.js";
import type { Worker } from "./worker.js";

const MAX_LIST_LIMIT = 1000;
/** Requests in one CreateTasks call (one durable write). */
const MAX_BATCH = 1000;

/** A CreateTaskRequest as a validated store init (throws TaskValidationError naming the field). */
function taskInit(req: CreateTaskRequest): TaskInit {
  const payload = payloadFromProto(req.payload);
  const policy = applyPolicy({ ...DEFAULT_POLICY }, policyOverrides(req.policy));
  validateLabels(req.labels);
  const init: TaskInit = { payload, policy, policyExplicit: true, nextRunAtMs: msField("next_run_at_ms", req.nextRunAtMs) ?? null };
  if (req.priority !== undefined && req.priority !== 0) init.priority = req.priority;
  if (req.idempotencyKey !== undefined) {
    const key = req.idempotencyKey.trim();
    if (key === "" || key.length > 200) throw new TaskValidationError("idempotency_key must be 1..200 characters", "idempotency_key");
    rejectNul(key, "idempotency_key");
    init.idempotencyKey = key;
  }
  if (Object.keys(req.labels).length > 0) init.labels = { ...req.labels };
  return init;
}
const DEFAULT_LIST_LIMIT = 100;

/** Domain errors on the wire; messages are already written for people. */
const errors = errorTable(
  [
    on(TaskValidationError, (e) => ({ code: Code.InvalidArgument, reason: "TASK_INVALID_ARGUMENT", field: e.field })),
    on(TaskNotFoundError, { code: Code.NotFound, reason: "TASK_NOT_FOUND" }),
    on(TaskStateError, { code: Code.FailedPrecondition, reason: "TASK_STATE_CONFLICT" }),
    on(TaskQueueFullError, { code: Code.ResourceExhausted, reason: "TASK_QUEUE_FULL" }),
    on(TaskStoreWriteError, (e) =>
      e.diskFull ? { code: Code.ResourceExhausted, reason: "DISK_FULL" } : { code: Code.Unavailable, reason: "TASK_STORE_UNAVAILABLE" },
    ),
  ],
  { code: Code.Internal, reason: "INTERNAL", message: "internal error" },
);
const guard = errors.guard;

/** The wire payload (a oneof) as the stored `{"kind": ...}` object, validated. */
export function payloadFromProto(payload: TaskPayload | undefined): TaskPayloadRecord {
  if (!payload) throw new TaskValidationError("payload is required", "payload");
  const { kind } = payload;
  if (kind.case === undefined) throw new TaskValidationError("Invalid task payload: unrecognized payload kind", "payload");
  const value = kind.value as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { kind: kind.case };
  for (const [k, v] of Object.entries(value)) {
    if (k === "$typeName" || k === "$unknown" || v === undefined) continue;
    out[k] = v;
  }
  return normalizePayload(out);
}

/** The stored payload as the wire oneof (unknown kinds come back empty). */
export function payloadToProto(payload: TaskRecord["payload"]): TaskPayload {
  const { kind, ...rest } = payload as { kind?: string } & Record<string, unknown>;
  if (kind === "systemEvent" || kind === "agentTurn" || kind === "backup" || kind === "updateCheck") {
    return create(TaskPayloadSchema, { kind: { case: kind, value: rest } } as MessageInitShape<typeof TaskPayloadSchema>);
  }
  return create(TaskPayloadSchema, {});
}

export function taskToProto(rec: TaskRecord, worker?: Worker): Task {
  const lease = worker?.lease(rec.id);
  const init: MessageInitShape<typeof TaskSchema> = {
    id: rec.id,
    state: taskStateNames.toWire(rec.state),
    attempts: rec.attempts,
    payload: payloadToProto(rec.payload),
    createdAtMs: BigInt(rec.createdAtMs),
    updatedAtMs: BigInt(rec.updatedAtMs),
    runIds: rec.runIds ?? [],
    policy: { ...rec.policy, maxTotalRuntimeMs: BigInt(rec.policy.maxTotalRuntimeMs) },
    blockedReason: blockedReasonNames.toWire(rec.blockedReason),
    policyExplicit: rec.policyExplicit === true,
    priority: rec.priority ?? 0,
    labels: rec.labels ?? {},
    runtimeUsedMs: BigInt(rec.runtimeUsedMs ?? 0),
    turnsUsed: rec.turnsUsed ?? 0,
  };
  if (rec.nextRunAtMs !== null) init.nextRunAtMs = BigInt(rec.nextRunAtMs);
  if (rec.lastError !== null) init.lastError = rec.lastError;
  if (rec.idempotencyKey) init.idempotencyKey = rec.idempotencyKey;
  if (rec.result !== undefined) init.result = rec.result;
  if (rec.note) init.note = rec.note;
  if (rec.finishedAtMs !== undefined) init.finishedAtMs = BigInt(rec.finishedAtMs);
  if (lease) {
    init.lease = {
      owner: lease.owner,
      acquiredAtMs: BigInt(lease.acquiredAtMs),
      heartbeatAtMs: BigInt(lease.heartbeatAtMs),
      expiresAtMs: BigInt(lease.expiresAtMs),
    };
  }
  return create(TaskSchema, init);
}

export function policyOverrides(p: TaskPolicyOverrides | undefined): Partial<Record<keyof TaskPolicyRecord, number | undefined>> {
  if (!p) return {};
  const toNum = (v: bigint | undefined) => {
    if (v === undefined) return undefined;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < 0n) return -1; // out of range either way
    return Number(v);
  };
  return { maxAttempts: p.maxAttempts, maxTotalRuntimeMs: toNum(p.maxTotalRuntimeMs), maxTurns: p.maxTurns, maxRunTimeoutSeconds: p.maxRunTimeoutSeconds };
}

function msField(name: string, v: bigint | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TaskValidationError(`${name} must be between 0 and ${Number.MAX_SAFE_INTEGER}`, name);
  return Number(v);
}

function taskId(id: string): string {
  const trimmed = id.trim();
  if (trimmed === "") throw new TaskValidationError("task id cannot be empty", "id");
  rejectNul(trimmed, "id", "task id");
  return trimmed;
}

interface PageCursor {
  u: number;
  i: string;
}

function decodePageToken(token: string): PageCursor | undefined {
  if (token === "") return undefined;
  try {
    const c = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as PageCursor;
    if (typeof c.u === "number" && typeof c.i === "string") return c;
  } catch {
    // fall through
  }
  throw new TaskValidationError("page_token is not one this server issued (pass next_page_token from the previous answer)", "page_token");
}

/** Newest updatedAt first; ties by id so pages are stable. */
const listOrder = (a: TaskRecord, b: TaskRecord) => b.updatedAtMs - a.updatedAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export interface TasksDomain {
  store: TaskStore;
  worker: Worker;
  /** Aborted when the server begins shutdown: streams end. */
  shutdown: AbortSignal;
  now?: () => number;
}

/** Adapts the task store and worker to `carapace.tasks.v1.TasksService`. */
export function tasksService(domain: TasksDomain): ServiceImpl<typeof TasksService> {
  const { store, worker } = domain;
  const now = domain.now ?? Date.now;
  const find = async (id: string) => {
    const rec = await store.fetch(taskId(id));
    if (!rec) throw new TaskNotFoundError();
    return rec;
  };
  /** RetryTask and ResumeTask: the task runs again after the delay, if `transition` allows it. */
  const reschedule = (transition: typeof retryTransition) =>
    guard(async (req: { id: string; reason?: string; delayMs?: bigint }) => {
      const reason = normalizeReason(req.reason);
      const delay = msField("delay_ms", req.delayMs) ?? 0;
      const task = await store.update(taskId(req.id), (cur) => transition(cur, reason, delay, now()));
      worker.wake();
      return { task: taskToProto(task, worker) };
    });
  return {
    createTask: guard(async (req) => {
      const { task, created } = await store.create(taskInit(req));
      worker.wake();
      return { task: taskToProto(task, worker), created };
    }),
    createTasks: guard(async (req) => {
      if (req.tasks.length === 0 || req.tasks.length > MAX_BATCH)
        throw new TaskValidationError(`tasks must hold 1 to ${MAX_BATCH} requests (got ${req.tasks.length})`, "tasks");
      const keys = new Set<string>();
      const inits = req.tasks.map((r, i) => {
        try {
          const init = taskInit(r);
          if (init.idempotencyKey !== undefined) {
            if (keys.has(init.idempotencyKey))
              throw new TaskValidationError(`idempotency_key '${init.idempotencyKey.slice(0, 60)}' appears more than once in the batch`, "idempotency_key");
            keys.add(init.idempotencyKey);
          }
          return init;
        } catch (err) {
          if (err instanceof TaskValidationError) throw new TaskValidationError(`tasks[${i}]: ${err.message}`, `tasks[${i}].${err.field ?? "payload"}`);
          throw err;
        }
      });
      const results = await store.createMany(inits);
      worker.wake();
      return { results: results.map(({ task, created }) => ({ task: taskToProto(task, worker), created })) };
    }),
    getTask: guard(async (req) => ({ task: taskToProto(await find(req.id), worker) })),
    listTasks: guard(async (req) => {
      const limit = req.limit ?? DEFAULT_LIST_LIMIT;
      if (limit > MAX_LIST_LIMIT) throw new TaskValidationError(`limit must be between 0 and ${MAX_LIST_LIMIT} (got ${limit})`, "limit");
      const states = new Set<TaskStateName>();
      for (const s of req.states) {
        const name = taskStateNames.name(s) as TaskStateName | undefined;
        if (!name) throw new TaskValidationError(`invalid task state filter (allowed: ${TASK_STATES.join(", ")})`, "states");
        states.add(name);
      }
      const labels = Object.entries(req.labels);
      const cursor = decodePageToken(req.pageToken);
      const matching: TaskRecord[] = [];
      for (const t of store.all()) {
        if (states.size > 0 && !states.has(t.state)) continue;
        if (labels.some(([k, v]) => t.labels?.[k] !== v)) continue;
        matching.push(t);
      }
      matching.sort(listOrder);
      let start = 0;
      if (cursor) {
        start = matching.findIndex((t) => t.updatedAtMs < cursor.u || (t.updatedAtMs === cursor.u && t.id > cursor.i));
        if (start < 0) start = matching.length;
      }
      const page = matching.slice(start, start + limit);
      const last = page[page.length - 1];
      const more = limit > 0 && start + limit < matching.length && last !== undefined;
      return {
        tasks: page.map((t) => taskToProto(t, worker)),
        total: matching.length,
        nextPageToken: more ? Buffer.from(JSON.stringify({ u: last.updatedAtMs, i: last.id })).toString("base64url") : "",
      };
    }),
    updateTask: guard(async (req) => {
      const id = taskId(req.id);
      const patch: TaskPatch = {};
      if (req.payload) patch.payload = payloadFromProto(req.payload);
      const policy = policyOverrides(req.policy);
      if (Object.values(policy).some((v) => v !== undefined)) {
        applyPolicy({ ...DEFAULT_POLICY }, policy); // validate bounds before looking the task up
        patch.policy = policy;
      }
      const reason = normalizeReason(req.reason);
      if (reason !== undefined) patch.reason = reason;
      if (req.priority !== undefined) patch.priority = req.priority;
      const next = msField("next_run_at_ms", req.nextRunAtMs);
      if (next !== undefined) patch.nextRunAtMs = next;
      if (Object.keys(req.setLabels).length > 0) {
        validateLabels(req.setLabels, "set_labels");
        patch.setLabels = { ...req.setLabels };
      }
      if (req.removeLabels.length > 0) patch.removeLabels = [...req.removeLabels];
      const task = await store.update(id, (cur) => patchTransition(cur, patch, now()));
      worker.wake();
      return { task: taskToProto(task, worker) };
    }),
    cancelTask: guard(async (req) => {
      const reason = normalizeReason(req.reason);
      const task = await store.update(taskId(req.id), (cur) => cancelTransition(cur, reason, now()));
      worker.abort(task.id);
      return { task: taskToProto(task, worker) };
    }),
    retryTask: reschedule(retryTransition),
    resumeTask: reschedule(resumeTransition),
    async *watchTask(req, ctx: HandlerContext) {
      // Listen first: a change that lands while the task is read is not missed.
      let id: string;
      try {
        id = taskId(req.id);
      } catch (err) {
        throw errors.map(err);
      }
      const updates: TaskRecord[] = [];
      let wakeUp: (() => void) | undefined;
      let removed = false;
      const onChange = (rec: TaskRecord) => {
        if (rec.id !== id) return;
        updates.push(rec);
        wakeUp?.();
      };
      const onRemoved = (removedId: string) => {
        if (removedId !== id) return;
        removed = true;
        wakeUp?.();
      };
      store.events.on("change", onChange);
      store.events.on("removed", onRemoved);
      let current: TaskRecord;
      try {
        current = await find(id);
      } catch (err) {
        store.events.off("change", onChange);
        store.events.off("removed", onRemoved);
        throw errors.map(err);
      }
      // Changes that arrived while reading, up to the record read, are not news (stores emit the
      // record object they then return).
      const first = current;
      const at = updates.indexOf(first);
      const newer = at >= 0 ? updates.slice(at + 1) : updates.filter((u) => u.updatedAtMs > first.updatedAtMs);
      updates.length = 0;
      updates.push(...newer);
      const stop = AbortSignal.any([ctx.signal, domain.shutdown]);
      const onStop = () => wakeUp?.();
      stop.addEventListener("abort", onStop);
      try {
        yield { task: taskToProto(current, worker) };
        while (!isTerminal(current.state) && !stop.aborted && !removed) {
          if (updates.length === 0) await new Promise<void>((resolve) => (wakeUp = resolve));
          wakeUp = undefined;
          while (updates.length > 0) {
            current = updates.shift()!;
            yield { task: taskToProto(current, worker) };
          }
        }
      } finally {
        store.events.off("change", onChange);
        store.events.off("removed", onRemoved);
        stop.removeEventListener("abort", onStop);
      }
    },
    getQueueStats: guard(async () => ({ stats: queueStats(store, worker, now()) })),
  };
}

export interface QueueStatsValue {
  total: number;
  counts: Record<TaskStateName, number>;
  capacity: number;
  oldestQueuedAgeMs: number | undefined;
  workerSlotsBusy: number;
  workerSlotsTotal: number;
  leasesRescued: number;
  evicted: number;
  retentionRemoved: number;
  workerAlive: boolean;
}

export function queueStatsValue(store: TaskStore, worker: Worker, now: number): QueueStatsValue {
  let oldest: number | undefined;
  for (const t of store.all()) if (t.state === "queued" && (oldest === undefined || t.createdAtMs < oldest)) oldest = t.createdAtMs;
  return {
    total: store.size,
    counts: store.counts(),
    capacity: store.capacity,
    oldestQueuedAgeMs: oldest === undefined ? undefined : Math.max(0, now - oldest),
    workerSlotsBusy: worker.busy,
    workerSlotsTotal: worker.concurrency,
    leasesRescued: worker.leasesRescued,
    evicted: store.evicted,
    retentionRemoved: store.retentionRemoved,
    workerAlive: worker.alive,
  };
}

function queueStats(store: TaskStore, worker: Worker, now: number) {
  const v = queueStatsValue(store, worker, now);
  return {
    total: v.total,
    counts: {
      queued: v.counts.queued,
      running: v.counts.running,
      blocked: v.counts.blocked,
      retryWait: v.counts.retry_wait,
      done: v.counts.done,
      failed: v.counts.failed,
      cancelled: v.counts.cancelled,
    },
    capacity: v.capacity,
    ...(v.oldestQueuedAgeMs !== undefined ? { oldestQueuedAgeMs: BigInt(v.oldestQueuedAgeMs) } : {}),
    workerSlotsBusy: v.workerSlotsBusy,
    workerSlotsTotal: v.workerSlotsTotal,
    leasesRescued: BigInt(v.leasesRescued),
    evicted: BigInt(v.evicted),
    retentionRemoved: BigInt(v.retentionRemoved),
    workerAlive: v.workerAlive,
  };
}
