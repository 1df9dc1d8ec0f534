/**
 * The durable task model: the on-disk record (the original Rust cara's camelCase queue.json shape plus
 * our additions), states, policy bounds, payload normalization and the operator transitions.
 * Pure functions only: no I/O, no RPC.
 */

export const TASK_STATES = ["queued", "running", "blocked", "retry_wait", "done", "failed", "cancelled"] as const;
export type TaskStateName = (typeof TASK_STATES)[number];
export const TERMINAL_STATES: ReadonlySet<TaskStateName> = new Set(["done", "failed", "cancelled"]);

export const BLOCKED_REASONS = [
  "approval_required",
  "config_missing",
  "delivery_failure",
  "external_dependency",
  "operator_action_required",
  "unknown",
] as const;
export type BlockedReasonName = (typeof BLOCKED_REASONS)[number];

export interface TaskPolicyRecord {
  maxAttempts: number;
  maxTotalRuntimeMs: number;
  maxTurns: number;
  maxRunTimeoutSeconds: number;
}

export const DEFAULT_POLICY: Readonly<TaskPolicyRecord> = Object.freeze({
  maxAttempts: 100,
  maxTotalRuntimeMs: 604_800_000,
  maxTurns: 25,
  maxRunTimeoutSeconds: 600,
});

export const POLICY_MAX: Readonly<TaskPolicyRecord> = Object.freeze({
  maxAttempts: 10_000,
  maxTotalRuntimeMs: 2_592_000_000,
  maxTurns: 1_000,
  maxRunTimeoutSeconds: 86_400,
});

export type SystemEventPayload = { kind: "systemEvent"; text: string };
export type AgentTurnPayload = {
  kind: "agentTurn";
  message: string;
  model?: string;
  route?: string;
  thinking?: string;
  timeoutSeconds?: number;
  allowUnsafeExternalContent?: boolean;
  deliver?: boolean;
  channel?: string;
  to?: string;
  bestEffortDeliver?: boolean;
};
export type BackupTaskPayload = { kind: "backup"; keep: number; sections?: string[] };
export type UpdateCheckPayload = { kind: "updateCheck"; channel?: string };
export type TaskPayloadRecord = SystemEventPayload | AgentTurnPayload | BackupTaskPayload | UpdateCheckPayload;

/** One task as stored in queue.json (and as the original Rust cara writes it). */
export interface TaskRecord {
  id: string;
  state: TaskStateName;
  attempts: number;
  nextRunAtMs: number | null;
  lastError: string | null;
  payload: TaskPayloadRecord | Record<string, unknown>;
  createdAtMs: number;
  updatedAtMs: number;
  runIds?: string[];
  policy: TaskPolicyRecord;
  blockedReason?: BlockedReasonName;
  policyExplicit?: boolean;
  // Beyond the original Rust cara (omitted when unset, so its tools still read the file):
  priority?: number;
  idempotencyKey?: string;
  labels?: Record<string, string>;
  result?: string;
  finishedAtMs?: number;
  runtimeUsedMs?: number;
  turnsUsed?: number;
  /** The reason given with the last operator patch (lastError keeps the error). */
  note?: string;
}

/** A request the task rules refuse; `field` is the request field at fault, as a proto field path. */
export class TaskValidationError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** camelCase (queue.json, JSON names) to snake_case (proto field names), for field paths. */
const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Refuses a string holding a NUL character (U+0000): PostgreSQL's text and jsonb cannot store it,
 * so a task holding one could not be written to the PostgreSQL store, migrated to it or restored
 * into it. Refused for both stores, so a queue moves between them whole.
 */
export function rejectNul(value: string, field: string, what = field): void {
  if (value.includes("\u0000")) throw new TaskValidationError(`${what} must not contain a NUL character (\\u0000)`, field);
}
/** Half of a UTF-16 surrogate pair without its other half (JSON writes it as `\ud83d`). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * What the worker writes of an attempt's outcome (an agent's reply, an error message) with each
 * NUL character (U+0000) and each lone surrogate (a reply cut in the middle of an emoji, or sent
 * that way) replaced by U+FFFD: unlike a request's fields, which are refused, these come from
 * outside and must still be stored, and PostgreSQL refused the whole write (the attempt's result
 * was lost, and the task ran again when its lease ended).
 */
export function storableText(value: string): string {
  return value.replaceAll("\u0000", "\uFFFD").replace(LONE_SURROGATE, "\uFFFD");
}

export class TaskStateError extends Error {}
export class TaskNotFoundError extends Error {
  constructor() {
    super("Task not found");
  }
}

export const MAX_PAYLOAD_BYTES = 128 * 1024;
export const MAX_REASON_CHARS = 1024;
export const MAX_RESULT_CHARS = 16 * 1024;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function optString(src: Record<string, unknown>, key: string, out: Record<string, unknown>): void {
  const v = src[key];
  if (v === undefined || v === null) return;
  const field = `payload.${snake(String(src.kind))}.${snake(key)}`;
  if (typeof v !== "string") throw new TaskValidationError(`Invalid task payload: ${key} must be a string`, field);
  rejectNul(v, field, `Invalid task payload: ${key}`);
  out[key] = v;
}
function optBool(src: Record<string, unknown>, key: string, out: Record<string, unknown>): void {
  const v = src[key];
  if (v === undefined || v === null) return;
  if (typeof v !== "boolean")
    throw new TaskValidationError(`Invalid task payload: ${key} must be a boolean`, `payload.${snake(String(src.kind))}.${snake(key)}`);
  out[key] = v;
}

/**
 * Validates and normalizes a payload object (`{"kind": ..., ...}`): unknown fields are dropped,
 * required fields checked, size bounded. Throws TaskValidationError with the original Rust cara's words.
 */
export function normalizePayload(value: unknown): TaskPayloadRecord {
  if (!isObj(value)) throw new TaskValidationError("Invalid task payload: expected an object with a kind", "payload");
  const kind = value.kind;
  let out: Record<string, unknown>;
  switch (kind) {
    case "systemEvent": {
      if (typeof value.text !== "string" || value.text.trim() === "")
        throw new TaskValidationError("Invalid task payload: systemEvent needs a non-empty text", "payload.system_event.text");
      rejectNul(value.text, "payload.system_event.text", "Invalid task payload: text");
      out = { kind, text: value.text };
      break;
    }
    case "agentTurn": {
      if (typeof value.message !== "string" || value.message.trim() === "")
        throw new TaskValidationError("Invalid task payload: agentTurn needs a non-empty message", "payload.agent_turn.message");
      rejectNul(value.message, "payload.agent_turn.message", "Invalid task payload: message");
      out = { kind, message: value.message };
      for (const k of ["model", "route", "thinking", "channel", "to"]) optString(value, k, out);
      for (const k of ["allowUnsafeExternalContent", "deliver", "bestEffortDeliver"]) optBool(value, k, out);
      if (value.timeoutSeconds !== undefined && value.timeoutSeconds !== null) {
        const t = value.timeoutSeconds;
        if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > 4_294_967_295) {
          throw new TaskValidationError("Invalid task payload: timeoutSeconds must be a whole number of seconds", "payload.agent_turn.timeout_seconds");
        }
        out.timeoutSeconds = t;
      }
      break;
    }
    case "backup": {
      const keep = value.keep ?? 7;
      if (typeof keep !== "number" || !Number.isInteger(keep) || keep < 1 || keep > 1000)
        throw new TaskValidationError("Invalid task payload: backup keep must be between 1 and 1000", "payload.backup.keep");
      out = { kind, keep };
      if (value.sections !== undefined) {
        if (!Array.isArray(value.sections) || !value.sections.every((s) => typeof s === "string"))
          throw new TaskValidationError("Invalid task payload: backup sections must be a list of names", "payload.backup.sections");
        for (const name of value.sections as string[]) rejectNul(name, "payload.backup.sections", "Invalid task payload: backup sections");
        out.sections = value.sections;
      }
      break;
    }
    case "updateCheck": {
      out = { kind };
      optString(value, "channel", out);
      break;
    }
    default:
      throw new TaskValidationError("Invalid task payload: unrecognized payload kind", "payload");
  }
  if (Buffer.byteLength(JSON.stringify(out)) > MAX_PAYLOAD_BYTES)
    throw new TaskValidationError(`Invalid task payload: larger than ${MAX_PAYLOAD_BYTES} bytes`, "payload");
  return out as TaskPayloadRecord;
}

/** Applies policy overrides, refusing out-of-range values with the original Rust cara's message. */
export function applyPolicy(base: TaskPolicyRecord, overrides: Partial<Record<keyof TaskPolicyRecord, number | undefined>>): TaskPolicyRecord {
  const out = { ...base };
  for (const key of Object.keys(POLICY_MAX) as (keyof TaskPolicyRecord)[]) {
    const v = overrides[key];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1 || v > POLICY_MAX[key]) {
      throw new TaskValidationError(`invalid policy.${key}: must be between 1 and ${POLICY_MAX[key]}`, `policy.${snake(key)}`);
    }
    out[key] = v;
  }
  return out;
}

/** Trims a reason; blank means absent; longer than 1024 characters is refused. */
export function normalizeReason(reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined;
  const trimmed = reason.trim();
  if (trimmed === "") return undefined;
  if ([...trimmed].length > MAX_REASON_CHARS) throw new TaskValidationError(`reason exceeds ${MAX_REASON_CHARS} characters`, "reason");
  rejectNul(trimmed, "reason");
  return trimmed;
}

export function isTerminal(state: TaskStateName): boolean {
  return TERMINAL_STATES.has(state);
}

/** Whether a task should be picked up by the worker now. */
export function isDue(task: TaskRecord, now: number): boolean {
  if (task.state === "queued") return task.nextRunAtMs === null || now >= task.nextRunAtMs;
  if (task.state === "retry_wait") return task.nextRunAtMs !== null && now >= task.nextRunAtMs;
  return false;
}

/** The time from which `isDue(task, t)` holds (-Infinity: due now), or undefined: not due until it changes. */
export function dueAt(task: TaskRecord): number | undefined {
  if (task.state === "queued") return task.nextRunAtMs ?? -Infinity;
  if (task.state === "retry_wait") return task.nextRunAtMs ?? undefined;
  return undefined;
}

/** The order due tasks are claimed in: highest priority first, then earliest run-at (or creation). */
export function claimOrder(a: TaskRecord, b: TaskRecord): number {
  return (b.priority ?? 0) - (a.priority ?? 0) || (a.nextRunAtMs ?? a.createdAtMs) - (b.nextRunAtMs ?? b.createdAtMs);
}

/** A worker takes a due task: it runs, with one more attempt. */
export function claimTransition(task: TaskRecord, now: number): TaskRecord {
  return { ...task, state: "running", attempts: task.attempts + 1, nextRunAtMs: null, updatedAtMs: now };
}

/** A running task whose lease ended (its server stopped, or lost the store): due again now. */
export function rescueTransition(task: TaskRecord, now: number): TaskRecord {
  return {
    ...task,
    state: "retry_wait",
    nextRunAtMs: now,
    updatedAtMs: now,
    lastError: "lease expired: the server running this attempt stopped or lost the database before it finished",
  };
}

function without<T extends object, K extends keyof T>(obj: T, ...keys: K[]): T {
  const copy = { ...obj };
  for (const k of keys) delete copy[k];
  return copy;
}

/** Operator cancel: from any non-terminal state. */
export function cancelTransition(task: TaskRecord, reason: string | undefined, now: number): TaskRecord {
  if (isTerminal(task.state)) throw new TaskStateError("Task is already in a terminal state");
  return { ...without(task, "blockedReason"), state: "cancelled", lastError: reason ?? null, nextRunAtMs: null, updatedAtMs: now, finishedAtMs: now };
}

/** Operator retry: from failed, blocked, cancelled or retry_wait. Attempts are not reset. */
export function retryTransition(task: TaskRecord, reason: string | undefined, delayMs: number, now: number): TaskRecord {
  if (!["failed", "blocked", "cancelled", "retry_wait"].includes(task.state)) throw new TaskStateError("Task is not retryable in its current state");
  return operatorRequeue(task, reason ?? "retried by operator", delayMs, now);
}

/** Operator resume: only from blocked. */
export function resumeTransition(task: TaskRecord, reason: string | undefined, delayMs: number, now: number): TaskRecord {
  if (task.state !== "blocked") throw new TaskStateError("Task is not blocked");
  return operatorRequeue(task, reason ?? "resumed by operator", delayMs, now);
}

/** Retry and resume both put the task back in retry_wait, due after `delayMs`, with the operator's reason. */
function operatorRequeue(task: TaskRecord, reason: string, delayMs: number, now: number): TaskRecord {
  return {
    ...without(task, "blockedReason", "finishedAtMs"),
    state: "retry_wait",
    lastError: reason,
    nextRunAtMs: now + delayMs,
    updatedAtMs: now,
  };
}

export interface TaskPatch {
  payload?: TaskPayloadRecord;
  policy?: Partial<Record<keyof TaskPolicyRecord, number | undefined>>;
  reason?: string;
  priority?: number;
  nextRunAtMs?: number;
  setLabels?: Record<string, string>;
  removeLabels?: string[];
}

/** Operator patch: not while running or done. */
export function patchTransition(task: TaskRecord, patch: TaskPatch, now: number): TaskRecord {
  const policyKeys = patch.policy ? Object.values(patch.policy).filter((v) => v !== undefined).length : 0;
  const labelChanges = Object.keys(patch.setLabels ?? {}).length + (patch.removeLabels?.length ?? 0);
  if (
    patch.payload === undefined &&
    policyKeys === 0 &&
    patch.reason === undefined &&
    patch.priority === undefined &&
    patch.nextRunAtMs === undefined &&
    labelChanges === 0
  ) {
    throw new TaskValidationError("Task patch requires payload, policy, or reason");
  }
  if (task.state === "running" || task.state === "done") throw new TaskStateError(`Task is ${task.state}; patch rejected`);
  if (patch.nextRunAtMs !== undefined && task.state !== "queued" && task.state !== "retry_wait") {
    throw new TaskStateError("nextRunAtMs can only be changed while the task is queued or retry_wait");
  }
  const next: TaskRecord = { ...task, updatedAtMs: now };
  if (patch.payload !== undefined) next.payload = patch.payload;
  if (policyKeys > 0) {
    next.policy = applyPolicy(task.policy, patch.policy!);
    next.policyExplicit = true;
  }
  if (patch.reason !== undefined) next.note = patch.reason;
  if (patch.priority !== undefined) next.priority = patch.priority;
  if (patch.nextRunAtMs !== undefined) next.nextRunAtMs = patch.nextRunAtMs;
  if (labelChanges > 0) {
    const labels = { ...(task.labels ?? {}), ...(patch.setLabels ?? {}) };
    for (const k of patch.removeLabels ?? []) delete labels[k];
    if (Object.keys(labels).length > 0) next.labels = labels;
    else delete next.labels;
  }
  return next;
}

/** Validates labels: at most 32, keys 1..63 chars [a-zA-Z0-9_.-/], values ≤ 256 chars. */
export function validateLabels(labels: Record<string, string>, field = "labels"): void {
  const entries = Object.entries(labels);
  if (entries.length > 32) throw new TaskValidationError("labels: at most 32 labels per task", field);
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$/.test(k))
      throw new TaskValidationError(`labels: invalid key '${k.slice(0, 70)}' (1-63 characters of letters, digits, _ . - /)`, field);
    if (v.length > 256) throw new TaskValidationError(`labels: value of '${k}' is longer than 256 characters`, field);
    rejectNul(v, field, `labels: value of '${k}'`);
  }
}

/**
 * Reads one stored record leniently, as the original Rust cara does: unknown fields dropped, missing
 * policy defaulted, unknown state -> failed, unknown blockedReason -> unknown. Returns an error
 * string for a record that cannot be used at all (missing id, state, attempts, payload, times).
 */
export function recordFromDisk(value: unknown): TaskRecord | string {
  if (!isObj(value)) return "a task record is not an object";
  const { id, state, attempts, payload, createdAtMs, updatedAtMs } = value;
  if (typeof id !== "string" || id === "") return "a task record has no id";
  if (typeof state !== "string") return `task ${id} has no state`;
  if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 0) return `task ${id} has no valid attempts`;
  if (!isObj(payload)) return `task ${id} has no payload object`;
  if (typeof createdAtMs !== "number" || typeof updatedAtMs !== "number") return `task ${id} has no createdAtMs/updatedAtMs`;
  const rec: TaskRecord = {
    id,
    state: (TASK_STATES as readonly string[]).includes(state) ? (state as TaskStateName) : "failed",
    attempts,
    nextRunAtMs: typeof value.nextRunAtMs === "number" ? value.nextRunAtMs : null,
    lastError: typeof value.lastError === "string" ? value.lastError : null,
    payload,
    createdAtMs,
    updatedAtMs,
    policy: { ...DEFAULT_POLICY },
  };
  if (isObj(value.policy)) {
    for (const k of Object.keys(DEFAULT_POLICY) as (keyof TaskPolicyRecord)[]) {
      const v = value.policy[k];
      if (typeof v === "number" && Number.isInteger(v) && v >= 0) rec.policy[k] = v;
    }
  }
  if (Array.isArray(value.runIds)) {
    const ids = value.runIds.filter((r): r is string => typeof r === "string" && r.trim() !== "");
    if (ids.length > 0) rec.runIds = ids;
  }
  if (typeof value.blockedReason === "string") {
    rec.blockedReason = (BLOCKED_REASONS as readonly string[]).includes(value.blockedReason) ? (value.blockedReason as BlockedReasonName) : "unknown";
  }
  if (value.policyExplicit === true) rec.policyExplicit = true;
  if (typeof value.priority === "number" && Number.isInteger(value.priority) && value.priority !== 0) rec.priority = value.priority;
  if (typeof value.idempotencyKey === "string" && value.idempotencyKey !== "") rec.idempotencyKey = value.idempotencyKey;
  if (isObj(value.labels)) {
    const labels = Object.fromEntries(Object.entries(value.labels).filter((e): e is [string, string] => typeof e[1] === "string"));
    if (Object.keys(labels).length > 0) rec.labels = labels;
  }
  if (typeof value.result === "string") rec.result = value.result;
  if (typeof value.finishedAtMs === "number") rec.finishedAtMs = value.finishedAtMs;
  if (typeof value.runtimeUsedMs === "number" && value.runtimeUsedMs > 0) rec.runtimeUsedMs = value.runtimeUsedMs;
  if (typeof value.turnsUsed === "number" && value.turnsUsed > 0) rec.turnsUsed = value.turnsUsed;
  if (typeof value.note === "string" && value.note !== "") rec.note = value.note;
  return rec;
}

/** The record with the original Rust cara's field order (then ours), for queue.json and the journal. */
export function orderedRecord(rec: TaskRecord): TaskRecord {
  const out: Omit<TaskRecord, "policy"> & { policy?: TaskPolicyRecord } = {
    id: rec.id,
    state: rec.state,
    attempts: rec.attempts,
    nextRunAtMs: rec.nextRunAtMs,
    lastError: rec.lastError,
    payload: rec.payload,
    createdAtMs: rec.createdAtMs,
    updatedAtMs: rec.updatedAtMs,
  };
  if (rec.runIds && rec.runIds.length > 0) out.runIds = rec.runIds;
  out.policy = rec.policy;
  if (rec.blockedReason) out.blockedReason = rec.blockedReason;
  if (rec.policyExplicit) out.policyExplicit = true;
  if (rec.priority) out.priority = rec.priority;
  if (rec.idempotencyKey) out.idempotencyKey = rec.idempotencyKey;
  if (rec.labels) out.labels = rec.labels;
  if (rec.result !== undefined) out.result = rec.result;
  if (rec.finishedAtMs !== undefined) out.finishedAtMs = rec.finishedAtMs;
  if (rec.runtimeUsedMs) out.runtimeUsedMs = rec.runtimeUsedMs;
  if (rec.turnsUsed) out.turnsUsed = rec.turnsUsed;
  if (rec.note) out.note = rec.note;
  return out as TaskRecord;
}
