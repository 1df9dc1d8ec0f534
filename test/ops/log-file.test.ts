import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, stat, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { RotatingLogFile } from "../../src/ops/log-file.js";
import { tempDir } from "../helpers/cara.js";

const line = (i: number) => `{"n":${String(i).padStart(6, "0")},"msg":"${"x".repeat(78)}"}\n`; // 100 bytes

test("creates <dir>/cara.log with mode 0600 (directory 0700) and appends", async () => {
  const dir = join(await tempDir(), "logs");
  const file = new RotatingLogFile({ path: join(dir, "cara.log") });
  file.write(line(1));
  file.write(line(2));
  assert.equal(file.size, 200, "pending bytes count");
  file.flush();
  assert.equal(await readFile(join(dir, "cara.log"), "utf8"), line(1) + line(2));
  assert.equal((await stat(join(dir, "cara.log"))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  file.close();
  const again = new RotatingLogFile({ path: join(dir, "cara.log") });
  assert.equal(again.status().size, 200, "an existing file is appended to");
  again.close();
});

test("an existing file with a loose mode is tightened to 0600", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "cara.log"), "old\n", { mode: 0o644 });
  await chmod(join(dir, "cara.log"), 0o644);
  const file = new RotatingLogFile({ path: join(dir, "cara.log") });
  assert.equal((await stat(join(dir, "cara.log"))).mode & 0o777, 0o600);
  file.close();
});

test("rotates at the size limit, keeps N files of at most maxBytes, and keeps writing", async () => {
  const dir = await tempDir();
  const path = join(dir, "cara.log");
  const file = new RotatingLogFile({ path, maxBytes: 1024, maxFiles: 3, flushBytes: 250 });
  for (let i = 1; i <= 100; i++) file.write(line(i)); // 10,000 bytes: 10 lines per file
  file.flush();
  assert.deepEqual((await readdir(dir)).sort(), ["cara.log", "cara.log.1", "cara.log.2"]);
  const current = await readFile(path, "utf8");
  const r1 = await readFile(`${path}.1`, "utf8");
  const r2 = await readFile(`${path}.2`, "utf8");
  for (const text of [current, r1, r2]) assert.ok(Buffer.byteLength(text) <= 1024);
  assert.equal(r2 + r1 + current, Array.from({ length: 30 }, (_, i) => line(71 + i)).join(""), "whole lines, in order, newest in cara.log");
  assert.equal(file.status().rotations, 9);
  for (const name of ["cara.log.1", "cara.log.2"]) assert.equal((await stat(join(dir, name))).mode & 0o777, 0o600);
  file.write(line(101));
  file.close();
  assert.ok((await readFile(path, "utf8")).endsWith(line(101)));
});

test("a line longer than a whole file is written alone into a fresh file", async () => {
  const dir = await tempDir();
  const path = join(dir, "cara.log");
  const file = new RotatingLogFile({ path, maxBytes: 1024, maxFiles: 5 });
  file.write(line(1));
  const big = `${"y".repeat(2000)}\n`;
  file.write(big);
  file.write(line(2));
  file.close();
  assert.equal(await readFile(`${path}.2`, "utf8"), line(1));
  assert.equal(await readFile(`${path}.1`, "utf8"), big);
  assert.equal(await readFile(path, "utf8"), line(2));
});

test("rotated files beyond maxFiles left by a larger setting are removed", async () => {
  const dir = await tempDir();
  for (const n of [1, 2, 3, 7]) await writeFile(join(dir, `cara.log.${n}`), "old\n");
  await writeFile(join(dir, "cara.log.bak"), "keep\n");
  const file = new RotatingLogFile({ path: join(dir, "cara.log"), maxFiles: 2 });
  file.close();
  assert.deepEqual((await readdir(dir)).sort(), ["cara.log", "cara.log.1", "cara.log.bak"]);
});

test("an unwritable log directory is reported, lines are dropped, and writing resumes after it is fixed", async () => {
  const root = await tempDir();
  const dir = join(root, "logs");
  await writeFile(dir, "not a directory"); // works even as root, unlike chmod
  let clock = 1_000;
  const changes: [string | null, number][] = [];
  const file = new RotatingLogFile({
    path: join(dir, "cara.log"),
    retryMs: 5_000,
    now: () => clock,
    onStateChange: (err, dropped) => changes.push([err ? ((err as NodeJS.ErrnoException).code ?? err.message) : null, dropped]),
  });
  assert.equal(file.status().writable, false);
  assert.match(file.status().error ?? "", /EEXIST|ENOTDIR/);
  file.write(line(1));
  file.write(line(2));
  file.flush();
  assert.equal(file.status().droppedLines, 2);

  await rm(dir);
  await mkdir(dir);
  file.write(line(3));
  file.flush();
  assert.equal(file.status().droppedLines, 3, "still waiting for the retry time");
  clock += 5_000;
  file.write(line(4));
  file.flush();
  const status = file.status();
  assert.equal(status.writable, true);
  assert.equal(status.error, null);
  assert.equal(await readFile(join(dir, "cara.log"), "utf8"), line(4));
  assert.deepEqual(
    changes.map(([, d]) => d),
    [0, 3],
  );
  assert.equal(changes[1]?.[0], null);
  file.close();
});

test("a log file deleted from outside is recreated", async () => {
  const dir = await tempDir();
  const path = join(dir, "cara.log");
  let clock = 0;
  const file = new RotatingLogFile({ path, now: () => clock });
  file.write(line(1));
  file.flush();
  await rm(path);
  clock += 10_000;
  file.write(line(2));
  file.close();
  assert.equal(await readFile(path, "utf8"), line(2));
});
