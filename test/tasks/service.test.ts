// TasksService handlers through an in-memory router transport (the real store, worker and
// executors; no HTTP server): codes, messages and what a refused call leaves behind.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskPayloadSchema, TaskState } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { badRequestOf, errorInfoOf } from "../../src/wire/error-details.js";
import { tasksUnderTest } from "../helpers/rpc.js";

const systemEvent = (text: string) => create(TaskPayloadSchema, { kind: { case: "systemEvent", value: { text } } });
const future = () => BigInt(Date.now() + 3_600_000);

/**
 * Marks the refusals of calls that have all started as handled now: the tests await them one at a
 * time, and a refusal that takes I/O would otherwise be an unhandled rejection meanwhile.
 */
function awaitedInTurn(cases: [string, Promise<unknown>, ...unknown[]][]): void {
  for (const [, call] of cases) call.catch(() => undefined);
}

/** The call's failure as [code, message, ErrorInfo reason]. */
async function failure(call: Promise<unknown>): Promise<[Code, string, string | undefined]> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    return [err.code, err.rawMessage, errorInfoOf(err)?.reason];
  }
  throw new Error("the call succeeded");
}

test("TasksService: every bad input is a clear error with the right code and changes nothing", async () => {
  const { client } = await tasksUnderTest();
  const x = systemEvent("x");
  const cases: [string, Promise<unknown>, Code, string][] = [
    ["create without payload", client.createTask({}), Code.InvalidArgument, "payload is required"],
    ["create with an empty payload", client.createTask({ payload: {} }), Code.InvalidArgument, "Invalid task payload: unrecognized payload kind"],
    [
      "create with a blank message",
      client.createTask({ payload: { kind: { case: "agentTurn", value: { message: " " } } } }),
      Code.InvalidArgument,
      "Invalid task payload: agentTurn needs a non-empty message",
    ],
    [
      "maxAttempts 0",
      client.createTask({ payload: x, policy: { maxAttempts: 0 } }),
      Code.InvalidArgument,
      "invalid policy.maxAttempts: must be between 1 and 10000",
    ],
    [
      "runtime past 30 days",
      client.createTask({ payload: x, policy: { maxTotalRuntimeMs: 2592000001n } }),
      Code.InvalidArgument,
      "invalid policy.maxTotalRuntimeMs: must be between 1 and 2592000000",
    ],
    [
      "a bad label key",
      client.createTask({ payload: x, labels: { "bad key": "v" } }),
      Code.InvalidArgument,
      "labels: invalid key 'bad key' (1-63 characters of letters, digits, _ . - /)",
    ],
    [
      "a payload too large",
      client.createTask({ payload: systemEvent("x".repeat(131_073)) }),
      Code.InvalidArgument,
      "Invalid task payload: larger than 131072 bytes",
    ],
    ["get unknown", client.getTask({ id: "nope" }), Code.NotFound, "Task not found"],
    ["get blank", client.getTask({ id: "  " }), Code.InvalidArgument, "task id cannot be empty"],
    ["list limit", client.listTasks({ limit: 1001 }), Code.InvalidArgument, "limit must be between 0 and 1000 (got 1001)"],
    [
      "list page token",
      client.listTasks({ pageToken: "garbage" }),
      Code.InvalidArgument,
      "page_token is not one this server issued (pass next_page_token from the previous answer)",
    ],
    [
      "list unspecified state",
      client.listTasks({ states: [TaskState.UNSPECIFIED] }),
      Code.InvalidArgument,
      "invalid task state filter (allowed: queued, running, blocked, retry_wait, done, failed, cancelled)",
    ],
    ["cancel unknown", client.cancelTask({ id: "nope" }), Code.NotFound, "Task not found"],
    ["retry reason too long", client.retryTask({ id: "nope", reason: "x".repeat(1025) }), Code.InvalidArgument, "reason exceeds 1024 characters"],
  ];
  awaitedInTurn(cases);
  for (const [what, call, code, message] of cases) {
    const [gotCode, gotMessage] = await failure(call);
    assert.deepEqual([Code[gotCode], gotMessage], [Code[code], message], what);
  }
  assert.equal((await client.listTasks({})).total, 0, "nothing was created by the refused calls");

  const { task } = await client.createTask({ payload: systemEvent("later"), nextRunAtMs: future() });
  const id = task!.id;
  const refused: [string, Promise<unknown>, string, string][] = [
    ["retry", client.retryTask({ id }), "Task is not retryable in its current state", "TASK_STATE_CONFLICT"],
    ["resume", client.resumeTask({ id }), "Task is not blocked", "TASK_STATE_CONFLICT"],
    ["empty update", client.updateTask({ id }), "Task patch requires payload, policy, or reason", "TASK_INVALID_ARGUMENT"],
  ];
  awaitedInTurn(refused);
  for (const [what, call, message, reason] of refused) {
    const [, gotMessage, gotReason] = await failure(call);
    assert.deepEqual([gotMessage, gotReason], [message, reason], what);
  }
  assert.deepEqual((await client.getTask({ id })).task, task, "refused transitions changed nothing");
});

test("idempotency key, paging and queue stats", async () => {
  const { client } = await tasksUnderTest();
  const a = await client.createTask({ payload: systemEvent("x"), idempotencyKey: "deploy-42", nextRunAtMs: future() });
  const b = await client.createTask({ payload: systemEvent("y"), idempotencyKey: "deploy-42", nextRunAtMs: future() });
  assert.equal(a.created, true);
  assert.equal(b.created, false);
  assert.equal(b.task!.id, a.task!.id);
  for (let i = 0; i < 4; i++) await client.createTask({ payload: systemEvent(`p${i}`), nextRunAtMs: future() });
  const seen: string[] = [];
  let token = "";
  do {
    const page = await client.listTasks({ limit: 2, pageToken: token });
    assert.equal(page.total, 5);
    seen.push(...page.tasks.map((t) => t.id));
    token = page.nextPageToken;
  } while (token);
  assert.equal(new Set(seen).size, 5);
  const { stats } = await client.getQueueStats({});
  assert.equal(stats!.total, 5);
  assert.equal(stats!.counts!.queued, 5);
  assert.equal(stats!.workerSlotsTotal, 4);
  assert.equal(stats!.workerAlive, true);
  assert.ok(Number(stats!.oldestQueuedAgeMs) >= 0);
});

test("WatchTask: the current task first, then each change until a final state; an unknown id is NOT_FOUND", async () => {
  const { client } = await tasksUnderTest();
  const { task } = await client.createTask({ payload: systemEvent("watch me"), nextRunAtMs: future() });
  const states: string[] = [];
  const watching = (async () => {
    for await (const msg of client.watchTask({ id: task!.id })) {
      states.push(TaskState[msg.task!.state]);
      // Seen queued for later: make it due now; the worker runs it to done.
      if (states.length === 1) await client.updateTask({ id: task!.id, nextRunAtMs: 0n });
    }
  })();
  await watching;
  assert.equal(states[0], "QUEUED");
  assert.equal(states.at(-1), "DONE");
  assert.ok(states.includes("RUNNING"), states.join(" "));
  assert.deepEqual(await failure(collect(client.watchTask({ id: "nope" }))), [Code.NotFound, "Task not found", "TASK_NOT_FOUND"]);
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

test("a NUL character (which PostgreSQL cannot store) is refused in any string a task keeps, naming the field, for either store", async () => {
  const { client } = await tasksUnderTest();
  const { task } = await client.createTask({ payload: systemEvent("ok"), nextRunAtMs: future() });
  const id = task!.id;
  const cases: [string, Promise<unknown>, string, string][] = [
    [
      "text",
      client.createTask({ payload: systemEvent("a\u0000b") }),
      "Invalid task payload: text must not contain a NUL character (\\u0000)",
      "payload.system_event.text",
    ],
    [
      "agent message",
      client.createTask({ payload: create(TaskPayloadSchema, { kind: { case: "agentTurn", value: { message: "\u0000" } } }) }),
      "Invalid task payload: message must not contain a NUL character (\\u0000)",
      "payload.agent_turn.message",
    ],
    [
      "agent model",
      client.createTask({ payload: create(TaskPayloadSchema, { kind: { case: "agentTurn", value: { message: "hi", model: "m\u0000" } } }) }),
      "Invalid task payload: model must not contain a NUL character (\\u0000)",
      "payload.agent_turn.model",
    ],
    [
      "key",
      client.createTask({ payload: systemEvent("x"), idempotencyKey: "k\u0000" }),
      "idempotency_key must not contain a NUL character (\\u0000)",
      "idempotency_key",
    ],
    [
      "label",
      client.createTask({ payload: systemEvent("x"), labels: { team: "a\u0000" } }),
      "labels: value of 'team' must not contain a NUL character (\\u0000)",
      "labels",
    ],
    [
      "batch",
      client.createTasks({ tasks: [{ payload: systemEvent("fine") }, { payload: systemEvent("\u0000") }] }),
      "tasks[1]: Invalid task payload: text must not contain a NUL character (\\u0000)",
      "tasks[1].payload.system_event.text",
    ],
    [
      "update text",
      client.updateTask({ id, payload: systemEvent("\u0000") }),
      "Invalid task payload: text must not contain a NUL character (\\u0000)",
      "payload.system_event.text",
    ],
    [
      "update label",
      client.updateTask({ id, setLabels: { team: "\u0000" } }),
      "labels: value of 'team' must not contain a NUL character (\\u0000)",
      "set_labels",
    ],
    ["update reason", client.updateTask({ id, priority: 2, reason: "why\u0000" }), "reason must not contain a NUL character (\\u0000)", "reason"],
    ["cancel reason", client.cancelTask({ id, reason: "\u0000x" }), "reason must not contain a NUL character (\\u0000)", "reason"],
    ["id", client.getTask({ id: "a\u0000" }), "task id must not contain a NUL character (\\u0000)", "id"],
  ];
  awaitedInTurn(cases);
  for (const [what, call, message, field] of cases) {
    let caught: unknown;
    await call.catch((err: unknown) => {
      caught = err;
    });
    assert.ok(caught instanceof ConnectError, `${what}: ${String(caught)}`);
    assert.deepEqual(
      [Code[caught.code], caught.rawMessage, errorInfoOf(caught)?.reason, badRequestOf(caught)?.fieldViolations.map((v) => v.field)],
      [Code[Code.InvalidArgument], message, "TASK_INVALID_ARGUMENT", [field]],
      what,
    );
  }
  assert.equal((await client.listTasks({})).total, 1, "nothing was created by the refused calls");
  assert.deepEqual((await client.getTask({ id })).task, task, "nothing was changed by the refused calls");
});
