// What only the PostgreSQL store has: migrations, change notices between stores on one
// database, claims shared by several stores, and a URL whose password never shows. Runs against a
// throwaway cluster (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import pg from "pg";
import { MIGRATIONS } from "../../src/tasks/postgres/migrations.js";
import { migrate, pendingMigrations, schemaVersion } from "../../src/tasks/postgres/migrate.js";
import { columns, INSERT_SQL } from "../../src/tasks/postgres/rows.js";
import { PgTaskStore, TaskDatabaseError } from "../../src/tasks/postgres/pg-store.js";
import { redactUrl } from "../../src/tasks/postgres/redact.js";
import { OfflineTaskDatabase } from "../../src/tasks/postgres/task-database.js";
import { failedWhileCommitting } from "../../src/tasks/postgres/transaction.js";
import { cancelTransition, type TaskRecord } from "../../src/tasks/model.js";
import { Worker } from "../../src/tasks/worker.js";
import type { TaskInit } from "../../src/tasks/task-store.js";
import { failAtCommit, postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { nextChange } from "./store-contract.js";

const init = (text: string): TaskInit => ({ payload: { kind: "systemEvent", text }, nextRunAtMs: null }) as TaskInit;

test("redactUrl hides the password and keeps the rest", () => {
  assert.equal(redactUrl("postgres://cara:s3cret@db.example:5432/cara?sslmode=require"), "postgres://cara:***@db.example:5432/cara?sslmode=require");
  assert.equal(redactUrl("postgres://db.example/cara?password=s3cret"), "postgres://db.example/cara?password=***");
  assert.equal(redactUrl("not a url s3cret"), "(a database URL that does not parse)");
});

test("a database schema newer than this cara is refused, naming both versions", () => {
  const latest = MIGRATIONS.at(-1)!.version;
  assert.deepEqual(
    pendingMigrations(0).map((m) => m.version),
    MIGRATIONS.map((m) => m.version),
  );
  assert.deepEqual(pendingMigrations(latest), []);
  assert.throws(() => pendingMigrations(latest + 1), {
    message: `the task database's schema is at version ${latest + 1}, newer than this cara knows (${latest}); a newer cara migrated it. Run that version (or newer), or point tasks.postgres.url at another database`,
  });
});

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("PostgreSQL store", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("open migrates once, under the lock, when several stores start together", async () => {
    const url = await cluster.createDatabase();
    const stores = await Promise.all([1, 2, 3].map(() => PgTaskStore.open({ url })));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      assert.equal(await schemaVersion(client), MIGRATIONS.at(-1)!.version);
      const rows = (await client.query("SELECT version, name FROM cara_schema_migrations ORDER BY version")).rows;
      assert.deepEqual(
        rows,
        MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      );
    } finally {
      await client.end();
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test("a wrong password or an unreachable database fails the open without showing the password", async () => {
    await cluster.createDatabase("pwcheck");
    const bad = cluster.urlWithPassword("pwcheck", "wrong-secret-pw");
    await assert.rejects(PgTaskStore.open({ url: bad }), (err: unknown) => {
      assert.ok(err instanceof TaskDatabaseError);
      assert.ok(!err.message.includes("wrong-secret-pw"), err.message);
      assert.ok(err.message.startsWith(`cannot reach the task database ${redactUrl(bad)}: `), err.message);
      assert.ok(
        err.message.endsWith("Check that PostgreSQL runs there and that tasks.postgres.url (or CARAPACE_DATABASE_URL) is right, then start again"),
        err.message,
      );
      return true;
    });
  });

  test("a change on one store reaches another store on the same database by notice", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, resyncMs: 3_600_000 });
    const b = await PgTaskStore.open({ url, resyncMs: 3_600_000 });
    try {
      const { task } = await a.create(init("hello"));
      const seen = b.get(task.id) ?? (await nextChange(b, task.id));
      assert.deepEqual(seen, task);
      const removed = new Promise<string>((resolve) => b.events.once("removed", resolve));
      const claimedOnB = nextChange(b, task.id);
      const [claimed] = await a.claimDue(1, Date.now(), new Set());
      assert.deepEqual(await claimedOnB, claimed);
      // Finished long ago: the retention sweep of a third store's open removes it, by notice on b.
      await a.update(task.id, (cur) => ({ ...cur, state: "cancelled", finishedAtMs: 0, updatedAtMs: 0 }));
      const c = await PgTaskStore.open({ url, retentionMs: 1 });
      assert.equal(await removed, task.id);
      assert.equal(b.size, 0);
      await c.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  /**
   * Waits until `store` shows `rec` exactly (now, or at a later change: a notice may be applied
   * before or after the writer's call returns); fails after 10 s with what it shows.
   */
  async function reaches(store: PgTaskStore, rec: TaskRecord): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (isDeepStrictEqual(store.get(rec.id), rec)) return;
      const left = deadline - Date.now();
      const timedOut = Symbol("timed out");
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([nextChange(store, rec.id), new Promise<symbol>((r) => (timer = setTimeout(() => r(timedOut), Math.max(left, 0))))]);
      clearTimeout(timer);
      if (next === timedOut) assert.deepEqual(store.get(rec.id), rec, `task ${rec.id} never reached the other store`);
    }
  }

  test("another store's creates, updates and claims are applied from their notices, not read back; rows too large for a notice and removals are read back", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, resyncMs: 3_600_000 });
    const b = await PgTaskStore.open({ url, resyncMs: 3_600_000 });
    try {
      // Separate transactions (one create at a time) and one group of 200 (several notices).
      const one = [];
      for (let i = 0; i < 20; i++) one.push((await a.create(init(`one ${i}`))).task);
      const many = (await Promise.all(Array.from({ length: 200 }, (_, i) => a.create(init(`many ${i} ${"é".repeat(100)}`))))).map((r) => r.task);
      for (const t of [...one, ...many]) await reaches(b, t);
      assert.equal(b.rowsReadBack, 0);
      const large = (await a.create(init("L".repeat(10_000)))).task;
      await reaches(b, large);
      assert.equal(b.rowsReadBack, 1);
      const cancelled = await a.update(one[0]!.id, (cur) => cancelTransition(cur, "test", Date.now()));
      await reaches(b, cancelled);
      assert.equal(b.rowsReadBack, 1);
      // A claim of many (several notices), each applied with the claim's lease and version.
      const claimed = await a.claimDue(300, Date.now(), new Set());
      assert.equal(claimed.length, 220);
      for (const t of claimed) await reaches(b, t);
      assert.equal(b.rowsReadBack, 2, "only the large row's claim was read back");
      // An update that makes a row too large for a notice is read back.
      const grown = await a.update(one[1]!.id, (cur) => ({ ...cur, lastError: "E".repeat(10_000) }));
      await reaches(b, grown);
      assert.equal(b.rowsReadBack, 3);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a change listener that throws while another store's notice is applied is reported, and the notice's other rows are still applied", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, resyncMs: 3_600_000 });
    const warnings: string[] = [];
    const b = await PgTaskStore.open({ url, resyncMs: 3_600_000, warn: (m) => warnings.push(m) });
    b.events.on("change", (t: { payload: unknown }) => {
      if ((t.payload as { text?: string }).text === "boom") throw new Error("listener boom");
    });
    try {
      // One transaction, so one notice: boom first, then two more.
      const made = await a.createMany([init("boom"), init("after 1"), init("after 2")]);
      // Polled: a listener added now would come after the one that throws, and not be called.
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && made.some(({ task }) => b.get(task.id) === undefined)) await new Promise((r) => setTimeout(r, 10));
      for (const { task } of made) assert.deepEqual(b.get(task.id), task);
      assert.deepEqual(warnings, ["a task change listener failed (the change is applied): listener boom"]);
      assert.equal(b.rowsReadBack, 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("changes made without a notice are caught by the periodic resync; at rest it compares one count and sum, not every row", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url, resyncMs: 50 });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const kept = (await store.create(init("kept"))).task;
      const changed = (await store.create(init("changed"))).task;
      const deleted = (await store.create(init("deleted"))).task;
      const textOf = (id: string) => (store.get(id)?.payload as { text?: string } | undefined)?.text;
      // Quiet: over 10 periods, only every sixth resync compares row by row.
      const before = store.rowByRowResyncs;
      await new Promise((r) => setTimeout(r, 600));
      assert.ok(store.rowByRowResyncs - before <= 2, `${store.rowByRowResyncs - before} row-by-row resyncs in 600 ms`);
      // Behind the store's back (as if their notices were lost): a write, a create, a removal.
      await client.query(
        "UPDATE cara_tasks SET record = jsonb_set(record, '{payload,text}', '\"edited\"'), version = nextval('cara_task_version') WHERE id = $1",
        [changed.id],
      );
      const added = { ...kept, id: "added-behind", payload: { kind: "systemEvent" as const, text: "added" } };
      await client.query(INSERT_SQL, columns([added]));
      await client.query("DELETE FROM cara_tasks WHERE id = $1", [deleted.id]);
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && (store.get(deleted.id) || !store.get(added.id) || textOf(changed.id) !== "edited")) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(textOf(changed.id), "edited");
      assert.deepEqual(store.get(added.id), added);
      assert.equal(store.get(deleted.id), undefined);
      assert.deepEqual(store.get(kept.id), kept);
    } finally {
      await client.end();
      await store.close();
    }
  });

  test("table cara_task_room holds the number of rows through creates, eviction, the retention sweep, a replacement and a truncate; a database migrated from version 1 gets its count", async () => {
    const url = await cluster.createDatabase();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const exact = async (what: string) => {
      const { rows } = await client.query("SELECT (SELECT sum(n) FROM cara_task_room)::bigint AS n, (SELECT count(*) FROM cara_tasks) AS actual");
      assert.equal(rows[0].n, rows[0].actual, what);
      return Number(rows[0].n);
    };
    try {
      // Version 1 only, with rows written as a version-1 cara writes them; then this cara migrates.
      await migrate(client, MIGRATIONS.slice(0, 1));
      const old = await PgTaskStore.open({ url: await cluster.createDatabase(), capacity: 10 });
      const { task } = await old.create(init("from v1"));
      await old.close();
      await client.query(INSERT_SQL, columns([task, { ...task, id: "second" }, { ...task, id: "third" }]));
      const store = await PgTaskStore.open({ url, capacity: 5, retentionMs: 60_000 });
      try {
        assert.equal(await exact("after the migration"), 3);
        await Promise.all([store.create(init("4")), store.create(init("5"))]);
        assert.equal(await exact("after creates"), 5);
        // Full: finished tasks make way (eviction), else the create is refused and nothing changes.
        await store.update("second", (cur) => cancelTransition(cur, "test", Date.now()));
        await store.create(init("6"));
        assert.equal(await exact("after an eviction"), 5);
        await assert.rejects(store.create(init("7")), /full/);
        assert.equal(await exact("after a refused create"), 5);
        await store.update("third", (cur) => ({ ...cancelTransition(cur, "test", 0), updatedAtMs: 0, finishedAtMs: 0 }));
        assert.equal(await store.sweepRetention(), 1);
        assert.equal(await exact("after the retention sweep"), 4);
        await store.replaceAll([{ ...task, id: "only" }]);
        assert.equal(await exact("after a replacement"), 1);
        await client.query("TRUNCATE cara_tasks");
        assert.equal(await exact("after a truncate"), 0);
      } finally {
        await store.close();
      }
    } finally {
      await client.end();
    }
  });

  test("two stores claiming one queue concurrently claim every task exactly once", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url });
    const b = await PgTaskStore.open({ url });
    try {
      const n = 300;
      await a.createMany(Array.from({ length: n }, (_, i) => init(`t${i}`)));
      const claimAll = async (store: PgTaskStore) => {
        const ids: string[] = [];
        for (;;) {
          const got = await store.claimDue(7, Date.now(), new Set());
          if (got.length === 0) return ids;
          ids.push(...got.map((t) => t.id));
        }
      };
      const [fromA, fromB] = await Promise.all([claimAll(a), claimAll(b)]);
      const all = [...fromA, ...fromB];
      assert.equal(all.length, n);
      assert.equal(new Set(all).size, n);
      assert.ok(fromA.length > 0 && fromB.length > 0, `both claimed (a ${fromA.length}, b ${fromB.length})`);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const rows = (await client.query("SELECT state, (record->>'attempts')::int AS attempts, count(*)::int AS n FROM cara_tasks GROUP BY 1, 2")).rows;
      await client.end();
      assert.deepEqual(rows, [{ state: "running", attempts: 1, n }]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a running task whose lease ended (its server died) is rescued and claimed by another store, once", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, leaseGraceMs: 2_000 });
    const b = await PgTaskStore.open({ url, leaseGraceMs: 2_000 });
    try {
      const { task } = await a.create({ ...init("lease"), policy: { maxAttempts: 5, maxTotalRuntimeMs: 604_800_000, maxTurns: 25, maxRunTimeoutSeconds: 10 } });
      const [first] = await a.claimDue(1, 100_000, new Set());
      assert.equal(first!.updatedAtMs, 100_000);
      assert.equal(first!.attempts, 1);
      // b learns of the claim by notice; its reads show the lease's end (no round trip).
      if (b.get(task.id)?.state !== "running") await nextChange(b, task.id);
      assert.equal(b.hasClaimable(112_000, new Set()), false);
      assert.equal(b.hasClaimable(112_001, new Set()), true);
      assert.equal(b.hasClaimable(112_001, new Set([task.id])), false);
      // Deadline 10 s, grace 2 s: the lease ends at 112_000. Not before:
      assert.deepEqual(await b.claimDue(5, 112_000, new Set()), []);
      // The claimer's own worker skips it (it abandons its attempts itself):
      assert.deepEqual(await a.claimDue(5, 112_001, new Set([task.id])), []);
      const [again] = await b.claimDue(5, 112_001, new Set());
      assert.deepEqual(
        [again!.id, again!.state, again!.attempts, again!.lastError],
        [task.id, "running", 2, "lease expired: the server running this attempt stopped or lost the database before it finished"],
      );
      assert.equal(b.leasesRescued, 1);
      assert.deepEqual(await a.claimDue(5, 112_001, new Set()), []);
      // The old attempt's late result is refused by the worker's check (running, same attempt).
      const late = await a.update(task.id, (cur) => (cur.state !== "running" || cur.attempts !== 1 ? cur : { ...cur, state: "done" }));
      assert.equal(late.state, "running");
      assert.equal(late.attempts, 2);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a cancel written on one store aborts the attempt running on another store's worker", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url });
    const b = await PgTaskStore.open({ url });
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let aborted!: (reason: unknown) => void;
    const abortSeen = new Promise<unknown>((resolve) => (aborted = resolve));
    const worker = new Worker(a, {
      systemEvent: ({ signal }) =>
        new Promise((resolve) => {
          started();
          signal.addEventListener("abort", () => {
            aborted(signal.reason);
            resolve({ kind: "done", result: "too late" });
          });
        }),
    });
    worker.start();
    try {
      const { task } = await b.create(init("long"));
      await running;
      const cancelled = await b.update(task.id, (cur) => cancelTransition(cur, "stop it", Date.now()));
      assert.equal(((await abortSeen) as Error).message, "cancelled by operator");
      await worker.stop(1_000);
      assert.deepEqual(await a.fetch(task.id), a.get(task.id));
      assert.equal(a.get(task.id)?.state, "cancelled");
      assert.equal(a.get(task.id)?.result, undefined);
      assert.equal(cancelled.lastError, "stop it");
    } finally {
      await worker.stop(0);
      await a.close();
      await b.close();
    }
  });

  test("an attempt's reply or error holding a NUL character or half a surrogate pair is stored with U+FFFD in its place (PostgreSQL refused the write, and the task ran again)", {
    timeout: 20_000,
  }, async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    const worker = new Worker(store, {
      systemEvent: async ({ task }) =>
        (task.payload as { text: string }).text === "reply"
          ? { kind: "done", result: "a\u0000b\ud83d", runId: "run\u0000" }
          : { kind: "failed", error: "bad\u0000byte" },
    });
    worker.start();
    try {
      const reply = (await store.create(init("reply"))).task;
      const failing = (await store.create(init("error"))).task;
      const settled = async (id: string) => {
        for (;;) {
          const t = store.get(id)!;
          if (t.state === "done" || t.state === "failed") return t;
          await nextChange(store, id);
        }
      };
      const done = await settled(reply.id);
      assert.deepEqual([done.state, done.result, done.runIds], ["done", "a\uFFFDb\uFFFD", ["run\uFFFD"]]);
      const failed = await settled(failing.id);
      assert.deepEqual([failed.state, failed.lastError], ["failed", "bad\uFFFDbyte"]);
      // As stored: read back from the table by another store.
      const other = await PgTaskStore.open({ url });
      assert.equal(other.get(reply.id)?.result, "a\uFFFDb\uFFFD");
      await other.close();
    } finally {
      await worker.stop(0);
      await store.close();
    }
  });

  test("a replacement of every task whose COMMIT fails says the database may or may not have kept it, never that nothing changed", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url });
    const offline = await OfflineTaskDatabase.connect(url, "cara-test");
    try {
      const { task } = await store.create(init("kept"));
      await failAtCommit(url);
      const records = [{ ...task, id: "restored", payload: { kind: "systemEvent" as const, text: "fail-at-commit" } }];
      for (const [what, replace] of [
        ["the store (restores)", () => store.replaceAll(records)],
        ["the offline database (restores --offline, cara tasks migrate)", () => offline.replaceAll(records)],
      ] as const) {
        const err = await replace().then(
          () => assert.fail(`${what}: the replacement succeeded`),
          (e: unknown) => e as Error,
        );
        assert.ok(failedWhileCommitting(err), `${what}: ${err.message}`);
        assert.match(err.message, /failed while committing \(refused at commit\); the change may or may not have been kept$/, what);
        assert.doesNotMatch(err.message, /nothing was changed/, what);
      }
      // A failure before COMMIT (here a duplicate id) still says nothing was changed.
      const err = await store.replaceAll([task, task]).then(
        () => assert.fail("the replacement succeeded"),
        (e: unknown) => e as Error,
      );
      assert.equal(failedWhileCommitting(err), false);
      assert.match(err.message, /; nothing was changed$/);
    } finally {
      await offline.close();
      await store.close();
    }
  });
}
