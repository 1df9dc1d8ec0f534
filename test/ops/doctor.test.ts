// The doctor's checklist over a state dir made by hand (no server: every probe that needs one is
// unused). The CLI end-to-end tests cover a running server.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { runDoctor, type DoctorReport } from "../../src/ops/doctor.js";
import { statePaths } from "../../src/state/paths.js";
import { prepareStateDir } from "../../src/state/state-dir.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { tempDir } from "../helpers/cara.js";

const probes = { health: async () => ({ error: "no server in this test" }) };
const step = (r: DoctorReport, id: string) => r.steps.find((s) => s.id === id)!;

async function stateDir(): Promise<string> {
  const dir = join(await tempDir(), "state");
  await prepareStateDir(dir);
  await writeFile(join(dir, "auth", "token"), `${"t".repeat(43)}\n`, { mode: 0o600 });
  await writeFile(join(dir, "auth", "server-secret"), `${"s".repeat(43)}\n`, { mode: 0o600 });
  return dir;
}

test("server down: the lock is absent, logs come from the files, the first failing component is named", async () => {
  const dir = await stateDir();
  await writeFile(
    join(dir, "logs", "cara.log"),
    `${[
      { level: "info", time: "2026-12-05T10:00:00.000Z", component: "server", msg: "listening on http://127.0.0.1:18789" },
      {
        level: "warn",
        time: "2026-12-05T10:01:00.000Z",
        component: "server",
        address: "127.0.0.1",
        reason: "mismatch",
        msg: "rejected an RPC: authentication failed",
      },
      { level: "error", time: "2026-12-05T10:02:00.000Z", component: "update", msg: "download failed" },
      { level: "error", time: "2026-12-05T10:03:00.000Z", component: "update", msg: "download failed" },
    ]
      .map((r) => JSON.stringify(r))
      .join("\n")}\n`,
  );
  const r = await runDoctor({ paths: statePaths(dir), env: {}, probes, now: Date.parse("2026-12-05T12:00:00Z") });
  assert.deepEqual(r.server, { running: false });
  assert.deepEqual(step(r, "server"), {
    id: "server",
    title: "server",
    status: "warn",
    summary: `no server is running for ${dir} (no live lock); configured to listen on 127.0.0.1:18789`,
    next: `start it: cara start --state-dir ${dir}`,
  });
  const logs = step(r, "logs");
  assert.equal(logs.status, "fail");
  assert.equal(logs.summary, "first failing component: update, since 2026-12-05T10:02:00.000Z (2 records): download failed");
  assert.deepEqual(logs.details, [
    "auth: 1 (0 errors), first at 2026-12-05T10:01:00.000Z: rejected an RPC: authentication failed",
    "update: 2 (2 errors), first at 2026-12-05T10:02:00.000Z: download failed",
  ]);
  assert.equal(logs.next, "read them: cara logs --grep 'download failed' --file");
  assert.equal(step(r, "tasks").status, "ok");
  assert.equal(step(r, "secret").status, "warn");
  assert.equal(step(r, "backups").status, "warn");
  assert.equal(r.verdict, "fail");
});

test("a corrupt queue names the kept copy and gives the restore command for the newest verifying backup", async () => {
  const dir = await stateDir();
  const secret = "doctor-test-secret-0123456789abcdefghijklmno";
  // A real backup to find, then a queue that no longer loads.
  const { BackupManager } = await import("../../src/backup/backups.js");
  const manager = new BackupManager({
    stateDir: dir,
    backupsDir: join(dir, "backups"),
    secret,
    caraVersion: "0.1.0",
    writers: { holdWrites: (fn) => fn(), pause: async () => undefined, resume: async () => undefined },
  });
  const store = await FileTaskStore.open({ dir: join(dir, "tasks") });
  await store.create({ payload: { kind: "systemEvent", text: "x" } } as Parameters<typeof store.create>[0]);
  await store.close();
  const backup = await manager.backupToDir("scheduled");
  await writeFile(join(dir, "tasks", "queue.json"), "[{ broken");
  await FileTaskStore.open({ dir: join(dir, "tasks") }).catch(() => undefined); // what a start would do: keep a copy
  const copy = (await readdir(join(dir, "tasks"))).find((n) => n.startsWith("queue.json.corrupt."))!;
  const r = await runDoctor({ paths: statePaths(dir), env: { CARAPACE_SERVER_SECRET: secret }, probes });
  const tasks = step(r, "tasks");
  assert.equal(tasks.status, "fail");
  assert.match(tasks.summary, new RegExp(`^task queue file ${join(dir, "tasks", "queue.json")} is corrupt \\(`));
  assert.equal(tasks.next, `restore the queue from a backup (below); the damaged file is kept as ${join(dir, "tasks", copy)}`);
  assert.equal(step(r, "backups").summary, `newest verified archive: ${backup.path} (0 days old)`);
  assert.deepEqual(r.restore, { path: backup.path, ageDays: 0, command: `cara restore ${backup.path} --offline --force --state-dir ${dir}` });
});

test("agentTurn tasks without a provider, and a TLS certificate about to expire", async () => {
  const dir = await stateDir();
  const store = await FileTaskStore.open({ dir: join(dir, "tasks") });
  await store.create({ payload: { kind: "agentTurn", message: "hi" } } as Parameters<typeof store.create>[0]);
  await store.close();
  const certDir = await tempDir();
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
      "/CN=localhost",
      "-keyout",
      join(certDir, "key.pem"),
      "-out",
      join(certDir, "cert.pem"),
    ],
    { stdio: "ignore" },
  );
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ agent: { model: "gpt-x" }, server: { tlsCert: join(certDir, "cert.pem"), tlsKey: join(certDir, "key.pem") } }),
  );
  const r = await runDoctor({ paths: statePaths(dir), env: {}, probes });
  assert.deepEqual(step(r, "agent"), {
    id: "agent",
    title: "agent provider",
    status: "fail",
    summary: "1 agentTurn task waits for a provider, but agent.baseUrl and CARAPACE_AGENT_API_KEY are not set",
    next: `set agent.baseUrl in ${join(dir, "config.json")} (and CARAPACE_AGENT_API_KEY if the endpoint needs one), restart, then cara task resume <id>`,
  });
  const tls = step(r, "tls");
  assert.equal(tls.status, "warn");
  assert.match(tls.summary, new RegExp(`^the certificate ${join(certDir, "cert.pem")} expires in [45] days \\(`));
  assert.equal(tls.next, "renew it before then and restart the server");
});

test("an interrupted restore and loose modes are reported with the way out", async () => {
  const dir = await stateDir();
  await mkdir(join(dir, ".restore-staging-0a1b2c3d"));
  const { chmod } = await import("node:fs/promises");
  await chmod(join(dir, "auth", "token"), 0o644);
  const r = await runDoctor({ paths: statePaths(dir), env: {}, probes });
  assert.deepEqual(step(r, "restore"), {
    id: "restore",
    title: "interrupted restore",
    status: "warn",
    summary: "leftovers of an interrupted restore: .restore-staging-0a1b2c3d",
    next: "start the server (or run cara restore --offline): it completes or undoes the swap, then removes the leftovers",
  });
  assert.equal(step(r, "modes").summary, `${join(dir, "auth", "token")} is 644, wants 600 or tighter`);
});
