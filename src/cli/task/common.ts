import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Option } from "clipanion";
import {
  TaskPayloadSchema,
  TasksService,
  type BlockedReason,
  type TaskState,
  type Task,
  type TaskPayload,
  type TaskPolicyOverrides,
} from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { payloadText } from "../../wire/payload-text.js";
import { blockedReasonNames, taskStateNames } from "../../wire/tasks.js";
import { ClientCommand } from "../base.js";
import { stripTerminalUnsafe, type Painter } from "../terminal.js";
import { CliFailure, CliUsageError, parseTimeout } from "../target.js";
import type { Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";

/** A task state's name ("retry_wait"); "unknown" for a state this build does not know. */
export const stateName = (state: TaskState): string => taskStateNames.name(state) ?? "unknown";
/** A blocked reason's name ("config_missing"); "unknown" for none or one this build does not know. */
export const blockedReasonName = (reason: BlockedReason): string => blockedReasonNames.name(reason) ?? "unknown";

/** Also accepts the original Rust cara's spellings: retry_wait|retry-wait|retrywait, cancelled|canceled. */
export function parseStateFilter(value: string): TaskState[] {
  const out: TaskState[] = [];
  for (const raw of value.split(",")) {
    const s = raw.trim().toLowerCase().replace("-", "_");
    const state = taskStateNames.value(s === "retrywait" ? "retry_wait" : s === "canceled" ? "cancelled" : s);
    if (state === undefined) throw new CliUsageError(`invalid task state filter '${raw.trim()}' (use ${taskStateNames.names.join(", ")})`);
    out.push(state);
  }
  return out;
}

/** `--payload '{"kind":"agentTurn","message":"..."}'` (the queue.json payload shape) as the wire oneof. */
export function parsePayloadFlag(text: string): TaskPayload {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliUsageError(`invalid --payload JSON (expected an object like {"kind":"systemEvent","text":"hi"}): ${(err as Error).message}`);
  }
  return parsePayloadValue(value, "--payload");
}

/** A parsed payload object (`{"kind":"systemEvent","text":"hi"}`) as the wire oneof; `what` names it in errors. */
export function parsePayloadValue(value: unknown, what: string): TaskPayload {
  if (typeof value !== "object" || value === null || Array.isArray(value) || typeof (value as { kind?: unknown }).kind !== "string") {
    throw new CliUsageError(`invalid ${what}: expected an object with a "kind" (systemEvent, agentTurn, backup, updateCheck)`);
  }
  const { kind, ...rest } = value as { kind: string } & Record<string, JsonValue>;
  // The kinds are the payload oneof's fields: ask the schema, not the decoder's error message.
  const kinds = TaskPayloadSchema.fields.map((f) => f.jsonName);
  if (!kinds.includes(kind)) throw new CliUsageError(`invalid ${what}: unknown payload kind '${kind}' (known: ${kinds.join(", ")})`);
  try {
    return fromJson(TaskPayloadSchema, { [kind]: rest });
  } catch (err) {
    throw new CliUsageError(`invalid ${what}: ${(err as Error).message.replace(/^cannot decode message carapace\.tasks\.v1\.TaskPayload from JSON: /, "")}`);
  }
}

export function parseUint(value: string | undefined, flag: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) > max) throw new CliUsageError(`${flag} must be a whole number from 0 to ${max} (got '${value}')`);
  return Number(value);
}

/** A payload as `--payload` takes it: `{"kind":"backup","keep":7}`. */
export function payloadJson(p: TaskPayload | undefined): Record<string, unknown> {
  const payload: Record<string, unknown> = p?.kind.case ? { kind: p.kind.case } : {};
  if (p?.kind.case) {
    for (const [k, v] of Object.entries(p.kind.value as object)) if (!k.startsWith("$") && v !== undefined) payload[k] = v;
  }
  return payload;
}

/** The task as a JSON object in the queue.json record shape (what the original Rust cara printed). */
export function taskJson(t: Task): Record<string, unknown> {
  const payload = payloadJson(t.payload);
  const out: Record<string, unknown> = {
    id: t.id,
    state: stateName(t.state),
    attempts: t.attempts,
    nextRunAtMs: t.nextRunAtMs !== undefined ? Number(t.nextRunAtMs) : null,
    lastError: t.lastError ?? null,
    payload,
    createdAtMs: Number(t.createdAtMs),
    updatedAtMs: Number(t.updatedAtMs),
  };
  if (t.runIds.length > 0) out.runIds = t.runIds;
  if (t.policy)
    out.policy = {
      maxAttempts: t.policy.maxAttempts,
      maxTotalRuntimeMs: Number(t.policy.maxTotalRuntimeMs),
      maxTurns: t.policy.maxTurns,
      maxRunTimeoutSeconds: t.policy.maxRunTimeoutSeconds,
    };
  if (t.blockedReason) out.blockedReason = blockedReasonName(t.blockedReason);
  if (t.policyExplicit) out.policyExplicit = true;
  if (t.priority) out.priority = t.priority;
  if (t.idempotencyKey) out.idempotencyKey = t.idempotencyKey;
  if (Object.keys(t.labels).length > 0) out.labels = t.labels;
  if (t.result !== undefined) out.result = t.result;
  if (t.finishedAtMs !== undefined) out.finishedAtMs = Number(t.finishedAtMs);
  if (t.runtimeUsedMs) out.runtimeUsedMs = Number(t.runtimeUsedMs);
  if (t.turnsUsed) out.turnsUsed = t.turnsUsed;
  if (t.note) out.note = t.note;
  if (t.lease) out.lease = { owner: t.lease.owner, expiresAtMs: Number(t.lease.expiresAtMs), heartbeatAtMs: Number(t.lease.heartbeatAtMs) };
  return out;
}

const iso = (ms: bigint | number | undefined) => (ms === undefined ? "-" : new Date(Number(ms)).toISOString());

export function payloadSummary(t: Task): string {
  return payloadText(t.payload);
}

/** Human summary of one task. */
export function formatTask(t: Task, p: Painter): string {
  const state = stateName(t.state);
  const colour = state === "done" ? p.green : state === "failed" || state === "cancelled" ? p.red : state === "blocked" ? p.yellow : (s: string) => s;
  const lines = [`Task ${t.id}  ${colour(state)}  (attempts ${t.attempts})`, `  Payload:    ${stripTerminalUnsafe(payloadSummary(t))}`];
  if (t.policy)
    lines.push(
      `  Policy:     maxAttempts ${t.policy.maxAttempts}, maxTotalRuntimeMs ${t.policy.maxTotalRuntimeMs}, maxTurns ${t.policy.maxTurns}, maxRunTimeoutSeconds ${t.policy.maxRunTimeoutSeconds}`,
    );
  lines.push(`  Created:    ${iso(t.createdAtMs)}   Updated: ${iso(t.updatedAtMs)}`);
  if (t.nextRunAtMs !== undefined) lines.push(`  Next run:   ${iso(t.nextRunAtMs)}`);
  if (t.priority) lines.push(`  Priority:   ${t.priority}`);
  if (Object.keys(t.labels).length > 0)
    lines.push(
      `  Labels:     ${Object.entries(t.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}`,
    );
  if (t.blockedReason) lines.push(`  Blocked:    ${blockedReasonName(t.blockedReason)}`);
  if (t.lastError) lines.push(`  Last error: ${stripTerminalUnsafe(t.lastError)}`);
  if (t.note) lines.push(`  Note:       ${stripTerminalUnsafe(t.note)}`);
  if (t.result !== undefined) lines.push(`  Result:     ${stripTerminalUnsafe(t.result.length > 500 ? `${t.result.slice(0, 500)}…` : t.result)}`);
  if (t.lease) lines.push(`  Lease:      ${t.lease.owner} until ${iso(t.lease.expiresAtMs)}`);
  return `${lines.join("\n")}\n`;
}

/** Base for `cara task ...` commands: connection flags, --json, and a TasksService client. */
export abstract class TaskCommand extends ClientCommand {
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  override timeout = Option.String("--timeout", "30s", { description: "Give up after this long (default 30s)" });

  protected call<T>(fn: (client: Client<typeof TasksService>) => Promise<T>): Promise<T> {
    return this.withClient(TasksService, parseTimeout(this.timeout), fn);
  }

  protected printTask(task: Task | undefined): number {
    if (!task) throw new CliFailure("the server answered without a task");
    if (this.json) this.printJson({ task: taskJson(task) });
    else this.context.stdout.write(formatTask(task, this.painter()));
    return 0;
  }
}

/** The four policy flags, for any command that sets a task policy (a class field each). */
export const policyOptions = {
  maxAttempts: () => Option.String("--max-attempts", { description: "Attempts before giving up (1-10000, default 100)" }),
  maxTotalRuntimeMs: () => Option.String("--max-total-runtime-ms", { description: "Budget from creation, ms (default 7 days, max 30 days)" }),
  maxTurns: () => Option.String("--max-turns", { description: "Agent turns per task (1-1000, default 25)" }),
  maxRunTimeoutSeconds: () => Option.String("--max-run-timeout-seconds", { description: "Per-attempt timeout cap, s (1-86400, default 600)" }),
};

/** A task command with the four policy flags (create and update). */
export abstract class PolicyTaskCommand extends TaskCommand {
  maxAttempts = policyOptions.maxAttempts();
  maxTotalRuntimeMs = policyOptions.maxTotalRuntimeMs();
  maxTurns = policyOptions.maxTurns();
  maxRunTimeoutSeconds = policyOptions.maxRunTimeoutSeconds();
}

export function policyFromFlags(f: {
  maxAttempts?: string | undefined;
  maxTotalRuntimeMs?: string | undefined;
  maxTurns?: string | undefined;
  maxRunTimeoutSeconds?: string | undefined;
}): MessageInitShape<typeof import("../../../gen/carapace/tasks/v1/tasks_pb.js").TaskPolicyOverridesSchema> | undefined {
  const p: Partial<TaskPolicyOverrides> = {};
  const a = parseUint(f.maxAttempts, "--max-attempts", 4_294_967_295);
  const r = parseUint(f.maxTotalRuntimeMs, "--max-total-runtime-ms");
  const t = parseUint(f.maxTurns, "--max-turns", 4_294_967_295);
  const s = parseUint(f.maxRunTimeoutSeconds, "--max-run-timeout-seconds", 4_294_967_295);
  if (a !== undefined) p.maxAttempts = a;
  if (r !== undefined) p.maxTotalRuntimeMs = BigInt(r);
  if (t !== undefined) p.maxTurns = t;
  if (s !== undefined) p.maxRunTimeoutSeconds = s;
  return Object.keys(p).length > 0 ? p : undefined;
}

/** A payload for the examples in --help. */
export const EXAMPLE_PAYLOAD = `'{"kind":"agentTurn","message":"summarize recent logs"}'`;

/** Base of the commands that change one task's state, with a reason. */
export abstract class LifecycleCommand extends TaskCommand {
  id = Option.String({ name: "id" });
  reason = Option.String("--reason", { description: "Why (recorded as the task's lastError; up to 1024 characters)" });

  /** The request's id and reason, checked. */
  protected taskRequest(): { id: string; reason?: string } {
    return { id: requireId(this.id), ...(this.reason !== undefined ? { reason: this.reason } : {}) };
  }
}

/** A lifecycle command that schedules the task to run again (retry, resume). */
export abstract class RescheduleCommand extends LifecycleCommand {
  delayMs = Option.String("--delay-ms", { description: "Run again after this many ms (default 0: now)" });

  /** The request's id, reason and delay, checked. */
  protected scheduleRequest(): { id: string; reason?: string; delayMs?: bigint } {
    const request = this.taskRequest();
    const delay = parseUint(this.delayMs, "--delay-ms");
    return { ...request, ...(delay !== undefined ? { delayMs: BigInt(delay) } : {}) };
  }
}

/** `--priority`: an integer within int32. */
export function parsePriority(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value) || Math.abs(Number(value)) > 2 ** 31 - 1) throw new CliUsageError(`--priority must be an integer (got '${value}')`);
  return Number(value);
}

export function parseLabels(values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new CliUsageError(`--label must be key=value (got '${v}')`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

export function requireId(id: string): string {
  const trimmed = id.trim();
  if (trimmed === "") throw new CliUsageError("task id cannot be empty");
  return trimmed;
}
