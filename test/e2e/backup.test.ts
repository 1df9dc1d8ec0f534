import assert from "node:assert/strict";
import { cp, mkdir, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TasksService, TaskState } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { connectJson, runCara, serveCara, startCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { until } from "../helpers/wait.js";
import { entryBlocks, maliciousArchive, SECRET } from "../backup/fixtures.js";

// Server and CLI run in this process (serveCara, runCli) unless a process is the point: the
// offline restore and `cara start` against a locked or corrupt state dir, and kill -9 mid-swap.

const env = { CARAPACE_SERVER_SECRET: SECRET };
/** `cara args` against `s`, in this process. */
const cli = (s: CaraEndpoint, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir], { env });

async function listTasks(s: CaraEndpoint): Promise<string[]> {
  const res = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000 }, s.token);
  return (res.json.tasks ?? []).map((t: { id: string }) => t.id).sort();
}
const createTask = (s: CaraEndpoint, text: string) =>
  connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text } }, nextRunAtMs: String(Date.now() + 3_600_000) }, s.token);

test("backup while tasks are being created is consistent; round trip restores the exact files", async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "info" }));
  await mkdir(join(s.stateDir, "sessions"), { mode: 0o700 });
  await writeFile(join(s.stateDir, "sessions", "a.json"), '{"id":"a"}', { mode: 0o640 });
  for (let i = 0; i < 20; i++) await createTask(s, `before ${i}`);
  const out = join(await tempDir(), "b.tar.gz");
  // Creates keep running during the backup.
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) await createTask(s, `during ${i}`);
  })();
  const res = await cli(s, ["backup", "--output", out, "--json"]);
  stop = true;
  await writer;
  assert.equal(res.code, 0, res.stderr);
  const doc = JSON.parse(res.stdout);
  assert.deepEqual(doc.sections, ["config", "tasks", "sessions"]);
  assert.match(doc.sha256, /^[0-9a-f]{64}$/);
  assert.ok(doc.excluded.some((e: { path: string }) => e.path === "auth/"));
  assert.equal((await stat(out)).mode & 0o777, 0o600);
  const verify = await cli(s, ["backup", "verify", out]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);

  // Restore into a fresh deployment with the same secret: everything identical, tasks parse.
  const before = await listTasks(s);
  await s.stop();
  const fresh = await serveCara({ env });
  const restored = await cli(fresh, ["restore", out, "--force"]);
  assert.equal(restored.code, 0, restored.stderr);
  assert.match(restored.stdout, /^Restore completed successfully\n/);
  assert.equal(await readFile(join(fresh.stateDir, "sessions", "a.json"), "utf8"), '{"id":"a"}');
  assert.equal((await stat(join(fresh.stateDir, "sessions", "a.json"))).mode & 0o777, 0o600, "restored files are private whatever mode they had");
  assert.equal(await readFile(join(fresh.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "info" }));
  const after = await listTasks(fresh);
  assert.ok(after.length >= 20, "the restored queue loaded");
  assert.ok(
    after.every((id) => before.includes(id)),
    "the backup holds one instant of the queue (no task that did not exist)",
  );
  await fresh.stop();
});

test("cara backup refuses an existing file without --force and never follows a symlink", async () => {
  const s = await serveCara({ env });
  const dir = await tempDir();
  const out = join(dir, "b.tar.gz");
  await writeFile(out, "keep me");
  const refused = await cli(s, ["backup", "-o", out]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, `Error: refusing to overwrite existing file ${out} (pass --force to overwrite)\n`);
  assert.equal(await readFile(out, "utf8"), "keep me");
  const forced = await cli(s, ["backup", "-o", out, "--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(await readFile(out, "utf8"), "keep me");
  await writeFile(join(dir, "victim"), "victim");
  await symlink(join(dir, "victim"), join(dir, "link.tar.gz"));
  const link = await cli(s, ["backup", "-o", join(dir, "link.tar.gz"), "--force"]);
  assert.equal(link.code, 1);
  assert.match(link.stderr, /^Error: refusing to follow symlink at output path/);
  assert.equal(await readFile(join(dir, "victim"), "utf8"), "victim");
  assert.deepEqual((await readdir(dir)).sort(), ["b.tar.gz", "link.tar.gz", "victim"], "no temp file left behind");
  await s.stop();
});

test("restore: dry-run changes nothing and reports the diff; --force needed; pre-restore backup restores back", async () => {
  const s = await serveCara({ env });
  await createTask(s, "one");
  const out = join(await tempDir(), "b.tar.gz");
  assert.equal((await cli(s, ["backup", "-o", out, "--sections", "tasks"])).code, 0);
  const one = await listTasks(s);
  await createTask(s, "two");
  const two = await listTasks(s);
  const queueBefore = await readFile(join(s.stateDir, "tasks", "queue.journal"));
  const dry = await cli(s, ["restore", out, "--dry-run", "--json"]);
  assert.equal(dry.code, 0, dry.stderr);
  const d = JSON.parse(dry.stdout);
  assert.equal(d.dryRun, true);
  assert.deepEqual(
    d.diffs.map((x: { section: string }) => x.section),
    ["tasks"],
  );
  assert.deepEqual(d.diffs[0].changed, ["tasks/queue.journal"]);
  assert.deepEqual(await readFile(join(s.stateDir, "tasks", "queue.journal")), queueBefore, "dry run changed nothing");
  const noForce = await cli(s, ["restore", "--path", out]);
  assert.equal(noForce.code, 1);
  assert.match(noForce.stderr, /restore would overwrite or remove 1 existing file in tasks; review with --dry-run, then pass --force/);
  assert.deepEqual(await listTasks(s), two);
  const real = await cli(s, ["restore", out, "--force", "--json"]);
  assert.equal(real.code, 0, real.stderr);
  const r = JSON.parse(real.stdout);
  assert.deepEqual(r.restoredSections, ["tasks"]);
  assert.deepEqual(await listTasks(s), one, "the live server serves the restored queue");
  // The pre-restore backup brings the second task back.
  const back = await cli(s, ["restore", r.preRestoreBackupPath, "--force"]);
  assert.equal(back.code, 0, back.stderr);
  assert.deepEqual(await listTasks(s), two);
  const list = await cli(s, ["backup", "list", "--json"]);
  assert.ok(JSON.parse(list.stdout).backups.some((b: { origin: string }) => b.origin === "pre-restore"));
  await s.stop();
});

test("an unsafe or tampered archive is refused whole, with the entry and rule named, and the state is unchanged", async () => {
  const s = await serveCara({ env });
  await createTask(s, "keep");
  const dir = await tempDir();
  const snapshot = async () => [await readFile(join(s.stateDir, "tasks", "queue.journal"), "utf8"), await listTasks(s)];
  const before = await snapshot();
  const cases: [string, Buffer, RegExp][] = [
    ["traversal", maliciousArchive([entryBlocks({ name: "tasks/../../x", content: "x" })]), /refusing archive: entry 'tasks\/\.\.\/\.\.\/x' /],
    [
      "symlink",
      maliciousArchive([entryBlocks({ name: "tasks/evil", type: "2", linkname: "/etc/passwd", content: "" })]),
      /refusing archive: entry 'tasks\/evil' /,
    ],
    ["not gzip", Buffer.from("this is not a backup"), /refusing archive: /],
  ];
  for (const [name, bytes, message] of cases) {
    const file = join(dir, `${name}.tar.gz`);
    await writeFile(file, bytes);
    const res = await cli(s, ["restore", file, "--force"]);
    assert.equal(res.code, 1, name);
    assert.match(res.stderr, message, name);
    assert.deepEqual(await snapshot(), before, `${name}: state unchanged`);
  }
  // A flipped byte in a real backup is caught by verify.
  const good = join(dir, "good.tar.gz");
  assert.equal((await cli(s, ["backup", "-o", good])).code, 0);
  const { gunzipSync, gzipSync } = await import("node:zlib");
  const tar = gunzipSync(await readFile(good));
  const at = tar.indexOf(Buffer.from('"keep"'));
  assert.ok(at > 0);
  tar[at + 2] = tar[at + 2]! ^ 0x01;
  const bad = join(dir, "flipped.tar.gz");
  await writeFile(bad, gzipSync(tar));
  const verify = await cli(s, ["backup", "verify", bad]);
  assert.equal(verify.code, 1);
  assert.match(verify.stdout, /^NOT OK: .*\n[\s\S]*problem: .*tasks\/queue\.journal/);
  // A backup made by another deployment needs --allow-foreign.
  const other = await serveCara({ env: { CARAPACE_SERVER_SECRET: "a-different-deployment-secret-000000000000" } });
  const foreignFile = join(dir, "foreign.tar.gz");
  assert.equal((await runCli(["backup", "-o", foreignFile, "--port", String(other.port), "--state-dir", other.stateDir])).code, 0);
  await other.stop();
  const foreign = await cli(s, ["restore", foreignFile, "--force"]);
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, /pass --allow-foreign/);
  assert.deepEqual(await snapshot(), before);
  await s.stop();
});

test("offline restore brings up a server that refused to start; it refuses while a server holds the lock", async () => {
  const s = await startCara({ env });
  await createTask(s, "precious");
  const ids = await listTasks(s);
  const out = join(await tempDir(), "b.tar.gz");
  assert.equal((await cli(s, ["backup", "-o", out])).code, 0);
  const locked = await runCara(["restore", out, "--offline", "--force", "--state-dir", s.stateDir], { env });
  assert.equal(locked.code, 1);
  assert.match(locked.stderr, new RegExp(`^Error: another cara server \\(pid ${s.proc.pid}\\) is using ${s.stateDir}: stop it first`));
  await s.stop();
  await writeFile(join(s.stateDir, "tasks", "queue.json"), "[{ corrupt");
  const refused = await runCara(["start", "--port", "0", "--state-dir", s.stateDir], { env });
  assert.equal(refused.code, 1);
  const offline = await runCara(["restore", out, "--offline", "--force", "--state-dir", s.stateDir], { env });
  assert.equal(offline.code, 0, offline.stderr);
  const again = await startCara({ stateDir: s.stateDir, env });
  assert.deepEqual(await listTasks(again), ids);
  await again.stop();
});

// ---------------------------------------------------------------------------------------------
// kill -9 during the restore swap (src/backup/swap.ts, test hook CARA_TEST_PAUSE_AT=swap:<step>)

/** Every file of the sections config, tasks and sessions (state-dir relative path → bytes). */
async function sectionFiles(stateDir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(stateDir, rel), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(`${rel}/${e.name}`);
      else out[`${rel}/${e.name}`] = await readFile(join(stateDir, rel, e.name));
    }
  };
  try {
    out["config.json"] = await readFile(join(stateDir, "config.json"));
  } catch {
    // no config section
  }
  await walk("tasks");
  await walk("sessions");
  return out;
}

/** The same, as a restore of `archive` lays it out (config/config.json → config.json). */
async function archiveSectionFiles(archive: string): Promise<Record<string, Buffer>> {
  const { gunzipSync } = await import("node:zlib");
  const { walkTar } = await import("../backup/fixtures.js");
  const tar = gunzipSync(await readFile(archive));
  const out: Record<string, Buffer> = {};
  for (const e of walkTar(tar)) {
    if (e.name === "config/config.json") out["config.json"] = tar.subarray(e.dataStart, e.dataStart + e.size);
    else if (e.name.startsWith("tasks/") || e.name.startsWith("sessions/")) out[e.name] = tar.subarray(e.dataStart, e.dataStart + e.size);
  }
  return out;
}

/**
 * A state dir in its OLD state (config, 2 sessions, tasks old-*) and an archive of its NEW state
 * (other config, other sessions, tasks new-*), both with a compacted task store so that pausing
 * the store for the swap changes no byte.
 */
async function buildOldStateAndNewArchive(): Promise<{ state: string; archive: string; newIds: string[]; oldIds: string[] }> {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), `${JSON.stringify({ logLevel: "info", logs: { ringCapacity: 3000 } })}\n`);
  await mkdir(join(s.stateDir, "sessions", "agent"), { recursive: true, mode: 0o700 });
  await writeFile(join(s.stateDir, "sessions", "agent", "a.jsonl"), '{"turn":1,"text":"new a"}\n');
  await writeFile(join(s.stateDir, "sessions", "b.jsonl"), '{"turn":1,"text":"new b"}\n', { mode: 0o640 });
  for (let i = 0; i < 3; i++) await createTask(s, `new-${i}`);
  const newIds = await listTasks(s);
  await s.stop();
  const again = await serveCara({ stateDir: s.stateDir, env });
  const archive = join(await tempDir(), "new.tar.gz");
  assert.equal((await cli(again, ["backup", "-o", archive])).code, 0);
  // Now the OLD state: more tasks, another config, a changed, a removed and an added session.
  for (let i = 0; i < 2; i++) await createTask(again, `old-${i}`);
  const oldIds = await listTasks(again);
  await writeFile(join(again.stateDir, "config.json"), `${JSON.stringify({ logLevel: "info", logs: { ringCapacity: 2000 } })}\n`);
  await writeFile(join(again.stateDir, "sessions", "agent", "a.jsonl"), '{"turn":1,"text":"old a"}\n{"turn":2}\n');
  await rm(join(again.stateDir, "sessions", "b.jsonl"));
  await writeFile(join(again.stateDir, "sessions", "c.jsonl"), '{"turn":1,"text":"old c"}\n');
  await again.stop();
  return { state: s.stateDir, archive, newIds, oldIds };
}

let fixture: ReturnType<typeof buildOldStateAndNewArchive> | undefined;
/** Built once for the file: each test works on its own copy of the state (copyState). */
const oldStateAndNewArchive = () => (fixture ??= buildOldStateAndNewArchive());

/** A copy of `state` (one crash scenario each). */
async function copyState(state: string): Promise<string> {
  const dest = join(await tempDir(), "state");
  await cp(state, dest, { recursive: true });
  return dest;
}

async function assertNoRestoreLeftovers(stateDir: string): Promise<void> {
  const names = await readdir(stateDir);
  assert.deepEqual(
    names.filter((n) => n.startsWith(".restore-") || n === "restore-swap.json"),
    [],
    "no staging, holding or marker left",
  );
  assert.deepEqual(
    (await readdir(join(stateDir, "backups"))).filter((n) => n.startsWith(".snapshot-") || n.endsWith(".partial")),
    [],
  );
}

for (const [step, outcome] of [
  ["moved:tasks", "old"],
  ["swapped", "new"],
] as const) {
  test(`kill -9 of the server during the restore swap (at ${step}): the next start has exactly the ${outcome} state`, async () => {
    const fixture = await oldStateAndNewArchive();
    const state = await copyState(fixture.state);
    const s = await startCara({ stateDir: state, env: { ...env, CARA_TEST_PAUSE_AT: `swap:${step}` } });
    const oldFiles = await sectionFiles(state);
    const newFiles = await archiveSectionFiles(fixture.archive);
    assert.notDeepEqual(oldFiles, newFiles);
    assert.deepEqual(await listTasks(s), fixture.oldIds);

    const restore = runCli(["restore", fixture.archive, "--force", "--port", String(s.port), "--state-dir", state], { env });
    await until(`the swap to reach ${step}`, () => s.lines.includes(`CARA_TEST_PAUSED_AT swap:${step}`), 30_000);
    const during = await sectionFiles(state);
    if (step === "moved:tasks") {
      // Really mid-swap: config and tasks are the new ones, sessions still the old ones.
      assert.deepEqual(during["config.json"], newFiles["config.json"]);
      assert.deepEqual(during["tasks/queue.json"], newFiles["tasks/queue.json"]);
      assert.deepEqual(during["sessions/c.jsonl"], oldFiles["sessions/c.jsonl"]);
    } else {
      assert.deepEqual(during, newFiles);
    }
    await s.stop("SIGKILL");
    assert.equal((await restore).code, 1, "the client saw the server die");

    const after = await startCara({ stateDir: state, env });
    assert.ok(
      after.lines.some(
        (l) =>
          l.includes("an interrupted restore was completed or undone at start") &&
          l.includes(outcome === "old" ? '"outcome":"rolled-back"' : '"outcome":"rolled-forward"'),
      ),
      after.lines.join("\n"),
    );
    assert.deepEqual(await sectionFiles(state), outcome === "old" ? oldFiles : newFiles);
    assert.deepEqual(await listTasks(after), outcome === "old" ? fixture.oldIds : fixture.newIds);
    await assertNoRestoreLeftovers(state);
    assert.equal(await after.stop(), 0);
  });
}

for (const step of ["marker", "moved:sessions"] as const) {
  test(`kill -9 of an offline restore during the swap (at ${step}): the next start has exactly the old state`, async () => {
    const { spawn } = await import("node:child_process");
    const { CARA_BIN, cleanEnv } = await import("../helpers/cara.js");
    const fixture = await oldStateAndNewArchive();
    const state = await copyState(fixture.state);
    const oldFiles = await sectionFiles(state);
    const proc = spawn(process.execPath, [CARA_BIN, "restore", fixture.archive, "--offline", "--force", "--state-dir", state], {
      env: cleanEnv({ ...env, CARA_TEST_PAUSE_AT: `swap:${step}` }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    proc.stdout.resume();
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once("exit", (_code, signal) => resolve(signal)));
    try {
      await until(`the offline swap to reach ${step}`, () => stderr.includes(`CARA_TEST_PAUSED_AT swap:${step}\n`), 30_000);
      assert.ok((await readdir(state)).includes("restore-swap.json"), "the swap marker is down");
    } finally {
      proc.kill("SIGKILL");
    }
    assert.equal(await exited, "SIGKILL");

    const after = await startCara({ stateDir: state, env });
    assert.ok(
      after.lines.some((l) => l.includes('"outcome":"rolled-back"')),
      after.lines.join("\n"),
    );
    assert.deepEqual(await sectionFiles(state), oldFiles);
    assert.deepEqual(await listTasks(after), fixture.oldIds);
    await assertNoRestoreLeftovers(state);
    // The pre-restore backup taken before the swap is there and readable.
    const list = JSON.parse((await cli(after, ["backup", "list", "--json"])).stdout);
    assert.deepEqual(
      list.backups.map((b: { origin: string; sections: string[]; error: string | null }) => [b.origin, b.sections, b.error]),
      [["pre-restore", ["config", "tasks", "sessions"], null]],
    );
    assert.equal(await after.stop(), 0);
  });
}

test("backup list shows the sections of each archive from its manifest, and an unreadable archive with the reason", async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), `${JSON.stringify({ logLevel: "info" })}\n`);
  await createTask(s, "keep me");
  const created = await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { backup: { keep: 3 } } }, s.token);
  assert.equal(created.status, 200, JSON.stringify(created.json));
  // The backup task has written its archive when it is done.
  const tasks = createClient(TasksService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }));
  let state: TaskState | undefined;
  for await (const msg of tasks.watchTask({ id: created.json.task.id }, { headers: { authorization: `Bearer ${s.token}` } })) state = msg.task?.state;
  assert.equal(state, TaskState.DONE);
  const backups = join(s.stateDir, "backups");
  const names = await readdir(backups);
  const scheduled = names.find((n) => /^scheduled-.*\.tar\.gz$/.test(n));
  assert.ok(scheduled, `no scheduled archive in ${names.join(", ")}`);
  await writeFile(join(backups, "copied-in.tar.gz"), "not a backup");
  const { utimes } = await import("node:fs/promises");
  await utimes(join(backups, "copied-in.tar.gz"), new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));

  const json = await cli(s, ["backup", "list", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout);
  assert.equal(doc.directory, backups);
  assert.deepEqual(
    doc.backups.map((b: Record<string, unknown>) => ({ name: b.name, origin: b.origin, sections: b.sections, caraVersion: b.caraVersion, error: b.error })),
    [
      { name: scheduled, origin: "task", sections: ["config", "tasks"], caraVersion: "0.1.0", error: null },
      { name: "copied-in.tar.gz", origin: "other", sections: [], caraVersion: null, error: "archive is not a gzip file (a cara backup is a .tar.gz)" },
    ],
  );
  assert.equal(doc.backups[1].createdAt, "2020-01-01T00:00:00.000Z");

  const human = await cli(s, ["backup", "list"]);
  assert.equal(human.code, 0, human.stderr);
  const lines = human.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +[\\d.]+ (B|KiB)  task         ${scheduled!.replaceAll(".", "\\.")}  config,tasks$`));
  assert.equal(
    lines[1],
    "2020-01-01T00:00:00.000Z        12 B  other        copied-in.tar.gz  unreadable: archive is not a gzip file (a cara backup is a .tar.gz)",
  );
  await s.stop();
});

test("backup check: ok on a new deployment; a restart 8 days after its first use without a backup warns; a backup clears it", async () => {
  const getStatus = async (s: CaraEndpoint) => (await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).json;
  const backupCheck = async (s: CaraEndpoint) => (await getStatus(s)).checks.find((c: { name: string }) => c.name === "backup");
  const ready = async (s: CaraEndpoint) =>
    (await fetch(`${s.baseUrl}/health/ready`, { headers: { authorization: `Bearer ${s.token}` } })).json() as Promise<{
      status: string;
      warnings: { name: string; message: string }[];
    }>;

  const s = await serveCara({ env });
  const todo = `run 'cara backup --output FILE', or schedule nightly backups into ${join(s.stateDir, "backups")}: cara schedule create --name nightly-backup --cron '0 3 * * *' --payload '{"kind":"backup","keep":7}'`;
  const check = await backupCheck(s);
  // The first check without any backup recorded when the deployment was first used.
  const firstUse = JSON.parse(await readFile(join(s.stateDir, "backups", "first-use.json"), "utf8")) as { atMs: number };
  assert.deepEqual(
    { status: check.status, message: check.message },
    {
      status: "CHECK_STATUS_OK",
      message: `no backup yet (deployment first used ${new Date(firstUse.atMs).toISOString()}; this check warns after 7 days without one): ${todo}`,
    },
  );
  assert.ok(Date.now() - firstUse.atMs < 60_000, "a new deployment was first used moments ago");
  assert.deepEqual(
    (await ready(s)).warnings.filter((w) => w.name === "backup"),
    [],
  );
  await s.stop();

  // The deployment has been in use for 8 days without a backup: the restart does not reset that.
  const eightDaysAgo = Date.now() - 8 * 86_400_000;
  await writeFile(join(s.stateDir, "backups", "first-use.json"), JSON.stringify({ atMs: eightDaysAgo }));
  const again = await serveCara({ stateDir: s.stateDir, env });
  const r = await ready(again);
  assert.equal(r.status, "ready", "a warning does not make the server unready");
  assert.deepEqual(
    r.warnings.filter((w) => w.name === "backup"),
    [
      {
        name: "backup",
        message: `no backup of this deployment since it was first used 8 days ago (${new Date(eightDaysAgo).toISOString()}), more than 7 days: ${todo}`,
      },
    ],
  );

  // A backup (here streamed to the CLI) clears it.
  const out = join(await tempDir(), "b.tar.gz");
  assert.equal((await cli(again, ["backup", "-o", out])).code, 0);
  // Health evaluations are shared for 500 ms: wait until one sees the backup.
  const after = await until("a health evaluation that saw the backup", async () => {
    const c = await backupCheck(again);
    return c.message.startsWith("no backup") ? undefined : c;
  });
  assert.equal(after.status, "CHECK_STATUS_OK");
  assert.match(after.message, /^last backup \d{4}-\d\d-\d\dT[\d:.]+Z \(streamed to a client\)$/);
  const status = await getStatus(again);
  assert.equal(status.backup.lastBackupPath, "(streamed to a client)");
  assert.deepEqual(
    (await ready(again)).warnings.filter((w) => w.name === "backup"),
    [],
  );
  await again.stop();
});

test("a backup whose task queue would not load is refused before the swap, online and offline; the server stays ready", async () => {
  const s = await serveCara({ env });
  await createTask(s, "keep");
  const before = await listTasks(s);
  const { gzipSync } = await import("node:zlib");
  const { backupBlocks, END, OTHER_SECRET } = await import("../backup/fixtures.js");
  // Hashes and HMAC check out (signed by another deployment), but the queue is not JSON.
  const file = join(await tempDir(), "unloadable.tar.gz");
  await writeFile(file, gzipSync(Buffer.concat([backupBlocks([{ path: "tasks/queue.json", content: "[{ not json" }], { secret: OTHER_SECRET }), END])));
  const online = await cli(s, ["restore", file, "--force", "--allow-foreign"]);
  assert.equal(online.code, 1);
  // (The JSON parser's own words differ between Node versions.)
  assert.match(
    online.stderr,
    /^Error: the backup's state would not load, so nothing was changed: task queue file tasks\/queue\.json is corrupt \(Expected property name or '\}' in JSON at position [^\n]*\)\n$/,
  );
  assert.deepEqual(await listTasks(s), before);
  const ready = await fetch(`${s.baseUrl}/health/ready`);
  assert.equal(ready.status, 200);
  assert.equal((await createTask(s, "still writable")).status, 200);
  const list = await cli(s, ["backup", "list", "--json"]);
  assert.equal(
    JSON.parse(list.stdout).backups.filter((b: { origin: string }) => b.origin === "pre-restore").length,
    0,
    "refused before the pre-restore backup",
  );
  const ids = await listTasks(s);
  await s.stop();

  const offline = await runCli(["restore", file, "--offline", "--force", "--allow-foreign", "--state-dir", s.stateDir], { env });
  assert.equal(offline.code, 1);
  assert.match(offline.stderr, /^Error: the backup's state would not load, so nothing was changed: task queue file tasks\/queue\.json is corrupt/);
  const again = await serveCara({ stateDir: s.stateDir, env });
  assert.deepEqual(await listTasks(again), ids);
  await again.stop();
});
