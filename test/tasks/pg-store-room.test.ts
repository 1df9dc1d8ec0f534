// The PostgreSQL store's capacity across servers (schema version 4): the count of tasks is spread
// over the shards of cara_task_room, each with a quota, so that creates of different servers do
// not wait for each other's commits, and the total still never passes tasks.capacity. Against a
// throwaway cluster (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { PgTaskStore } from "../../src/tasks/postgres/pg-store.js";
import { TaskQueueFullError, type TaskInit } from "../../src/tasks/task-store.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

const init = (text: string): TaskInit => ({ payload: { kind: "systemEvent", text }, nextRunAtMs: null }) as TaskInit;

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("PostgreSQL store capacity across servers", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Rows in cara_tasks, the sum of the shards' counts, and what their quotas were shared for. */
  async function room(client: pg.Client): Promise<{ rows: number; counted: number; quotas: number; capacities: string }> {
    const res = await client.query(`SELECT (SELECT count(*) FROM cara_tasks)::int AS rows, sum(n)::int AS counted, sum(quota)::int AS quotas,
      string_agg(DISTINCT capacity::text, ',') AS capacities FROM cara_task_room`);
    return res.rows[0];
  }

  test("a create whose commit is slow does not hold up another server's creates (they count on other shards)", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url });
    const b = await PgTaskStore.open({ url });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await a.create(init("shares out the room"));
      // The commit of 'slow' waits 3 s in a deferred trigger, holding its shard's lock meanwhile.
      await admin.query(`CREATE FUNCTION slow_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.record->'payload'->>'text' = 'slow' THEN PERFORM pg_sleep(3); END IF;
          RETURN NULL;
        END $$`);
      await admin.query(
        "CREATE CONSTRAINT TRIGGER slow_at_commit AFTER INSERT ON cara_tasks DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_at_commit()",
      );
      const order: string[] = [];
      const slow = a.create(init("slow")).then(() => order.push("slow"));
      let sleeping = false;
      for (let i = 0; i < 200 && !sleeping; i++) {
        const res = await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'");
        sleeping = res.rows.length > 0;
        if (!sleeping) await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(sleeping, "the slow create never reached its commit");
      // One count row for every create (schema version 3) made this wait for the 3 s commit.
      await b.create(init("b"));
      order.push("b");
      await slow;
      assert.deepEqual(order, ["b", "slow"]);
      assert.deepEqual(await room(admin), { rows: 3, counted: 3, quotas: 10_000, capacities: "10000" });
    } finally {
      await admin.end();
      await a.close();
      await b.close();
    }
  });

  test("two servers creating at once never pass the capacity together: exactly the room is created, the rest is refused as queue full", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, capacity: 40 });
    const b = await PgTaskStore.open({ url, capacity: 40 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const settled = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => [a.create(init(`a${i}`)), b.create(init(`b${i}`))]).flat());
      const refused = settled.filter((s) => s.status === "rejected");
      assert.equal(settled.length - refused.length, 40);
      for (const s of refused) assert.ok(s.status === "rejected" && s.reason instanceof TaskQueueFullError, String(s.status === "rejected" && s.reason));
      assert.deepEqual(await room(admin), { rows: 40, counted: 40, quotas: 40, capacities: "40" });
      await assert.rejects(a.create(init("one more")), TaskQueueFullError);
      assert.equal((await room(admin)).rows, 40);
    } finally {
      await admin.end();
      await a.close();
      await b.close();
    }
  });

  test("servers configured with different capacities: each create keeps to its own server's tasks.capacity", async () => {
    const url = await cluster.createDatabase();
    const big = await PgTaskStore.open({ url, capacity: 10 });
    const small = await PgTaskStore.open({ url, capacity: 5 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      for (let i = 0; i < 8; i++) await big.create(init(`big${i}`));
      // The quotas were shared out for 10: the small server shares them out again for its 5, and is full.
      await assert.rejects(small.create(init("small")), TaskQueueFullError);
      assert.deepEqual(await room(admin), { rows: 8, counted: 8, quotas: 10, capacities: "10" });
      await big.create(init("big8"));
      await big.create(init("big9"));
      await assert.rejects(big.create(init("big10")), TaskQueueFullError);
      assert.deepEqual(await room(admin), { rows: 10, counted: 10, quotas: 10, capacities: "10" });
    } finally {
      await admin.end();
      await big.close();
      await small.close();
    }
  });

  test("after every row is replaced without a room check (a restore, tasks migrate), creates still stop at the capacity", async () => {
    const url = await cluster.createDatabase();
    const a = await PgTaskStore.open({ url, capacity: 10 });
    const b = await PgTaskStore.open({ url, capacity: 10 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const { task } = await a.create(init("shares out the room"));
      // All ten counted on one shard: the other shards' quotas would still let creates in.
      await a.replaceAll(Array.from({ length: 10 }, (_, i) => ({ ...task, id: `restored-${i}` })));
      await assert.rejects(b.create(init("b")), TaskQueueFullError);
      await assert.rejects(a.create(init("a")), TaskQueueFullError);
      assert.deepEqual(await room(admin), { rows: 10, counted: 10, quotas: 10, capacities: "0" });
      // Room again (one removed): exactly one create gets in.
      await admin.query("DELETE FROM cara_tasks WHERE id = 'restored-0'");
      const settled = await Promise.allSettled([a.create(init("a1")), b.create(init("b1")), a.create(init("a2")), b.create(init("b2"))]);
      assert.equal(settled.filter((x) => x.status === "fulfilled").length, 1);
      assert.deepEqual(await room(admin), { rows: 10, counted: 10, quotas: 10, capacities: "10" });
    } finally {
      await admin.end();
      await a.close();
      await b.close();
    }
  });

  test("a shard row that went missing fails the create closed, naming the table and how to put it back", async () => {
    const url = await cluster.createDatabase();
    const store = await PgTaskStore.open({ url, capacity: 10 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query("DELETE FROM cara_task_room WHERE shard = 7");
      await assert.rejects(
        store.create(init("x")),
        /table cara_task_room in the task database .* lost rows; put them back with: DELETE FROM cara_task_room; INSERT INTO cara_task_room/,
      );
      assert.equal((await room(admin)).rows, 0);
    } finally {
      await admin.end();
      await store.close();
    }
  });
}
