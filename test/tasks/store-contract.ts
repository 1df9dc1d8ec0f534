/**
 * The behaviour every TaskStore implementation shares, as one set of tests run against each
 * (file-store.contract.test.ts, pg-store.contract.test.ts).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { cancelTransition, TaskNotFoundError, TaskStateError, type TaskRecord } from "../../src/tasks/model.js";
import { TaskQueueFullError, type TaskInit, type TaskStore } from "../../src/tasks/task-store.js";
import { Worker } from "../../src/tasks/worker.js";

export interface StoreOptions {
  capacity?: number;
  retentionMs?: number;
  now?: () => number;
}

export interface StoreFactory {
  /** A store over new, empty state. */
  fresh(options?: StoreOptions): Promise<TaskStore>;
  /** A store over the same state as `store` (after `store` was closed: what a restart sees). */
  reopen(store: TaskStore, options?: StoreOptions): Promise<TaskStore>;
}

const init = (text: string, extra: Partial<TaskInit> = {}): TaskInit => ({ payload: { kind: "systemEvent", text }, nextRunAtMs: null, ...extra }) as TaskInit;

/** The next "change" event for `id`. */
export function nextChange(store: TaskStore, id: string): Promise<TaskRecord> {
  return new Promise((resolve) => {
    const on = (rec: TaskRecord) => {
      if (rec.id !== id) return;
      store.events.off("change", on);
      resolve(rec);
    };
    store.events.on("change", on);
  });
}

export function storeContract(name: string, factory: StoreFactory): void {
  test(`${name}: a created task is durable, readable, counted and announced`, async () => {
    const store = await factory.fresh({ now: () => 1_000 });
    const seen: TaskRecord[] = [];
    store.events.on("change", (r: TaskRecord) => seen.push(r));
    const { task, created } = await store.create(init("one", { priority: 3, labels: { team: "ops" } }));
    assert.equal(created, true);
    assert.deepEqual(store.get(task.id), task);
    assert.equal(task.state, "queued");
    assert.equal(task.attempts, 0);
    assert.equal(task.createdAtMs, 1_000);
    assert.deepEqual(seen, [task]);
    assert.equal(store.size, 1);
    assert.deepEqual(store.counts(), { queued: 1, running: 0, blocked: 0, retry_wait: 0, done: 0, failed: 0, cancelled: 0 });
    await store.close();
    const again = await factory.reopen(store);
    assert.deepEqual(again.get(task.id), task);
    assert.deepEqual([...again.all()], [task]);
    await again.close();
  });

  test(`${name}: an idempotency key returns the existing task, alone or in a batch`, async () => {
    const store = await factory.fresh();
    const first = await store.create(init("a", { idempotencyKey: "k1" }));
    const second = await store.create(init("b", { idempotencyKey: "k1" }));
    assert.equal(second.created, false);
    assert.deepEqual(second.task, first.task);
    const batch = await store.createMany([init("c"), init("d", { idempotencyKey: "k1" }), init("e", { idempotencyKey: "k2" })]);
    assert.deepEqual(
      batch.map((r) => [(r.task.payload as { text: string }).text, r.created]),
      [
        ["c", true],
        ["a", false],
        ["e", true],
      ],
    );
    assert.equal(batch[1]!.task.id, first.task.id);
    assert.equal(store.size, 3);
    await store.close();
  });

  test(`${name}: at capacity the oldest terminal task is evicted; with none, nothing is created`, async () => {
    let now = 1_000;
    const store = await factory.fresh({ capacity: 2, now: () => now });
    const a = (await store.create(init("a"))).task;
    now++;
    const b = (await store.create(init("b"))).task;
    now++;
    await assert.rejects(store.create(init("c")), TaskQueueFullError);
    await assert.rejects(store.createMany([init("c")]), TaskQueueFullError);
    assert.deepEqual([...store.all()].map((t) => t.id).sort(), [a.id, b.id].sort());
    const removed: string[] = [];
    store.events.on("removed", (id: string) => removed.push(id));
    await store.update(b.id, (cur) => cancelTransition(cur, "no longer needed", now));
    const c = await store.create(init("c"));
    assert.equal(c.created, true);
    assert.deepEqual(removed, [b.id]);
    assert.equal(store.get(b.id), undefined);
    assert.equal(store.evicted, 1);
    assert.equal(store.size, 2);
    await store.close();
  });

  test(`${name}: update applies a transition once durable; refusals and unknown ids change nothing`, async () => {
    const store = await factory.fresh({ now: () => 5_000 });
    const { task } = await store.create(init("x"));
    const cancelled = await store.update(task.id, (cur) => cancelTransition(cur, "stop", 6_000));
    assert.equal(cancelled.state, "cancelled");
    assert.equal(cancelled.lastError, "stop");
    assert.equal(cancelled.finishedAtMs, 6_000);
    assert.deepEqual(store.get(task.id), cancelled);
    await assert.rejects(
      store.update(task.id, (cur) => cancelTransition(cur, "again", 7_000)),
      (err: unknown) => err instanceof TaskStateError && err.message === "Task is already in a terminal state",
    );
    assert.deepEqual(store.get(task.id), cancelled);
    await assert.rejects(
      store.update("no-such-task", (cur) => cur),
      (err: unknown) => err instanceof TaskNotFoundError && err.message === "Task not found",
    );
    const same = await store.update(task.id, (cur) => cur);
    assert.deepEqual(same, cancelled);
    await store.close();
    // (Retention off: the clock above is far in the past, the sweep at open would remove it.)
    const again = await factory.reopen(store, { retentionMs: 0 });
    assert.deepEqual(again.get(task.id), cancelled);
    await again.close();
  });

  test(`${name}: claims take due tasks by priority then run-at, each once, within the limit`, async () => {
    const store = await factory.fresh({ now: () => 1_000 });
    const low = (await store.create(init("low"))).task;
    const high = (await store.create(init("high", { priority: 5 }))).task;
    const early = (await store.create(init("early", { nextRunAtMs: 500 }))).task;
    const later = (await store.create(init("later", { nextRunAtMs: 9_000 }))).task;
    const skipped = (await store.create(init("skipped", { priority: 9 }))).task;
    assert.equal(store.hasClaimable(400, new Set()), true);
    assert.equal(store.hasClaimable(400, new Set([low.id, high.id, skipped.id])), false);
    const first = await store.claimDue(2, 2_000, new Set([skipped.id]));
    assert.deepEqual(
      first.map((t) => [t.id, t.state, t.attempts, t.nextRunAtMs, t.updatedAtMs]),
      [
        [high.id, "running", 1, null, 2_000],
        [early.id, "running", 1, null, 2_000],
      ],
    );
    assert.deepEqual(store.get(high.id), first[0]);
    const second = await store.claimDue(10, 2_000, new Set());
    assert.deepEqual(
      second.map((t) => t.id),
      [skipped.id, low.id],
    );
    assert.deepEqual(await store.claimDue(10, 2_000, new Set()), []);
    assert.equal(store.hasClaimable(2_000, new Set()), false);
    const due = await store.claimDue(10, 9_000, new Set());
    assert.deepEqual(
      due.map((t) => t.id),
      [later.id],
    );
    assert.equal(store.counts().running, 5);
    await store.close();
  });

  test(`${name}: the retention sweep removes old terminal tasks only`, async () => {
    let now = 1_000;
    const store = await factory.fresh({ retentionMs: 10_000, now: () => now });
    const old = (await store.create(init("old"))).task;
    const kept = (await store.create(init("kept"))).task;
    await store.update(old.id, (cur) => cancelTransition(cur, undefined, now));
    now = 20_000;
    assert.equal(await store.sweepRetention(), 1);
    assert.equal(store.get(old.id), undefined);
    assert.equal(store.get(kept.id)?.state, "queued");
    assert.equal(store.retentionRemoved, 1);
    assert.equal(await store.sweepRetention(), 0);
    await store.close();
  });

  test(`${name}: a worker runs a task to done through the store`, async () => {
    const store = await factory.fresh();
    const worker = new Worker(store, { systemEvent: async () => ({ kind: "done", result: "ok" }) }, { pollMs: 50 });
    const { task } = await store.create(init("work"));
    const done = new Promise<TaskRecord>((resolve) => {
      store.events.on("change", (rec: TaskRecord) => {
        if (rec.id === task.id && rec.state === "done") resolve(rec);
      });
    });
    worker.start();
    const rec = await done;
    await worker.stop(1_000);
    assert.equal(rec.attempts, 1);
    assert.equal(rec.result, "ok");
    assert.deepEqual(store.get(task.id), rec);
    await store.close();
  });

  test(`${name}: after close, writes fail and say why`, async () => {
    const store = await factory.fresh();
    await store.create(init("x"));
    await store.close();
    await assert.rejects(store.create(init("y")), (err: unknown) => (err as Error).message === "the task store is closed (the server is shutting down)");
    assert.equal(store.closedBecause, "the task store is closed (the server is shutting down)");
  });
}
