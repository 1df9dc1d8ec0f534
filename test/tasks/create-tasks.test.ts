import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { tasksService } from "../../src/tasks/service.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { Worker } from "../../src/tasks/worker.js";
import { tempDir } from "../helpers/cara.js";

async function world(capacity = 10_000) {
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir, { recursive: true });
  const store = await FileTaskStore.open({ dir, capacity });
  const worker = new Worker(store, {});
  const client = createClient(
    TasksService,
    createRouterTransport(({ service }) => service(TasksService, tasksService({ store, worker, shutdown: new AbortController().signal }))),
  );
  return { dir, store, client };
}

const sys = (text: string, extra: object = {}) => ({
  payload: { kind: { case: "systemEvent" as const, value: { text } } },
  nextRunAtMs: BigInt(Date.now() + 3_600_000),
  ...extra,
});

test("CreateTasks: 1,000 tasks in one call and one durable write; known keys return their task", async () => {
  const { dir, store, client } = await world();
  const first = await client.createTask(sys("before", { idempotencyKey: "k-1" }));
  const batch = Array.from({ length: 999 }, (_, i) => sys(`t${i}`));
  const res = await client.createTasks({ tasks: [sys("again", { idempotencyKey: "k-1" }), ...batch] });
  assert.equal(res.results.length, 1000);
  assert.equal(res.results[0]!.created, false);
  assert.equal(res.results[0]!.task!.id, first.task!.id);
  assert.ok(res.results.slice(1).every((r) => r.created));
  assert.equal(store.size, 1000);
  const { readFile } = await import("node:fs/promises");
  const commits = (await readFile(join(dir, "queue.journal"), "utf8")).split("\n").filter((l) => l === '{"op":"commit"}').length;
  assert.equal(commits, 2, "one commit for the first task, one for the whole batch");
  await store.close();
});

test("CreateTasks is all or none: a bad request names its index, a repeated key is refused, a full queue creates nothing", async () => {
  const { store, client } = await world(5);
  const bad = await client.createTasks({ tasks: [sys("ok"), { payload: {} }, sys("ok too")] }).catch((e: unknown) => e);
  assert.ok(bad instanceof ConnectError);
  assert.equal(bad.code, Code.InvalidArgument);
  assert.equal(bad.rawMessage, "tasks[1]: Invalid task payload: unrecognized payload kind");
  const dup = await client.createTasks({ tasks: [sys("a", { idempotencyKey: "same" }), sys("b", { idempotencyKey: "same" })] }).catch((e: unknown) => e);
  assert.equal((dup as ConnectError).rawMessage, "tasks[1]: idempotency_key 'same' appears more than once in the batch");
  const full = await client.createTasks({ tasks: Array.from({ length: 6 }, (_, i) => sys(`t${i}`)) }).catch((e: unknown) => e);
  assert.equal((full as ConnectError).code, Code.ResourceExhausted);
  assert.equal(store.size, 0, "nothing was created by any refused batch");
  const empty = await client.createTasks({ tasks: [] }).catch((e: unknown) => e);
  assert.equal((empty as ConnectError).rawMessage, "tasks must hold 1 to 1000 requests (got 0)");
  await store.close();
});
