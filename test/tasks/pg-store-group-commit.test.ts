// The PostgreSQL store's group commit: creates that arrive while a create transaction runs go
// together in the next one, and each gets the answer it would get alone (idempotency keys,
// capacity). Rows written by one transaction share its xmin, which shows the batching. Against a
// throwaway cluster (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { PgTaskStore } from "../../src/tasks/postgres/pg-store.js";
import { TaskQueueFullError, type TaskInit } from "../../src/tasks/task-store.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

const init = (text: string, idempotencyKey?: string): TaskInit =>
  ({ payload: { kind: "systemEvent", text }, nextRunAtMs: null, ...(idempotencyKey ? { idempotencyKey } : {}) }) as TaskInit;

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("PostgreSQL store group commit", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  async function transactionsOf(url: string): Promise<{ rows: number; transactions: number }> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const res = await client.query("SELECT count(*)::int AS rows, count(DISTINCT xmin::text)::int AS transactions FROM cara_tasks");
      return res.rows[0] as { rows: number; transactions: number };
    } finally {
      await client.end();
    }
  }

  test("100 concurrent creates: the first commits alone, the 99 that waited for it commit together, each with its own task", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    try {
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.create(init(`t${i}`))));
      assert.equal(new Set(results.map((r) => r.task.id)).size, 100);
      assert.ok(results.every((r, i) => r.created && (r.task.payload as { text: string }).text === `t${i}`));
      assert.deepEqual(await transactionsOf(url), { rows: 100, transactions: 2 });
      assert.equal(store.size, 100);
    } finally {
      await store.close();
    }
  });

  test("an idempotency key repeated within one batch: the first creates the task, the others get it, as in sequence", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    try {
      const [, ...keyed] = await Promise.all([store.create(init("first")), ...Array.from({ length: 5 }, (_, i) => store.create(init(`k${i}`, "same-key")))]);
      assert.deepEqual(
        keyed.map((r) => r.created),
        [true, false, false, false, false],
      );
      assert.equal(new Set(keyed.map((r) => r.task.id)).size, 1);
      assert.equal((keyed[0]!.task.payload as { text: string }).text, "k0");
      assert.deepEqual(await transactionsOf(url), { rows: 2, transactions: 2 });
    } finally {
      await store.close();
    }
  });

  test("a batch that would pass the capacity is run one by one: the creates that fit succeed, the rest are refused as queue full", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url, capacity: 3 });
    try {
      const settled = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.create(init(`c${i}`))));
      assert.deepEqual(
        settled.map((s) => s.status),
        ["fulfilled", "fulfilled", "fulfilled", "rejected", "rejected", "rejected"],
      );
      for (const s of settled.slice(3)) assert.ok(s.status === "rejected" && s.reason instanceof TaskQueueFullError);
      assert.deepEqual([...store.all()].map((t) => (t.payload as { text: string }).text).sort(), ["c0", "c1", "c2"]);
      assert.equal((await transactionsOf(url)).rows, 3);
    } finally {
      await store.close();
    }
  });
}
