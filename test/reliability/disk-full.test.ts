// Disk full, for real: the state dir lives on a small tmpfs (mounted here, so root only). Creates
// fail with a clear error once it is full, nothing acknowledged is lost across SIGKILL, the
// server recovers when space is freed, and backup, restore and start say what to free.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { tally } from "./support.js";

const SECRET = "reliability-disk-full-secret-0123456789abcdef";
const env = { CARAPACE_SERVER_SECRET: SECRET };

function canMount(): string | false {
  if (process.platform !== "linux") return "needs Linux (tmpfs)";
  if (process.getuid?.() !== 0) return "needs root to mount a small tmpfs (run as root, as .ci/run does)";
  return false;
}

/** A fresh tmpfs of this size, unmounted when the test ends (before the temp dirs are removed). */
async function smallFs(t: TestContext, sizeKiB: number): Promise<string> {
  const dir = join(await tempDir("cara-diskfull-"), "fs");
  await mkdir(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeKiB}k,mode=0700`, "tmpfs", dir]);
  t.after(() => execFileSync("umount", ["-l", dir]));
  return dir;
}

const resize = (dir: string, sizeKiB: number) => execFileSync("mount", ["-o", `remount,size=${sizeKiB}k`, dir]);

/** Fills the filesystem with a ballast file (until ENOSPC); returns its path. */
async function fill(dir: string, name = "ballast"): Promise<string> {
  const path = join(dir, name);
  try {
    execFileSync("dd", ["if=/dev/zero", `of=${path}`, "bs=4k"], { stdio: "ignore" });
  } catch {
    // dd stops with ENOSPC: that is the point
  }
  return path;
}

async function ids(s: CaraServer): Promise<Set<string>> {
  const out = new Set<string>();
  for (let token = ""; ; ) {
    const page = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000, pageToken: token }, s.token);
    assert.equal(page.status, 200, JSON.stringify(page.json));
    for (const t of page.json.tasks ?? []) out.add(t.id);
    token = page.json.nextPageToken ?? "";
    if (!token) return out;
  }
}

const create = (s: CaraServer, i: number) =>
  connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text: `task ${i} ${"x".repeat(200)}` } }, nextRunAtMs: String(Date.now() + 3_600_000) },
    s.token,
  );

test("task store: creates fail clearly when the disk is full; nothing acknowledged is lost across SIGKILL; it recovers when space is freed", {
  skip: canMount(),
}, async (t) => {
  const fs = await smallFs(t, 2048);
  const stateDir = join(fs, "state");
  let s = await startCara({ stateDir, env });
  const acked: string[] = [];
  let refusal: { status: number; json: { code: string; message: string } } | undefined;
  for (let i = 0; !refusal; i += 8) {
    const batch = await Promise.all(Array.from({ length: 8 }, (_, j) => create(s, i + j)));
    for (const r of batch) {
      if (r.status === 200) acked.push(r.json.task.id);
      else refusal ??= r;
    }
  }
  assert.equal(refusal.status, 429);
  assert.equal(refusal.json.code, "resource_exhausted");
  assert.match(
    refusal.json.message,
    new RegExp(
      `^task store write to ${stateDir}/tasks/queue\\.journal failed: the filesystem is full \\(ENOSPC\\); nothing was changed\\. Free space on it \\(or raise the quota\\), then retry$`,
    ),
  );
  // Near full: a smaller write may still fit; each create is either acknowledged or refused the same way.
  for (let i = 0; i < 20; i++) {
    const r = await create(s, -1 - i);
    if (r.status === 200) acked.push(r.json.task.id);
    else assert.deepEqual([r.status, r.json.code], [429, "resource_exhausted"]);
  }
  assert.ok(acked.length > 100, `${acked.length} creates were acknowledged before the disk filled`);
  s.proc.kill("SIGKILL");
  await s.exited;

  resize(fs, 8192);
  s = await startCara({ stateDir, env });
  const afterGrow = await ids(s);
  const lost1 = acked.filter((id) => !afterGrow.has(id));
  assert.deepEqual(lost1, [], `acknowledged before the disk filled, lost after SIGKILL: ${lost1.length}`);
  for (let i = 0; i < 100; i++) {
    const r = await create(s, 10_000 + i);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    acked.push(r.json.task.id);
  }
  s.proc.kill("SIGKILL");
  await s.exited;
  s = await startCara({ stateDir, env });
  const final = await ids(s);
  const lost2 = acked.filter((id) => !final.has(id));
  assert.deepEqual(lost2, []);
  await s.stop();
  await tally("disk full: task store", {
    tried: acked.length,
    held: acked.length - lost2.length,
    unit: "acknowledged creates across a full disk, SIGKILL and regrowth",
  });
});

test("start, backup and restore on a full disk say which path and what to free, leave nothing behind, and work once space is freed", {
  skip: canMount(),
}, async (t) => {
  const fs = await smallFs(t, 4096);
  const stateDir = join(fs, "state");
  // Backups go to another filesystem, which is full (the state dir has room for the snapshot).
  const outFs = await smallFs(t, 256);
  let s = await startCara({ stateDir, env });
  for (let i = 0; i < 50; i++) assert.equal((await create(s, i)).status, 200);
  const before = await ids(s);
  const outside = join(await tempDir(), "good.tar.gz");
  assert.equal((await runCara(["backup", "-o", outside, "--port", String(s.port), "--state-dir", stateDir], { env })).code, 0);
  let tried = 0;
  let held = 0;

  // cara backup -o onto a full filesystem.
  const outBallast = await fill(outFs);
  const out = join(outFs, "b.tar.gz");
  const backup = await runCara(["backup", "-o", out, "--port", String(s.port), "--state-dir", stateDir], { env });
  tried++;
  assert.equal(backup.code, 1);
  assert.match(
    backup.stderr,
    new RegExp(
      `^Error: cannot write ${out}: the filesystem is full \\(ENOSPC writing ${out}, \\d+(\\.\\d)? (B|KiB) free\\)\\. Free space on that filesystem \\(see 'df -h ${outFs}'\\), then try again, or choose another --output\\. Nothing was written\\n$`,
    ),
  );
  assert.deepEqual((await readdir(outFs)).sort(), ["ballast"], "no partial archive left");
  held++;

  // A backup when the state dir's own filesystem is full (no room for the snapshot).
  const ballast = await fill(fs);
  const full = await runCara(["backup", "-o", join(await tempDir(), "x.tar.gz"), "--port", String(s.port), "--state-dir", stateDir], { env });
  tried++;
  assert.equal(full.code, 1);
  assert.match(
    full.stderr,
    new RegExp(
      `^Error: carapace at 127.0.0.1:\\d+ refused the call: backup failed: the filesystem is full \\(ENOSPC writing ${stateDir}/backups/[^,]+, \\d+(\\.\\d)? (B|KiB) free\\)\\. Free space on that filesystem`,
    ),
  );
  assert.deepEqual(
    (await readdir(join(stateDir, "backups"))).filter((n) => n.startsWith(".snapshot")),
    [],
    "no snapshot left",
  );
  held++;

  // A restore on the full disk fails before anything changes.
  const restore = await runCara(["restore", outside, "--force", "--port", String(s.port), "--state-dir", stateDir], { env });
  tried++;
  assert.equal(restore.code, 1);
  assert.match(restore.stderr, /free space on the state dir.s filesystem/);
  assert.deepEqual(await ids(s), before);
  assert.deepEqual(
    (await readdir(stateDir)).filter((n) => n.startsWith(".restore")),
    [],
    "no staging left",
  );
  held++;

  // Start on the full disk: refused with the path and the way out, no empty lock temp file left.
  s.proc.kill("SIGKILL");
  await s.exited;
  await rm(join(stateDir, "cara.lock"), { force: true });
  const ballast2 = await fill(fs, "ballast2");
  const start = await runCara(["start", "--port", "0", "--state-dir", stateDir], { env });
  tried++;
  assert.equal(start.code, 1);
  assert.match(
    start.stderr,
    new RegExp(
      `^Error: cannot start: the filesystem is full \\(ENOSPC writing ${stateDir}/[^ ]+, \\d+(\\.\\d)? (B|KiB) free\\)\\. Free space on that filesystem \\(see 'df -h ${stateDir}[^']*'\\), then try again\\n$`,
    ),
  );
  assert.deepEqual(
    (await readdir(stateDir)).filter((n) => n.startsWith(".cara.lock") || n === "cara.lock"),
    [],
  );
  held++;

  // Space freed: everything works again.
  await rm(ballast);
  await rm(ballast2);
  s = await startCara({ stateDir, env });
  assert.deepEqual(await ids(s), before);
  const again = await runCara(["restore", outside, "--force", "--port", String(s.port), "--state-dir", stateDir], { env });
  assert.equal(again.code, 0, again.stderr);
  await rm(outBallast);
  const backup2 = await runCara(["backup", "-o", out, "--port", String(s.port), "--state-dir", stateDir], { env });
  assert.equal(backup2.code, 0, backup2.stderr);
  assert.ok((await stat(out)).size > 0);
  await s.stop();
  await tally("disk full: backup, restore, start", { tried, held, unit: "operations refused with the path named and nothing left behind" });
});
