import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { acquireStateLock, LockHeldError, lockOwner } from "../../src/state/lock.js";
import { tempDir } from "../helpers/cara.js";

/** A pid that certainly belongs to no process: one that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(child.stdout);
}

test("the lock records the owner's pid and a second acquire is refused while it is held", async () => {
  const dir = await tempDir();
  const lock = await acquireStateLock(dir);
  assert.equal((await readFile(join(dir, "cara.lock"), "utf8")).trim(), String(process.pid));
  assert.equal(await lockOwner(dir), process.pid);
  await assert.rejects(acquireStateLock(dir), (err: unknown) => {
    assert.ok(err instanceof LockHeldError);
    assert.equal(err.message, `another cara server (pid ${process.pid}) is using ${dir}`);
    return true;
  });
  await lock.release();
  assert.deepEqual(await readdir(dir), []);
  const again = await acquireStateLock(dir);
  await again.release();
});

test("a lock left by a dead process is taken over", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "cara.lock"), `${deadPid()}\n`);
  const lock = await acquireStateLock(dir);
  assert.equal((await readFile(join(dir, "cara.lock"), "utf8")).trim(), String(process.pid));
  await lock.release();
  assert.deepEqual(await readdir(dir), []);
});

test("a garbage lock file is taken over", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "cara.lock"), "not a pid");
  const lock = await acquireStateLock(dir);
  assert.equal(await lockOwner(dir), process.pid);
  await lock.release();
});
