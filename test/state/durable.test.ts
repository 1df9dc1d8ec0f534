import assert from "node:assert/strict";
import { readdir, readFile, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ensurePrivateDir, writeFileDurable } from "../../src/state/durable.js";
import { tempDir } from "../helpers/cara.js";

test("writeFileDurable writes the content with mode 0600 and leaves no temp file", async () => {
  const dir = await tempDir();
  const file = join(dir, "queue.json");
  await writeFileDurable(file, '{"a":1}');
  assert.equal(await readFile(file, "utf8"), '{"a":1}');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ["queue.json"]);
});

test("writeFileDurable replaces an existing file atomically and honours an explicit mode", async () => {
  const dir = await tempDir();
  const file = join(dir, "f");
  await writeFile(file, "old", { mode: 0o644 });
  await writeFileDurable(file, new Uint8Array([1, 2, 3]), { mode: 0o640 });
  assert.deepEqual([...(await readFile(file))], [1, 2, 3]);
  assert.equal((await stat(file)).mode & 0o777, 0o640);
  assert.deepEqual(await readdir(dir), ["f"]);
});

test("writeFileDurable fails without touching the target when the write cannot happen", async () => {
  const dir = await tempDir();
  await assert.rejects(writeFileDurable(join(dir, "missing-dir", "f"), "x"), { code: "ENOENT" });
  assert.deepEqual(await readdir(dir), []);
});

test("writeFileDurable replaces a symlink at the target instead of writing through it", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "victim"), "keep");
  await symlink(join(dir, "victim"), join(dir, "link"));
  await writeFileDurable(join(dir, "link"), "new");
  assert.equal(await readFile(join(dir, "victim"), "utf8"), "keep");
  assert.equal(await readFile(join(dir, "link"), "utf8"), "new");
});

test("ensurePrivateDir creates 0700 dirs, tightens loose ones and refuses symlinks", async () => {
  const dir = await tempDir();
  assert.equal(await ensurePrivateDir(join(dir, "a")), true);
  assert.equal((await stat(join(dir, "a"))).mode & 0o777, 0o700);
  await mkdir(join(dir, "b"), { mode: 0o755 });
  assert.equal(await ensurePrivateDir(join(dir, "b")), false);
  assert.equal((await stat(join(dir, "b"))).mode & 0o777, 0o700);
  await symlink(join(dir, "a"), join(dir, "c"));
  await assert.rejects(ensurePrivateDir(join(dir, "c")), /is a symbolic link/);
});
