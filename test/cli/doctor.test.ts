// `cara doctor` in this process against the real server in this process (serveCara), and against
// state dirs whose server is down: exact lines, exit codes and the --json document.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmod, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { FileTaskStore } from "../../src/tasks/store.js";

const SECRET = "doctor-cli-test-secret-0123456789abcdefghij";
const env = { CARAPACE_SERVER_SECRET: SECRET };

/** A pid no process has: one that has exited. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

/** A server with the secret set and one verified backup in its backups dir (so nothing warns). */
async function healthyServer(options: { config?: object } = {}) {
  const s = await serveCara({ env, ...options });
  const archive = join(s.stateDir, "backups", "first.tar.gz");
  const made = await runCli(["backup", "-o", archive, "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(made.code, 0, made.stderr);
  return { s, archive };
}

test("a healthy server: every step ok, exit 0", async () => {
  const { s, archive } = await healthyServer();
  const res = await runCli(["doctor", "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(res.stderr, "");
  assert.equal(res.code, 0, res.stdout);
  const d = s.stateDir;
  assert.equal(
    res.stdout,
    [
      `cara doctor: ${d}`,
      "",
      `ok    server — server pid ${process.pid} is healthy on http://127.0.0.1:${s.port}`,
      `ok    token — ${d}/auth/token is readable`,
      "ok    configuration — no config.json (defaults apply)",
      "ok    recent logs — no warnings or errors in the server's log ring",
      "ok    task queue — 0 tasks load",
      "ok    schedules — 0 schedules load",
      "ok    agent provider — not configured (agent.baseUrl, agent.model, CARAPACE_AGENT_API_KEY unset); no agentTurn task needs it",
      "ok    TLS — not configured (plaintext; loopback only unless --allow-plaintext)",
      "ok    server secret — CARAPACE_SERVER_SECRET is set",
      "ok    state dir owner and modes — private to this user (dirs 0700, files 0600)",
      "ok    update — no update transaction",
      "ok    interrupted restore — none",
      `ok    backups — newest verified archive: ${archive} (0 days old)`,
      "",
      "Verdict: OK (all 13 steps ok)",
      "",
    ].join("\n"),
  );

  const json = await runCli(["doctor", "--json", "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(json.code, 0);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(doc), ["stateDir", "server", "steps", "verdict"]);
  assert.deepEqual(doc.server, { running: true, pid: process.pid, url: `http://127.0.0.1:${s.port}` });
  assert.equal(doc.verdict, "ok");
  assert.deepEqual(
    doc.steps.map((x: { id: string; status: string }) => `${x.id}:${x.status}`),
    ["server", "token", "config", "logs", "tasks", "schedules", "agent", "tls", "secret", "modes", "update", "restore", "backups"].map((id) => `${id}:ok`),
  );
  assert.deepEqual(Object.keys(doc.steps[0]), ["id", "title", "status", "summary"]);
  await s.stop();
});

test("a port in config.json other than where the server listens is a warning with the way out (exit 0)", async () => {
  const { s } = await healthyServer({ config: { server: { port: 18799 } } });
  await chmod(join(s.stateDir, "config.json"), 0o600);
  const res = await runCli(["doctor", "--state-dir", s.stateDir], { env });
  assert.equal(res.code, 0, res.stdout);
  const lines = res.stdout.split("\n");
  assert.equal(lines[2], `warn  server — server pid ${process.pid} is healthy on http://127.0.0.1:${s.port}, but the configuration says 127.0.0.1:18799`);
  assert.equal(
    lines[3],
    `      → local commands find it anyway; to make it listen where configured, restart it (or fix server.port / server.bind in ${s.stateDir}/config.json)`,
  );
  assert.equal(lines.at(-2), "Verdict: WARN (1 warning, nothing failing)");
  await s.stop();
});

test("the server is down (a stale lock): doctor reads the log files and names the first failing component (exit 1)", async () => {
  const { s } = await healthyServer();
  await s.stop();
  const d = s.stateDir;
  // A crashed server: its lock and address record stay behind, naming a pid that is gone.
  const pid = deadPid();
  await writeFile(join(d, "cara.lock"), `${pid}\n`);
  await writeFile(join(d, "cara.address"), JSON.stringify({ pid, url: "http://127.0.0.1:1", bind: "127.0.0.1", port: 1, tls: false, startedAt: "" }));
  const recent = new Date(Date.now() - 60_000).toISOString();
  await writeFile(
    join(d, "logs", "cara.log"),
    `${JSON.stringify({ level: "error", time: recent, component: "backup", msg: "scheduled backup failed: disk full" })}\n`,
    { flag: "a" },
  );
  const res = await runCli(["doctor", "--state-dir", d], { env });
  assert.equal(res.code, 1, res.stdout);
  const lines = res.stdout.split("\n");
  assert.equal(lines[2], `warn  server — no server is running for ${d} (no live lock); configured to listen on 127.0.0.1:18789`);
  assert.equal(lines[3], `      → start it: cara start --state-dir ${d}`);
  assert.ok(
    res.stdout.includes(`fail  recent logs — first failing component: backup, since ${recent} (1 record): scheduled backup failed: disk full\n`),
    res.stdout,
  );
  assert.ok(
    res.stdout.includes(
      `        backup: 1 (1 error), first at ${recent}: scheduled backup failed: disk full\n      → read them: cara logs --grep 'scheduled backup failed: disk full' --file\n`,
    ),
  );
  assert.equal(lines.at(-4), "Verdict: FAIL (1 step failing, 1 warning)");
  assert.match(lines.at(-3)!, /^To restore the newest verified backup \(0 days old\):$/);
});

test("a corrupt queue: the step names the file and the kept copy, and the restore command follows (exit 1)", async () => {
  const { s, archive } = await healthyServer();
  await s.stop();
  const d = s.stateDir;
  await writeFile(join(d, "tasks", "queue.json"), "[{ broken");
  // What the next start does before it refuses: keep a copy of the damaged file.
  await FileTaskStore.open({ dir: join(d, "tasks") }).then(
    (store) => store.close(),
    () => undefined,
  );
  const copy = (await readdir(join(d, "tasks"))).find((n) => n.startsWith("queue.json.corrupt."));
  assert.ok(copy);
  const res = await runCli(["doctor", "--state-dir", d], { env });
  assert.equal(res.code, 1, res.stdout);
  assert.match(res.stdout, new RegExp(`\\nfail  task queue — task queue file ${d}/tasks/queue\\.json is corrupt \\(`));
  assert.ok(res.stdout.includes(`\n      → restore the queue from a backup (below); the damaged file is kept as ${d}/tasks/${copy}\n`), res.stdout);
  assert.ok(
    res.stdout.endsWith(`To restore the newest verified backup (0 days old):\n  cara restore ${archive} --offline --force --state-dir ${d}\n`),
    res.stdout,
  );
  const json = JSON.parse((await runCli(["doctor", "--json", "--state-dir", d], { env })).stdout);
  assert.deepEqual(json.restore, { path: archive, ageDays: 0, command: `cara restore ${archive} --offline --force --state-dir ${d}` });
});

test("an agentTurn task and no provider configured: the agent provider step fails with what to set (exit 1)", async () => {
  const { s } = await healthyServer();
  const made = await runCli(
    ["task", "create", "--payload", '{"kind":"agentTurn","message":"summarise the night"}', "--port", String(s.port), "--state-dir", s.stateDir],
    { env },
  );
  assert.equal(made.code, 0, made.stderr);
  const res = await runCli(["doctor", "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(res.code, 1, res.stdout);
  assert.ok(
    res.stdout.includes(
      `\nfail  agent provider — 1 agentTurn task waits for a provider, but agent.baseUrl, agent.model and CARAPACE_AGENT_API_KEY are not set\n      → set agent.baseUrl and agent.model in ${s.stateDir}/config.json (and CARAPACE_AGENT_API_KEY if the endpoint needs one), restart, then cara task resume <id>\n`,
    ),
    res.stdout,
  );
  await s.stop();
});

test("a TLS certificate that expires within 14 days is a warning; doctor reaches the TLS server on loopback trusting its configured certificate", async () => {
  const dir = await tempDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  // Named for the host clients use, not for the loopback address doctor reaches it on.
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "5",
      "-subj",
      "/CN=gateway.example",
      "-addext",
      "subjectAltName=DNS:gateway.example",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  const s = await serveCara({ env, config: { server: { tlsCert: cert, tlsKey: key } } });
  const res = await runCli(["doctor", "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(res.code, 0, res.stdout);
  const lines = res.stdout.split("\n");
  assert.equal(lines[2], `ok    server — server pid ${process.pid} is healthy on https://127.0.0.1:${s.port}`);
  assert.ok(res.stdout.includes("\nok    recent logs — no warnings or errors in the server's log ring\n"), "the log ring is read over TLS too");
  assert.match(
    res.stdout,
    new RegExp(
      `\\nwarn  TLS — the certificate ${cert} expires in [45] days \\(\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)\\n      → renew it before then and restart the server\\n`,
    ),
  );
  await s.stop();
});

test("bad flags are usage errors (exit 2) and change nothing", async () => {
  const res = await runCli(["doctor", "--port", "99999"]);
  assert.equal(res.code, 2);
  assert.equal(res.stderr, "Error: --port must be a port number 1..65535 (got '99999')\nRun 'cara doctor --help' for usage.\n");
  assert.equal(res.stdout, "");
});

test("the server rejects the token: the logs step reads the files instead and says why", async () => {
  const { s } = await healthyServer();
  const res = await runCli(["doctor", "--state-dir", s.stateDir, "--port", String(s.port)], { env: { ...env, CARAPACE_GATEWAY_TOKEN: "w".repeat(43) } });
  // The rejected call is itself a warning the server logs (into the file the step then reads).
  assert.match(res.stdout, /\nwarn {2}recent logs — first warning component: auth, since .*: rejected an RPC: authentication failed\n/);
  assert.match(
    res.stdout,
    new RegExp(
      `\\n {8}the server's log ring could not be read \\(carapace at 127\\.0\\.0\\.1:${s.port} is running but rejected the token \\(.*\\); these come from the log files\\n`,
    ),
    res.stdout,
  );
  assert.ok(!res.stdout.includes("w".repeat(43)), "the token is never printed");
  await s.stop();
});
