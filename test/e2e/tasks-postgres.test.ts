// Two real servers (in process, separate state dirs) with tasks.store "postgres" on one database:
// a task created on one runs once and is seen done by a WatchTask on the other; both list the
// same tasks; the database password shows in no log line. Against a throwaway cluster
// (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is not installed.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connectJson, serveCara, type InProcessCara } from "../helpers/cara.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("servers sharing a PostgreSQL task store", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("two servers on one database share the queue: created on one, done once, watched and listed on both", async () => {
    const url = await cluster.createDatabase();
    const config = { tasks: { store: "postgres" } };
    const env = { CARAPACE_DATABASE_URL: url };
    const servers: InProcessCara[] = [await serveCara({ config, env }), await serveCara({ config, env })];
    const [a, b] = servers as [InProcessCara, InProcessCara];
    try {
      const created = await connectJson(a, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: "shared" } }, idempotencyKey: "shared-1" }, a.token);
      assert.equal(created.status, 200, JSON.stringify(created.json));
      const id = created.json.task.id as string;
      // WatchTask on the other server: its stream ends when the task is terminal.
      const watched = await fetch(`${b.baseUrl}/carapace.tasks.v1.TasksService/WatchTask`, {
        method: "POST",
        headers: { "content-type": "application/connect+json", authorization: `Bearer ${b.token}` },
        body: envelope({ id }),
      });
      const states = parseEnvelopes(new Uint8Array(await watched.arrayBuffer()))
        .filter((m) => m.task)
        .map((m) => m.task.state as string);
      assert.equal(states.at(-1), "TASK_STATE_DONE", states.join(" "));
      for (const s of servers) {
        const got = await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token);
        assert.equal(got.json.task.state, "TASK_STATE_DONE");
        assert.equal(got.json.task.attempts, 1);
        const list = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", {}, s.token);
        assert.deepEqual(list.json.tasks.map((t: { id: string }) => t.id), [id]);
      }
      const again = await connectJson(b, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: "shared" } }, idempotencyKey: "shared-1" }, b.token);
      assert.equal(again.json.task.id, id);
      assert.equal(again.json.created, undefined);
    } finally {
      for (const s of servers) await s.stop();
    }
    for (const s of servers) {
      assert.ok(!s.lines.some((l) => l.includes(cluster.password)), "the database password is in a log line");
      assert.ok(s.lines.some((l) => l.includes("tasks are stored in PostgreSQL") && l.includes('"database":"postgres://[REDACTED]@127.0.0.1:')), `the store's start is logged with the URL redacted: ${s.lines.filter((l) => l.includes("PostgreSQL")).join("\n")}`);
    }
  });
}

function envelope(msg: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(msg));
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

function parseEnvelopes(buf: Uint8Array): any[] {
  const out: any[] = [];
  const b = Buffer.from(buf);
  let i = 0;
  while (i + 5 <= b.length) {
    const flags = b[i]!;
    const len = b.readUInt32BE(i + 1);
    const body = b.subarray(i + 5, i + 5 + len).toString("utf8");
    i += 5 + len;
    if (flags & 2) continue; // end of stream
    out.push(JSON.parse(body));
  }
  return out;
}
