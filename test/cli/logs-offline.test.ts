/**
 * `cara logs` without a server: the log files of the state dir (automatically when nothing
 * listens, or with --offline), or a file named with --file, with the server's filters and
 * --since; with a server, its ring stays the source and --since is applied there too.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { runCli } from "../helpers/cli.js";
import { connectJson, serveCara, tempDir } from "../helpers/cara.js";

const line = (time: string, level: string, component: string, msg: string, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ level, time, pid: 1, component, ...extra, msg })}\n`;

/** A state dir whose logs/ holds two rotated files and the live one (one line cut by a crash). */
async function stateWithLogs(): Promise<string> {
  const state = join(await tempDir(), "state");
  const dir = join(state, "logs");
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "cara.log.2"),
    line("2026-12-05T01:00:00.000Z", "info", "server", "listening on http://127.0.0.1:18789") +
      line("2026-12-05T01:05:00.000Z", "warn", "tasks", "lease expired", { taskId: "aaaa-1" }),
  );
  await writeFile(
    join(dir, "cara.log.1"),
    `${line("2026-12-05T02:00:00.000Z", "error", "update", "download failed", { err: { code: "ECONNRESET" } })}{"level":"info","time":"2026-12-05T02:0`,
  );
  await writeFile(
    join(dir, "cara.log"),
    line("2026-12-05T03:00:00.000Z", "info", "tasks", "task attempt finished", { taskId: "aaaa-1", outcome: "done" }) +
      line("2026-12-05T03:01:00.000Z", "info", "server", "stopped"),
  );
  return state;
}

/** A loopback port where nothing listens. */
async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, "close");
  return port;
}

const ALL = [
  "2026-12-05T01:00:00.000Z INFO  server  listening on http://127.0.0.1:18789",
  "2026-12-05T01:05:00.000Z WARN  tasks  lease expired taskId=aaaa-1",
  '2026-12-05T02:00:00.000Z ERROR update  download failed err={"code":"ECONNRESET"}',
  "2026-12-05T03:00:00.000Z INFO  tasks  task attempt finished taskId=aaaa-1 outcome=done",
  "2026-12-05T03:01:00.000Z INFO  server  stopped",
];

test("no server on this machine: the log files are read, rotated ones first, and it says so", async () => {
  const state = await stateWithLogs();
  const port = await freePort();
  const r = await runCli(["logs", "--port", String(port)], { env: { CARAPACE_STATE_DIR: state } });
  assert.deepEqual(r, {
    code: 0,
    stdout: `${ALL.join("\n")}\n`,
    stderr: `(no server answers at 127.0.0.1:${port}: reading cara.log.2, cara.log.1, cara.log in ${join(state, "logs")})\n(1 line was not a log record and skipped)\n`,
  });
});

test("--offline: the same filters as the server (level, text in fields, pattern, lines) and --since", async () => {
  const state = await stateWithLogs();
  const env = { CARAPACE_STATE_DIR: state };
  const note = `(reading cara.log.2, cara.log.1, cara.log in ${join(state, "logs")})\n(1 line was not a log record and skipped)\n`;
  assert.deepEqual(await runCli(["logs", "--offline", "--level", "warn"], { env }), { code: 0, stdout: `${ALL[1]}\n${ALL[2]}\n`, stderr: note });
  assert.deepEqual(await runCli(["logs", "--offline", "--grep", "aaaa-1"], { env }), { code: 0, stdout: `${ALL[1]}\n${ALL[3]}\n`, stderr: note });
  assert.deepEqual(await runCli(["logs", "--offline", "--grep", "ECONNRESET"], { env }), { code: 0, stdout: `${ALL[2]}\n`, stderr: note });
  assert.deepEqual(await runCli(["logs", "--offline", "--pattern", "^(lease|stop)"], { env }), { code: 0, stdout: `${ALL[1]}\n${ALL[4]}\n`, stderr: note });
  assert.deepEqual(await runCli(["logs", "--offline", "--since", "2026-12-05T02:30:00Z"], { env }), {
    code: 0,
    stdout: `${ALL[3]}\n${ALL[4]}\n`,
    stderr: note,
  });
  assert.deepEqual(await runCli(["logs", "--offline", "-n", "2"], { env }), {
    code: 0,
    stdout: `${ALL[3]}\n${ALL[4]}\n`,
    stderr: `(reading cara.log.2, cara.log.1, cara.log in ${join(state, "logs")})\n(more lines matched: these are the newest 2; raise --lines or narrow with --since)\n(1 line was not a log record and skipped)\n`,
  });
  const json = await runCli(["logs", "--offline", "--json", "--grep", "done"], { env });
  assert.deepEqual(JSON.parse(json.stdout), {
    time: "2026-12-05T03:00:00.000Z",
    level: "info",
    component: "tasks",
    message: "task attempt finished",
    fields: { taskId: "aaaa-1", outcome: "done" },
    file: join(state, "logs", "cara.log"),
    line: 1,
  });
});

test("--file reads a copied log file and its rotated predecessors; bad input is refused", async () => {
  const state = await stateWithLogs();
  const cwd = join(state, "logs");
  assert.deepEqual(await runCli(["logs", "--file", "cara.log", "--level", "error"], { cwd }), {
    code: 0,
    stdout: `${ALL[2]}\n`,
    stderr: `(reading cara.log.2, cara.log.1, cara.log in ${cwd})\n(1 line was not a log record and skipped)\n`,
  });
  assert.deepEqual(await runCli(["logs", "--file", "cara.log.2", "--since", "10m"], { cwd }), {
    code: 0,
    stdout: "",
    stderr: `(reading cara.log.2 in ${cwd})\n`,
  });
  assert.deepEqual(await runCli(["logs", "--file", "nope.log"], { cwd }), { code: 1, stdout: "", stderr: "Error: no such log file: nope.log\n" });
  assert.deepEqual(await runCli(["logs", "--offline", "--since", "yesterday"], { cwd }), {
    code: 2,
    stdout: "",
    stderr:
      "Error: --since must be a duration like 10m, 2h or 3d, or an ISO time like 2026-12-05T03:00:00Z (got 'yesterday')\nRun 'cara logs --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["logs", "--file", "cara.log", "-f"], { cwd }), {
    code: 2,
    stdout: "",
    stderr:
      "Error: --follow streams from the server; the log files are read once (drop --follow, or drop --offline/--file)\nRun 'cara logs --help' for usage.\n",
  });
  const empty = join(await tempDir(), "state");
  assert.deepEqual(await runCli(["logs", "--offline"], { env: { CARAPACE_STATE_DIR: empty } }), {
    code: 1,
    stdout: "",
    stderr: `Error: there are no log files in ${join(empty, "logs")} (is this the server's --state-dir?)\n`,
  });
});

test("with the server up its ring is read, and --since is applied by the server (LogFilter.since)", async () => {
  const server = await serveCara();
  const env = { CARAPACE_STATE_DIR: server.stateDir };
  const recent = await runCli(["logs", "--port", String(server.port), "--since", "1h", "--grep", "listening on"], { env });
  assert.equal(recent.code, 0);
  assert.equal(recent.stderr, "");
  assert.match(recent.stdout, /^\S+Z INFO {2}server {2}listening on http:\/\/127\.0\.0\.1:\d+/);
  const future = await runCli(["logs", "--port", String(server.port), "--since", "2999-01-01T00:00:00Z"], { env });
  assert.deepEqual(future, { code: 0, stdout: "", stderr: "" });
  const all = await connectJson(server, "carapace.ops.v1.OpsService/TailLogs", { filter: { contains: "listening on" } }, server.token);
  assert.equal(all.json.entries.length, 1);
  const none = await connectJson(
    server,
    "carapace.ops.v1.OpsService/TailLogs",
    { filter: { contains: "listening on", since: "2999-01-01T00:00:00Z" } },
    server.token,
  );
  assert.deepEqual(none.json.entries ?? [], []);
});
