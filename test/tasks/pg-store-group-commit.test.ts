// The PostgreSQL store's group commit: creates that arrive while a create transaction runs go
// together in the next one, and each gets the answer it would get alone (idempotency keys,
// capacity). Rows written by one transaction share its xmin, which shows the batching. Against a
// throwaway cluster (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { PgTaskStore } from "../../src/tasks/postgres/pg-store.js";
import { TaskQueueFullError, TaskStoreWriteError, type TaskInit } from "../../src/tasks/task-store.js";
import { failAtCommit, postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

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

  const textOf = (t: { payload: unknown }) => (t.payload as { text: string }).text;

  test("a create the database refuses (a NUL character) fails alone: the others of its batch are run one by one and succeed", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    try {
      // The first commits alone; the next three wait and go together, and the NUL fails the batch.
      const settled = await Promise.allSettled([
        store.create(init("first")),
        store.create(init("a")),
        store.create(init("bad\u0000")),
        store.create(init("b")),
      ]);
      assert.deepEqual(
        settled.map((s) => s.status),
        ["fulfilled", "fulfilled", "rejected", "fulfilled"],
      );
      const bad = settled[2]!;
      assert.ok(bad.status === "rejected" && bad.reason instanceof TaskStoreWriteError, String(bad.status === "rejected" && bad.reason));
      assert.deepEqual([...store.all()].map(textOf).sort(), ["a", "b", "first"]);
      assert.equal((await transactionsOf(url)).rows, 3);
      // The store is not left reporting a write error: a later create commits and clears it.
      await store.create(init("later"));
      assert.equal(store.writeError, undefined);
    } finally {
      await store.close();
    }
  });

  test("a change listener that throws after COMMIT neither fails the committed creates nor runs the batch again", async () => {
    const url = await cluster.createDatabase();
    const warnings: string[] = [];
    const store = await PgTaskStore.open({ url, warn: (m) => warnings.push(m) });
    store.events.on("change", (t: { payload: unknown }) => {
      if (textOf(t) === "boom" || textOf(t) === "first") throw new Error("listener failed");
    });
    try {
      const settled = await Promise.allSettled([store.create(init("first")), store.create(init("a")), store.create(init("boom")), store.create(init("b"))]);
      assert.deepEqual(
        settled.map((s) => s.status),
        ["fulfilled", "fulfilled", "fulfilled", "fulfilled"],
      );
      // Each task once: nothing was created twice.
      assert.deepEqual(await transactionsOf(url), { rows: 4, transactions: 2 });
      assert.deepEqual([...store.all()].map(textOf).sort(), ["a", "b", "boom", "first"]);
      assert.equal(warnings.filter((w) => w.includes("listener failed")).length, 2);
    } finally {
      await store.close();
    }
  });

  test("a batch whose COMMIT fails is never run again: each create is told the outcome is unknown", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    try {
      await failAtCommit(url);
      const settled = await Promise.allSettled([
        store.create(init("first")),
        store.create(init("a")),
        store.create(init("fail-at-commit")),
        store.create(init("b", "key-b")),
      ]);
      assert.deepEqual(
        settled.map((s) => s.status),
        ["fulfilled", "rejected", "rejected", "rejected"],
      );
      for (const s of settled.slice(1)) {
        assert.ok(s.status === "rejected" && s.reason instanceof TaskStoreWriteError);
        assert.match(s.reason.message, /failed while committing \(refused at commit\); the outcome is unknown: the task may or may not have been created/);
      }
      assert.match((settled[1] as PromiseRejectedResult).reason.message, /check with `cara task list` before creating it again/);
      assert.match((settled[3] as PromiseRejectedResult).reason.message, /create it again with the same idempotency key 'key-b'/);
      // Not replayed: the trigger refused the batch's COMMIT, and no create ran again on its own.
      assert.deepEqual(await transactionsOf(url), { rows: 1, transactions: 1 });
      // A single create in a transaction (it has a key) whose COMMIT fails says the change may or may not have been kept.
      await assert.rejects(
        store.create(init("fail-at-commit", "key-c")),
        /failed while committing \(refused at commit\); the change may or may not have been kept/,
      );
    } finally {
      await store.close();
    }
  });

  test("creates without keys commit in one statement: refused while committing (an ERROR), it was rolled back, so the batch runs one by one and only the refused create fails", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    try {
      await failAtCommit(url);
      const settled = await Promise.allSettled([
        store.create(init("first")),
        store.create(init("a")),
        store.create(init("fail-at-commit")),
        store.create(init("b")),
      ]);
      assert.deepEqual(
        settled.map((s) => s.status),
        ["fulfilled", "fulfilled", "rejected", "fulfilled"],
      );
      const refused = (settled[2] as PromiseRejectedResult).reason as Error;
      assert.match(refused.message, /failed \(refused at commit\); nothing was changed$/);
      // first alone, the batch of three refused whole, then a and b each alone: three transactions kept.
      assert.deepEqual(await transactionsOf(url), { rows: 3, transactions: 3 });
      assert.deepEqual([...store.all()].map(textOf).sort(), ["a", "b", "first"]);
    } finally {
      await store.close();
    }
  });

  test("creates without keys whose statement loses its connection before the answer: the outcome is unknown and they are never run again", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // The commit of a batch holding 'slow' waits (a deferred trigger sleeps): its connection is cut then.
      await admin.query(`CREATE FUNCTION slow_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.record->'payload'->>'text' = 'slow' THEN PERFORM pg_sleep(30); END IF;
          RETURN NULL;
        END $$`);
      await admin.query(
        "CREATE CONSTRAINT TRIGGER slow_at_commit AFTER INSERT ON cara_tasks DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_at_commit()",
      );
      // Handlers are attached at once: the refusal may arrive before terminateSleeping returns.
      const first = store.create(init("slow")).then(
        () => assert.fail("the create succeeded"),
        (e: unknown) => e as Error,
      );
      const batch = Promise.allSettled([store.create(init("a")), store.create(init("b"))]);
      await terminateSleeping(admin, "the create's statement never reached its commit");
      const err = await first;
      assert.ok(err instanceof TaskStoreWriteError);
      assert.match(err.message, /failed while committing \(.+\); the change may or may not have been kept/);
      // The two that waited went in the next statement, which commits (no 'slow' in it).
      const after = await batch;
      assert.deepEqual(
        after.map((s) => s.status),
        ["fulfilled", "fulfilled"],
      );
      // 'slow' was not run again on its own: only a and b are in the table.
      assert.deepEqual([...store.all()].map(textOf).sort(), ["a", "b"]);
      assert.deepEqual(await transactionsOf(url), { rows: 2, transactions: 1 });
      // The same in a transaction (a create with a key): its COMMIT's answer is lost, and the
      // session that ended is not handed to the next write.
      const keyed = assert.rejects(
        store.create(init("slow", "key-slow")),
        /failed while committing \(terminating connection .+\); the change may or may not have been kept/,
      );
      await terminateSleeping(admin, "the keyed create never reached its commit");
      await keyed;
      const next = await store.create(init("c", "key-c"));
      assert.equal(next.created, true);
      assert.deepEqual([...store.all()].map(textOf).sort(), ["a", "b", "c"]);
    } finally {
      await admin.end();
      await store.close();
    }
  });

  /** Ends the session whose commit sleeps in the slow_at_commit trigger (pg_terminate_backend). */
  async function terminateSleeping(admin: pg.Client, never: string): Promise<void> {
    let pid: number | undefined;
    for (let i = 0; i < 200 && pid === undefined; i++) {
      const res = await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'");
      pid = res.rows[0]?.pid;
      if (pid === undefined) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(pid !== undefined, never);
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
  }

  test("a batch that cannot get a connection is refused whole, not run one by one (nothing was sent)", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    const pool = (store as unknown as { pool: pg.Pool }).pool;
    const connect = pool.connect.bind(pool);
    let attempts = 0;
    (pool as unknown as { connect: () => Promise<pg.PoolClient> }).connect = () => {
      attempts++;
      return Promise.reject(new Error("connect ECONNREFUSED"));
    };
    try {
      const settled = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => store.create(init(`u${i}`))));
      for (const s of settled)
        assert.ok(s.status === "rejected" && /cannot reach the task database .*connect ECONNREFUSED.*nothing was changed/.test(s.reason.message));
      // The first create alone, then the four that waited for it as one batch: two attempts.
      assert.equal(attempts, 2);
      assert.match(store.writeError ?? "", /cannot reach the task database/);
    } finally {
      (pool as unknown as { connect: typeof connect }).connect = connect;
      await store.close();
    }
  });
}
