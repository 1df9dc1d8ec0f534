// Two real `cara start` processes (separate state dirs) on one PostgreSQL database share 1,000
// agentTurn tasks created with the real CLI (`cara task create --from-file`); one server is killed
// with SIGKILL while its attempts are in flight. Every task ends done, none is lost, and every
// attempt ran once: each server calls the test's LLM endpoint under its own base URL, so every
// execution is traced with the server that ran it, and each task's result names the one
// execution it kept. Against a throwaway cluster (test/helpers/postgres.ts); skipped, saying why,
// when PostgreSQL is not installed.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { startRecordingAgent, type AgentRequest } from "../helpers/recording-agent.js";
import { until } from "../helpers/wait.js";

const TASKS = 1000;
/** Server a is killed when its this-many-th attempt reaches the endpoint (that attempt is then in flight). */
const KILL_AT = 150;

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("two servers, 1,000 tasks, one SIGKILLed", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("two servers share 1,000 tasks; one is killed (SIGKILL) mid-attempt: every task is done, none lost, each attempt ran once", async () => {
    const url = await cluster.createDatabase();
    // Each answer waits 30 ms, so every server has attempts in flight at any time.
    const agent = await startRecordingAgent({ delayMs: 30 });
    const env = { CARAPACE_DATABASE_URL: url };
    const stateDirs: Record<string, string> = {};
    for (const name of ["a", "b"]) {
      const dir = join(await tempDir(), "state");
      await mkdir(dir, { mode: 0o700 });
      // A short lease grace: a dead server's attempts are rescued 4.5 s after their claim (4 s attempt
      // timeout + 0.5 s); the 4 s leave a live server's 30 ms attempts room on a busy machine.
      const config = { tasks: { store: "postgres", leaseGraceMs: 500, concurrency: 8 }, agent: { baseUrl: agent.urlFor(name), model: "m" } };
      await writeFile(join(dir, "config.json"), JSON.stringify(config));
      stateDirs[name] = dir;
    }
    const servers: CaraServer[] = [];
    try {
      const a = await startCara({ stateDir: stateDirs.a!, env });
      const b = await startCara({ stateDir: stateDirs.b!, env });
      servers.push(a, b);
      let killedAtMs: number | undefined;
      let fromA = 0;
      agent.onRequest = (req) => {
        if (req.server === "a" && ++fromA === KILL_AT) {
          a.proc.kill("SIGKILL");
          killedAtMs = req.atMs;
        }
      };

      const file = join(await tempDir(), "tasks.jsonl");
      const lines = Array.from({ length: TASKS }, (_, i) => JSON.stringify({ payload: { kind: "agentTurn", message: `task ${i}`, timeoutSeconds: 4 } }));
      await writeFile(file, `${lines.join("\n")}\n`);
      const created = await runCara(["task", "create", "--from-file", file, "--json", "--port", String(a.port), "--state-dir", a.stateDir], {
        timeoutMs: 60_000,
      });
      assert.equal(created.code, 0, created.stderr);
      const ids = (JSON.parse(created.stdout) as { created: number; ids: string[] }).ids;
      assert.equal(ids.length, TASKS);
      assert.equal(new Set(ids).size, TASKS);

      assert.equal(await a.exited, null, "server a was killed by the signal");
      await until(
        "every task done (on server b)",
        async () => {
          const res = await connectJson(b, "carapace.tasks.v1.TasksService/ListTasks", { states: ["TASK_STATE_DONE"], limit: 0 }, b.token);
          return Number(res.json.total) === TASKS;
        },
        60_000,
      );
      assert.ok(killedAtMs !== undefined, "server a was killed while an attempt was in flight");

      // Server a again (same state dir): both list the same 1,000 tasks, all done.
      const restartedAtMs = performance.timeOrigin + performance.now();
      const a2 = await startCara({ stateDir: stateDirs.a!, env });
      servers.push(a2);
      const lists = await Promise.all(
        [a2, b].map(async (s) => {
          const res = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000 }, s.token);
          assert.equal(res.status, 200, JSON.stringify(res.json));
          return (res.json.tasks as Task[]).sort((x, y) => (x.id < y.id ? -1 : 1));
        }),
      );
      assert.deepEqual(
        lists[0]!.map((t) => `${t.id} ${t.state} ${t.attempts}`),
        lists[1]!.map((t) => `${t.id} ${t.state} ${t.attempts}`),
      );
      const tasks = lists[1]!;
      assert.deepEqual(
        tasks.map((t) => t.id),
        [...ids].sort(),
        "every created task is there, and no other",
      );

      const byMessage = new Map<string, AgentRequest[]>();
      for (const r of agent.requests) byMessage.set(r.message, [...(byMessage.get(r.message) ?? []), r]);
      let rescued = 0;
      for (const t of tasks) {
        const message = t.payload.agentTurn.message;
        const runs = byMessage.get(message) ?? [];
        const last = runs.at(-1);
        const where = `${t.id} (${message}): attempts ${t.attempts}, executions ${runs.map((r) => `${r.server}:${r.id}`).join(" ")}`;
        assert.equal(t.state, "TASK_STATE_DONE", where);
        // The result is the answer to the task's last execution, and only that one.
        assert.ok(last?.answered, where);
        assert.deepEqual([t.result, t.runIds], [`ok ${message}`, [last.id]], where);
        // Every earlier execution was server a's, cut off by the kill: no attempt ran twice.
        for (const r of runs.slice(0, -1)) assert.ok(r.server === "a" && r.atMs < restartedAtMs, where);
        // One attempt per execution; a rescued task may have been claimed by a but not yet sent when it died.
        assert.ok(t.attempts === runs.length || (t.attempts === runs.length + 1 && runs.length === 1 && last.server === "b"), where);
        if (t.attempts > 1) rescued++;
        assert.ok(t.attempts <= 2, where);
      }
      // The attempts a was running when it died came back once each: as many as b rescued.
      const rescuedByB = b.lines
        .map((l) => /rescued (\d+) running task\(s\) whose lease ended/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined)
        .reduce((sum, n) => sum + Number(n), 0);
      assert.ok(rescued >= 1, "at least the attempt in flight when a died was run again");
      assert.equal(rescued, rescuedByB, b.lines.filter((l) => l.includes("rescued")).join("\n"));
      // Both servers did work before the kill; a did none after it.
      assert.ok(
        agent.requests.some((r) => r.server === "b" && r.atMs < killedAtMs!),
        "server b ran attempts while a was alive",
      );
      // What a sent before it died may be read after the kill; the restarted a had nothing to run.
      assert.ok(agent.requests.filter((r) => r.server === "a").every((r) => r.atMs < restartedAtMs));
      for (const s of servers) assert.ok(!s.lines.some((l) => l.includes(cluster.password)), "the database password is in a log line");
    } finally {
      for (const s of servers) await s.stop();
      await agent.close();
    }
  });
}

interface Task {
  id: string;
  state: string;
  attempts: number;
  result?: string;
  runIds?: string[];
  payload: { agentTurn: { message: string } };
}
