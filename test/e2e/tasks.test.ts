import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TasksService, TaskState } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { connectJson, runCara, serveCara, startCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli, startCli } from "../helpers/cli.js";

/** `cara args` against `s`, in this process. */
const cli = (s: CaraEndpoint, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir]);

async function llm(status: number, body: unknown, opts: { hang?: boolean } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (opts.hang) return;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function stateWithConfig(config: unknown): Promise<string> {
  const stateDir = join(await tempDir(), "state");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify(config));
  return stateDir;
}

// The CLI and server run in this process (serveCara, runCli) except where a process is the
// point: kill -9, a start that refuses corrupt state, the real binary against a server that is down.
// TasksService's own errors are tested without a server in test/tasks/service.test.ts.

test("cara task: create, get, list, update, cancel, retry, watch (human and --json); status shows the tasks section and check", async () => {
  const s = await serveCara();
  const created = await cli(s, [
    "task",
    "create",
    "--payload",
    '{"kind":"systemEvent","text":"hello","junk":1}',
    "--json",
    "--label",
    "team=ops",
    "--next-run-at-ms",
    String(Date.now() + 3_600_000),
  ]);
  assert.equal(created.code, 2, "unknown payload fields are refused by the CLI");
  assert.equal(created.stderr, "");
  const refused = JSON.parse(created.stdout);
  assert.deepEqual([Object.keys(refused), refused.error.code], [["error"], "usage"]);
  assert.match(refused.error.message, /^invalid --payload: .*junk/);

  const ok = await cli(s, [
    "task",
    "create",
    "--payload",
    '{"kind":"systemEvent","text":"hello"}',
    "--json",
    "--label",
    "team=ops",
    "--next-run-at-ms",
    String(Date.now() + 3_600_000),
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  const doc = JSON.parse(ok.stdout);
  assert.equal(doc.created, true);
  const id = doc.task.id as string;
  assert.deepEqual(
    { ...doc.task, id: "x", createdAtMs: 0, updatedAtMs: 0, nextRunAtMs: 0 },
    {
      id: "x",
      state: "queued",
      attempts: 0,
      nextRunAtMs: 0,
      lastError: null,
      payload: { kind: "systemEvent", text: "hello" },
      createdAtMs: 0,
      updatedAtMs: 0,
      policy: { maxAttempts: 100, maxTotalRuntimeMs: 604800000, maxTurns: 25, maxRunTimeoutSeconds: 600 },
      policyExplicit: true,
      labels: { team: "ops" },
    },
  );

  const get = await cli(s, ["task", "get", id]);
  assert.equal(get.code, 0);
  assert.match(get.stdout, new RegExp(`^Task ${id} {2}queued {2}\\(attempts 0\\)\\n {2}Payload: {4}systemEvent "hello"\\n`));

  const list = await cli(s, ["task", "list", "--state", "queued", "--json"]);
  assert.deepEqual(
    JSON.parse(list.stdout).tasks.map((t: { id: string }) => t.id),
    [id],
  );
  assert.equal(JSON.parse(list.stdout).total, 1);
  const listHuman = await cli(s, ["task", "list"]);
  assert.match(listHuman.stdout, /^ID +STATE +ATT +UPDATED +PAYLOAD +LAST ERROR\n/);
  assert.match(listHuman.stdout, /\n1 of 1 shown\n$/);
  const status = JSON.parse((await cli(s, ["status", "--json"])).stdout);
  assert.deepEqual([status.status.tasks.total, status.status.tasks.countsByState.queued], [1, 1]);
  assert.equal(status.status.checks.find((c: { name: string }) => c.name === "tasks").status, "ok");

  const upd = await cli(s, ["task", "update", id, "--max-attempts", "7", "--reason", "tuned", "--json"]);
  assert.equal(upd.code, 0, upd.stderr);
  assert.deepEqual(
    [JSON.parse(upd.stdout).task.policy.maxAttempts, JSON.parse(upd.stdout).task.lastError, JSON.parse(upd.stdout).task.note],
    [7, null, "tuned"],
  );
  const got = await cli(s, ["task", "get", id]);
  assert.match(got.stdout, /\n {2}Note: {7}tuned\n/);
  const noop = await cli(s, ["task", "update", id]);
  assert.equal(noop.code, 2);
  assert.match(noop.stderr, /^Error: task update requires at least one of: --payload/);

  const cancel = await cli(s, ["task", "cancel", id, "--reason", "not needed", "--json"]);
  assert.deepEqual([JSON.parse(cancel.stdout).task.state, JSON.parse(cancel.stdout).task.lastError], ["cancelled", "not needed"]);
  const again = await cli(s, ["task", "cancel", id]);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, "Error: Task is already in a terminal state\n");
  const resume = await cli(s, ["task", "resume", id]);
  assert.equal(resume.stderr, "Error: Task is not blocked\n");

  const retry = await cli(s, ["task", "retry", id, "--delay-ms", "1500", "--json"]);
  assert.equal(retry.code, 0);
  assert.deepEqual([JSON.parse(retry.stdout).task.state, JSON.parse(retry.stdout).task.lastError], ["retry_wait", "retried by operator"]);
  const watch = await cli(s, ["task", "watch", id]);
  assert.equal(watch.code, 0, watch.stderr);
  assert.match(watch.stdout, /retry_wait +attempts 0/);
  assert.match(watch.stdout, /done +attempts 1/);

  const missing = await cli(s, ["task", "get", "no-such-task"]);
  assert.deepEqual([missing.code, missing.stderr], [1, "Error: Task not found\n"]);
  const badState = await cli(s, ["task", "list", "--state", "paused"]);
  assert.equal(badState.code, 2);
  assert.match(badState.stderr, /^Error: invalid task state filter 'paused'/);
  await s.stop();
});

test("cara verify --outcome autonomy: PASS via blocked (no provider)", async () => {
  const s = await serveCara();
  const res = await cli(s, ["verify", "--outcome", "autonomy"]);
  assert.equal(res.code, 0, res.stdout + res.stderr);
  const lines = res.stdout.split("\n");
  assert.equal(lines[1], "Outcome verification summary");
  assert.equal(lines[6], `[PASS] Gateway reachability: service is reachable at 127.0.0.1:${s.port}`);
  assert.match(lines[7]!, /^\[PASS\] Task create: created task `[0-9a-f-]{36}`$/);
  assert.equal(lines[8], "[PASS] Task start proof: task attempts observed: 1");
  assert.equal(
    lines[9],
    "[PASS] Task terminal proof: task reached blocked state (config_missing: no LLM provider configured: set agent.baseUrl and agent.model in config.json and the key in CARAPACE_AGENT_API_KEY, then resume the task)",
  );
  assert.equal(lines[11], "Outcome verification passed.");
  await s.stop();
});

test("cara verify --outcome autonomy: PASS via done (local provider), FAIL via failed", async () => {
  const good = await llm(200, { id: "run-1", choices: [{ message: { content: "ok" } }] });
  const s = await serveCara({ stateDir: await stateWithConfig({ agent: { baseUrl: good.url, model: "m" } }) });
  const res = await cli(s, ["verify", "--outcome", "autonomy", "--json"]);
  assert.equal(res.code, 0, res.stdout + res.stderr);
  const doc = JSON.parse(res.stdout);
  assert.equal(doc.passed, true);
  assert.deepEqual(
    doc.checks.map((c: { pass: boolean }) => c.pass),
    [true, true, true, true],
  );
  assert.equal(doc.checks[3].detail, "task reached done state (run IDs: 1)");
  await s.stop();
  await good.close();

  const bad = await llm(400, { error: { message: "bad request" } });
  const s2 = await serveCara({ stateDir: await stateWithConfig({ agent: { baseUrl: bad.url, model: "m" } }) });
  const res2 = await cli(s2, ["verify", "--outcome", "autonomy"]);
  assert.equal(res2.code, 1);
  assert.match(res2.stdout, /\n\[FAIL\] Task terminal proof: task failed: LLM endpoint answered HTTP 400: .*\n {6}next step: check provider configuration/);
  assert.match(res2.stdout, /\nOutcome verification FAILED\.\n$/);
  assert.equal(res2.stderr, "Error: outcome verification failed\n");
  await s2.stop();
  await bad.close();

  const down = await runCara(["verify", "--outcome", "autonomy", "--port", "1"]);
  assert.equal(down.code, 1);
  assert.match(
    down.stdout,
    /\[FAIL\] Gateway reachability: Could not connect to carapace at 127\.0\.0\.1:1 \(connection refused\)\. Is 'cara start' running\?\n {6}next step: start the service/,
  );
});

test("kill -9 during 1000 concurrent creates: every acknowledged id is present after restart", async () => {
  const s = await startCara();
  const client = createClient(TasksService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "2" }));
  const opts = { headers: { authorization: `Bearer ${s.token}` } };
  const acked: string[] = [];
  let killed = false;
  const future = BigInt(Date.now() + 3_600_000);
  // 1,000 creates from 32 concurrent streams; the server is killed once 200 were acknowledged.
  let next = 0;
  const creates = Array.from({ length: 32 }, async () => {
    while (next < 1000 && !killed) {
      const i = next++;
      try {
        const r = await client.createTask({ payload: { kind: { case: "systemEvent", value: { text: `t${i}` } } }, nextRunAtMs: future }, opts);
        acked.push(r.task!.id);
        if (acked.length === 200 && !killed) {
          killed = true;
          s.proc.kill("SIGKILL");
        }
      } catch (err) {
        assert.ok(err instanceof ConnectError, String(err));
        return;
      }
    }
  });
  await Promise.all(creates);
  await s.exited;
  assert.ok(killed, "the server was killed mid-way");
  assert.ok(acked.length >= 200 && acked.length < 1000, `acknowledged ${acked.length}`);
  const again = await startCara({ stateDir: s.stateDir });
  const client2 = createClient(TasksService, createConnectTransport({ baseUrl: again.baseUrl, httpVersion: "1.1" }));
  const present = new Set<string>();
  let token = "";
  do {
    const page = await client2.listTasks({ limit: 1000, pageToken: token }, { headers: { authorization: `Bearer ${again.token}` } });
    for (const t of page.tasks) present.add(t.id);
    token = page.nextPageToken;
  } while (token);
  const lost = acked.filter((id) => !present.has(id));
  assert.deepEqual(lost, [], `${lost.length} acknowledged tasks were lost`);
  await again.stop();
});

test("restart: a task running at kill -9 is retry_wait 'recovered after restart'; a corrupt queue.json refuses to start", async () => {
  const hang = await llm(200, {}, { hang: true });
  // A task stuck on a provider that never answers would hold each graceful stop for the whole
  // drain time: keep that short.
  const server = { shutdownTimeoutMs: 500 };
  const stateDir = await stateWithConfig({ agent: { baseUrl: hang.url, model: "m" }, server });
  const s = await startCara({ stateDir });
  const created = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { agentTurn: { message: "long", timeoutSeconds: 300 } } },
    s.token,
  );
  const id = created.json.task.id;
  const watch = createClient(TasksService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" })).watchTask(
    { id },
    { headers: { authorization: `Bearer ${s.token}` } },
  );
  for await (const msg of watch) if (msg.task?.state === TaskState.RUNNING) break;
  s.proc.kill("SIGKILL");
  await s.exited;
  await hang.close();
  // The recovered task is due at once; a provider that never answers keeps it from finishing.
  const hang2 = await llm(200, {}, { hang: true });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ agent: { baseUrl: hang2.url, model: "m" }, server }));
  const again = await startCara({ stateDir });
  const t = await connectJson(again, "carapace.tasks.v1.TasksService/GetTask", { id }, again.token);
  assert.equal(t.json.task.lastError, "recovered after restart");
  assert.ok(["TASK_STATE_RETRY_WAIT", "TASK_STATE_RUNNING"].includes(t.json.task.state), t.json.task.state);
  assert.ok(
    again.lines.some((l) => l.includes("recovered after restart")),
    "the recovery is logged",
  );
  await again.stop();
  await hang2.close();

  await writeFile(join(stateDir, "tasks", "queue.json"), "[{");
  const refused = await runCara(["start", "--port", "0", "--state-dir", stateDir]);
  assert.equal(refused.code, 1);
  const file = join(stateDir, "tasks", "queue.json");
  assert.match(
    refused.stderr,
    new RegExp(
      `^Error: task queue file ${file} is corrupt \\(.*\\); refusing to start rather than lose tasks\\. A copy was kept at ${file}\\.corrupt\\.\\d+\\.`,
    ),
  );
  assert.equal((await readdir(join(stateDir, "tasks"))).filter((n) => n.includes(".corrupt.")).length, 1);
  assert.equal(await readFile(file, "utf8"), "[{");
});

test("cara task watch: a retry_wait line says when the next attempt is due; a server that stops ends the watch with why and how to go on", async () => {
  const s = await serveCara();
  const created = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text: "later" } }, nextRunAtMs: String(Date.now() + 3_600_000) },
    s.token,
  );
  const id = created.json.task.id as string;
  const cancelled = await cli(s, ["task", "cancel", id]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.equal((await cli(s, ["task", "retry", id, "--delay-ms", "600000"])).code, 0);
  const watch = startCli(["task", "watch", id, "--port", String(s.port), "--state-dir", s.stateDir]);
  const first = await watch.stdout.until(/\n/);
  assert.match(first, /^\S+Z {2}retry_wait {2}attempts 0 {2}next attempt (\S+Z) \(in (\d+)s\) {2}retried by operator\n$/);
  const inS = Number(/\(in (\d+)s\)/.exec(first)![1]);
  assert.ok(inS > 590 && inS <= 600, `in ${inS}s`);
  await s.stop();
  const done = await watch.done;
  assert.equal(done.code, 1);
  assert.equal(
    done.stderr,
    `The watch ended while the task was retry_wait: the server closed the stream (stopping or restarting). The task is kept; once the server is back: cara task watch ${id}\n`,
  );
  assert.match(done.stdout, new RegExp(`\\nTask ${id}  retry_wait  \\(attempts 0\\)\\n`));
});
