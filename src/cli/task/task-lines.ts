import { fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { TaskPolicyOverridesSchema, type CreateTaskRequestSchema } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { CliUsageError } from "../target.js";
import { parsePayloadValue } from "./common.js";

/** One CreateTask request, as `cara task create --from-file` sends it. */
export type TaskLine = MessageInitShape<typeof CreateTaskRequestSchema>;

const KEYS = ["payload", "policy", "priority", "labels", "idempotencyKey", "nextRunAtMs"];

/**
 * The tasks of a JSON Lines text: one object per line, `{"payload":{"kind":...}, "policy"?,
 * "priority"?, "labels"?, "idempotencyKey"?, "nextRunAtMs"?}` (the flags of `cara task create`,
 * in the API's JSON names). Blank lines are skipped. The first bad line is a usage error that
 * names `source`, the line number and what is wrong.
 */
export function parseTaskLines(text: string, source: string): TaskLine[] {
  const tasks: TaskLine[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const fail = (problem: string): never => {
      throw new CliUsageError(`${source} line ${i + 1}: ${problem}`);
    };
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      fail(`invalid JSON: ${(err as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail('expected a JSON object like {"payload":{"kind":"systemEvent","text":"hi"}}');
    const o = value as Record<string, unknown>;
    const unknown = Object.keys(o).filter((k) => !KEYS.includes(k));
    if (unknown.length > 0) fail(`unknown field '${unknown[0]}' (known: ${KEYS.join(", ")})`);
    if (o.payload === undefined) fail('missing "payload"');
    const task: TaskLine = { payload: withLine(i, source, () => parsePayloadValue(o.payload, "payload")) };
    if (o.policy !== undefined) {
      try {
        task.policy = fromJson(TaskPolicyOverridesSchema, o.policy as JsonValue);
      } catch (err) {
        fail(`invalid policy: ${(err as Error).message.replace(/^cannot decode message carapace\.tasks\.v1\.TaskPolicyOverrides from JSON: /, "")}`);
      }
    }
    if (o.priority !== undefined) {
      if (!Number.isInteger(o.priority) || (o.priority as number) < -2_147_483_648 || (o.priority as number) > 2_147_483_647)
        fail("priority must be an integer from -2147483648 to 2147483647");
      task.priority = o.priority as number;
    }
    if (o.labels !== undefined) {
      const labels = o.labels;
      if (typeof labels !== "object" || labels === null || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== "string"))
        fail('labels must be an object of strings, like {"team":"ops"}');
      task.labels = labels as Record<string, string>;
    }
    if (o.idempotencyKey !== undefined) {
      if (typeof o.idempotencyKey !== "string") fail("idempotencyKey must be a string");
      task.idempotencyKey = o.idempotencyKey as string;
    }
    if (o.nextRunAtMs !== undefined) {
      if (!Number.isSafeInteger(o.nextRunAtMs) || (o.nextRunAtMs as number) < 0) fail("nextRunAtMs must be a whole number of ms from 0");
      task.nextRunAtMs = BigInt(o.nextRunAtMs as number);
    }
    tasks.push(task);
  }
  return tasks;
}

/** `fn()`, with a usage error's message prefixed by where it was read. */
function withLine<T>(i: number, source: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CliUsageError) throw new CliUsageError(`${source} line ${i + 1}: ${err.message}`);
    throw err;
  }
}
