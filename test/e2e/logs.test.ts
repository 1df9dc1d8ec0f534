import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { LogLevel, OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { spawn } from "node:child_process";
import { CARA_BIN, cleanEnv, connectJson, serveCara, startCara } from "../helpers/cara.js";
import { runCli, startCli } from "../helpers/cli.js";
import { until } from "../helpers/wait.js";

const SECRET_TEXT =
  "deploy with api_key=sk-proj-abcdefghijklmnopqrstuvwxyz0123 and Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl";

// End to end on a spawned server: what reaches its stdout, its log file and the RPC, and
// `cara logs -f` (the real binary) ended by the server's shutdown. The rest runs in this process.

test("logs: TailLogs and cara logs show what was logged, redacted on stdout, file, ring and RPC", async () => {
  const s = await startCara();
  // A task event carrying secrets, and a failed auth carrying the real token plus junk.
  const created = await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: SECRET_TEXT } } }, s.token);
  assert.equal(created.status, 200);
  await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, `${s.token}x`);

  const client = createClient(OpsService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }));
  const opts = { headers: { authorization: `Bearer ${s.token}` } };
  // The task runs on the worker: its event is logged once it ran.
  for await (const msg of createClient(TasksService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" })).watchTask(
    { id: created.json.task.id },
    opts,
  ))
    void msg;
  const tail = await client.tailLogs({ limit: 50 }, opts);
  const event = tail.entries.find((e) => e.message === "system event");
  assert.ok(event, "the system event was logged");
  assert.equal(event.component, "tasks");
  assert.equal(event.level, LogLevel.INFO);
  const eventText = String(event.fields?.event);
  assert.ok(!eventText.includes("sk-proj-abcdefghijklmnopqrstuvwxyz0123"), eventText);
  assert.ok(!eventText.includes("eyJhbGciOiJIUzI1NiJ9"), eventText);
  assert.match(eventText, /^deploy with api_key=\[REDACTED\]/);
  const seqs = tail.entries.map((e) => Number(e.seq));
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    "oldest first",
  );
  assert.equal(Number(tail.nextSeq), seqs[seqs.length - 1]);

  // Cursor: nothing new after next_seq; a warn filter keeps only warnings.
  const after = await client.tailLogs({ afterSeq: tail.nextSeq, filter: { minLevel: LogLevel.ERROR } }, opts);
  assert.deepEqual(after.entries, []);
  const warns = await client.tailLogs({ filter: { minLevel: LogLevel.WARN } }, opts);
  assert.ok(warns.entries.length >= 1 && warns.entries.every((e) => e.level >= LogLevel.WARN));
  const grep = await client.tailLogs({ filter: { contains: "authentication failed" } }, opts);
  assert.equal(grep.entries.length, 1);

  // Every output: stdout lines, the log file, the RPC: no secret anywhere.
  await s.stop();
  const file = await readFile(join(s.stateDir, "logs", "cara.log"), "utf8");
  assert.ok(file.includes("system event"), "the file has the record");
  for (const [name, text] of [
    ["stdout", s.lines.join("\n")],
    ["file", file],
    ["rpc", JSON.stringify(tail.entries.map((e) => e.fields))],
  ] as const) {
    for (const secret of ["sk-proj-abcdefghijklmnopqrstuvwxyz0123", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ", s.token]) {
      assert.ok(!text.includes(secret), `${name} leaks ${secret.slice(0, 12)}`);
    }
  }
});

test("logs: bad TailLogs input is INVALID_ARGUMENT naming the field and range", async () => {
  const s = await serveCara();
  const cases: [unknown, string][] = [
    [{ limit: 0 }, "limit: must be an integer from 1 to 5000 (got 0)"],
    [{ limit: -3 }, "limit: must be an integer from 1 to 5000 (got -3)"],
    [{ limit: 5001 }, "limit: must be an integer from 1 to 5000 (got 5001)"],
    [{ maxBytes: 1048577 }, "max_bytes: must be an integer from 1 to 1048576 (got 1048577)"],
  ];
  for (const [body, message] of cases) {
    const res = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", body, s.token);
    assert.deepEqual([res.status, res.json.code, res.json.message], [400, "invalid_argument", message], JSON.stringify(body));
  }
  const nested = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { filter: { pattern: "(a+)+$" } }, s.token);
  assert.equal(nested.json.code, "invalid_argument");
  assert.match(nested.json.message, /^pattern: /);
  const long = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { filter: { pattern: "a".repeat(257) } }, s.token);
  assert.match(long.json.message, /^pattern: .*256/);
  const badRe = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { filter: { pattern: "([" } }, s.token);
  assert.match(badRe.json.message, /^pattern: /);
  const level = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { filter: { minLevel: 42 } }, s.token);
  assert.equal(level.json.code, "invalid_argument");
  await s.stop();
});

test("FollowLogs receives a line logged after subscribing and ends cleanly on shutdown; cara logs -f too", async () => {
  const s = await startCara();
  const client = createClient(OpsService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }));
  const received: string[] = [];
  let onEntry = (_message: string): void => undefined;
  let subscribed!: () => void;
  const ready = new Promise<void>((r) => (subscribed = r));
  const following = (async () => {
    for await (const msg of client.followLogs({ tail: 1 }, { headers: { authorization: `Bearer ${s.token}` } })) {
      if (msg.event.case === "entry") {
        received.push(msg.event.value.message);
        onEntry(msg.event.value.message);
        subscribed();
      }
    }
  })();
  await ready;
  // A CLI follower too, started now, ended by the server's shutdown.
  const cli = spawn(process.execPath, [CARA_BIN, "logs", "-f", "-n", "1", "--json", "--port", String(s.port), "--state-dir", s.stateDir], {
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let cliOut = "";
  let cliErr = "";
  cli.stderr.on("data", (c: Buffer) => (cliErr += c));
  const cliExit = new Promise<number | null>((r) => cli.once("exit", (code) => r(code)));
  // Wait until the CLI is following (it prints the one tail line first).
  await new Promise<void>((resolve) =>
    cli.stdout.on("data", (c: Buffer) => {
      cliOut += c;
      resolve();
    }),
  );
  const event = new Promise<void>((resolve) => (onEntry = (message) => message === "system event" && resolve()));
  await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: "after subscribing" } } }, s.token);
  await event;
  s.proc.kill("SIGTERM");
  await following; // ends without error when the server shuts down
  assert.equal(await s.exited, 0);
  assert.equal(await cliExit, 0, cliErr);
  const lines = cliOut
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { message: string; level: string; seq: number });
  assert.ok(lines.some((l) => l.message === "system event"));
  assert.ok(lines.every((l) => typeof l.seq === "number" && typeof l.level === "string"));
});

test("cara logs: human lines, --level and --json; bad flags are usage errors", async () => {
  const s = await serveCara();
  const human = await runCli(["logs", "-n", "3", "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(human.code, 0, human.stderr);
  for (const line of human.stdout.trim().split("\n"))
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S+ {2}\S/);
  const warn = await runCli(["logs", "--level", "warn", "--json", "--port", String(s.port), "--state-dir", s.stateDir]);
  const docs = warn.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(docs.length >= 1 && docs.every((d: { level: string }) => d.level === "warn"));
  assert.deepEqual(Object.keys(docs[0]), ["seq", "time", "level", "component", "message", "fields"]);
  const bad = await runCli(["logs", "-n", "0"]);
  assert.deepEqual([bad.code, bad.stderr.split("\n")[0]], [2, "Error: --lines must be from 1 to 5000 (got '0')"]);
  const badLevel = await runCli(["logs", "--level", "loud"]);
  assert.equal(badLevel.code, 2);
  const remote = await runCli(["logs", "--host", "logs.example.invalid"]);
  assert.equal(remote.code, 2);
  // -f runs until interrupted (here the context's signal, Ctrl-C for the real one): exit 0.
  const interrupt = new AbortController();
  const follow = startCli(["logs", "-f", "-n", "1", "--json", "--port", String(s.port), "--state-dir", s.stateDir], { signal: interrupt.signal });
  await follow.stdout.until(/\n/);
  interrupt.abort();
  const followed = await follow.done;
  assert.deepEqual([followed.code, followed.stderr], [0, ""]);
  assert.equal(followed.stdout.trim().split("\n").length, 1);
  await s.stop();
});

test("the README's `cara logs -f --grep <task-id>` follows that task's lines and no other task's", async () => {
  const s = await serveCara();
  const later = String(Date.now() + 3_600_000);
  const create = async (text: string) =>
    (await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text } }, nextRunAtMs: later }, s.token)).json.task
      .id as string;
  const runNow = (id: string) => connectJson(s, "carapace.tasks.v1.TasksService/UpdateTask", { id, nextRunAtMs: String(Date.now()) }, s.token);
  const logged = async (id: string) =>
    (await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { limit: 100, filter: { contains: id } }, s.token)).json.entries ?? [];
  const mine = await create("mine");
  const other = await create("other");
  const interrupt = new AbortController();
  const follow = startCli(["logs", "-f", "--grep", mine, "--port", String(s.port), "--state-dir", s.stateDir], { signal: interrupt.signal });
  // The other task runs first and its lines are in the ring before this task runs, so they would
  // have reached the follower first had the filter let them through.
  await runNow(other);
  await until("the other task's attempt to be logged", async () =>
    (await logged(other)).some((e: { message: string }) => e.message === "task attempt finished"),
  );
  await runNow(mine);
  await follow.stdout.until(/task attempt finished/);
  interrupt.abort();
  const followed = await follow.done;
  assert.deepEqual([followed.code, followed.stderr], [0, ""]);
  const lines = followed.stdout.trim().split("\n");
  assert.deepEqual(
    lines.map((l) => / (system event|task attempt finished) /.exec(`${l} `)?.[1]),
    ["system event", "task attempt finished"],
  );
  for (const line of lines) {
    assert.ok(line.includes(mine), line);
    assert.ok(!line.includes(other), line);
  }
  await s.stop();
});
