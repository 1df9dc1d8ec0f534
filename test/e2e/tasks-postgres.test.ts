// Two real servers (in process, separate state dirs) with tasks.store "postgres" on one database:
// a task created on one runs once and is seen done by a WatchTask on the other; both list the
// same tasks; the database password shows in no log line; a SIGKILL of the server running an
// attempt gets the task run again by the other once the attempt's lease ended. Against a throwaway cluster
// (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is not installed.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";
import { connectJson, serveCara, startCara, tempDir, type InProcessCara } from "../helpers/cara.js";
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

  test("a server killed (SIGKILL) mid-attempt: another server rescues the task when its lease ends and runs it, once more", async () => {
    const url = await cluster.createDatabase();
    const agent = await agentThatHangsOnce();
    const config = { tasks: { store: "postgres", leaseGraceMs: 500 }, agent: { baseUrl: agent.url, model: "m" } };
    const stateDirs = await Promise.all(
      [1, 2].map(async () => {
        const dir = join(await tempDir(), "state");
        await mkdir(dir, { mode: 0o700 });
        await writeFile(join(dir, "config.json"), JSON.stringify(config));
        return dir;
      }),
    );
    const env = { CARAPACE_DATABASE_URL: url };
    const a = await startCara({ stateDir: stateDirs[0]!, env });
    let b: InProcessCara | undefined;
    try {
      const created = await connectJson(
        a,
        "carapace.tasks.v1.TasksService/CreateTask",
        { payload: { agentTurn: { message: "hello", timeoutSeconds: 2 } } },
        a.token,
      );
      assert.equal(created.status, 200, JSON.stringify(created.json));
      const id = created.json.task.id as string;
      await agent.first;
      a.proc.kill("SIGKILL");
      await a.exited;
      b = await serveCara({ stateDir: stateDirs[1]!, env });
      const watched = await fetch(`${b.baseUrl}/carapace.tasks.v1.TasksService/WatchTask`, {
        method: "POST",
        headers: { "content-type": "application/connect+json", authorization: `Bearer ${b.token}` },
        body: envelope({ id }),
      });
      const states = parseEnvelopes(new Uint8Array(await watched.arrayBuffer()))
        .filter((m) => m.task)
        .map((m) => `${m.task.state}/${m.task.attempts}`);
      // Where the watch starts depends on how long b took to start (the lease ends 2.5 s after the claim).
      assert.ok(["TASK_STATE_RUNNING/1", "TASK_STATE_RUNNING/2", "TASK_STATE_DONE/2"].includes(states[0]!), states.join(" "));
      assert.equal(states.at(-1), "TASK_STATE_DONE/2", states.join(" "));
      const got = await connectJson(b, "carapace.tasks.v1.TasksService/GetTask", { id }, b.token);
      assert.deepEqual([got.json.task.result, got.json.task.runIds], ["ok", ["run-2"]]);
      assert.equal(agent.requests.length, 2);
      assert.ok(
        b.lines.some((l) => l.includes("rescued 1 running task(s) whose lease ended")),
        b.lines.join("\n"),
      );
    } finally {
      await b?.stop();
      await agent.close();
    }
  });

  test("two servers on one database share the queue: created on one, done once, watched and listed on both", async () => {
    const url = await cluster.createDatabase();
    const config = { tasks: { store: "postgres" } };
    const env = { CARAPACE_DATABASE_URL: url };
    const servers: InProcessCara[] = [await serveCara({ config, env }), await serveCara({ config, env })];
    const [a, b] = servers as [InProcessCara, InProcessCara];
    try {
      const created = await connectJson(
        a,
        "carapace.tasks.v1.TasksService/CreateTask",
        { payload: { systemEvent: { text: "shared" } }, idempotencyKey: "shared-1" },
        a.token,
      );
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
        assert.deepEqual(
          list.json.tasks.map((t: { id: string }) => t.id),
          [id],
        );
      }
      const again = await connectJson(
        b,
        "carapace.tasks.v1.TasksService/CreateTask",
        { payload: { systemEvent: { text: "shared" } }, idempotencyKey: "shared-1" },
        b.token,
      );
      assert.equal(again.json.task.id, id);
      assert.equal(again.json.created, undefined);
    } finally {
      for (const s of servers) await s.stop();
    }
    for (const s of servers) {
      assert.ok(!s.lines.some((l) => l.includes(cluster.password)), "the database password is in a log line");
      assert.ok(
        s.lines.some((l) => l.includes("tasks are stored in PostgreSQL") && l.includes('"database":"postgres://[REDACTED]@127.0.0.1:')),
        `the store's start is logged with the URL redacted: ${s.lines.filter((l) => l.includes("PostgreSQL")).join("\n")}`,
      );
    }
  });
}

/** An OpenAI-compatible endpoint whose first request never answers and whose others succeed. */
async function agentThatHangsOnce() {
  const requests: IncomingMessage[] = [];
  const hung: ServerResponse[] = [];
  let firstSeen!: () => void;
  const first = new Promise<void>((resolve) => (firstSeen = resolve));
  const server = createServer((req, res) => {
    requests.push(req);
    req.resume();
    if (requests.length === 1) {
      hung.push(res);
      firstSeen();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: `run-${requests.length}`, choices: [{ message: { content: "ok" } }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    first,
    close: () => {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
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
