import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { acquireStateLock } from "../../src/state/lock.js";
import { clearServerAddress, liveServerAddress, localHostFor, recordServerAddress } from "../../src/state/server-address.js";
import { tempDir } from "../helpers/cara.js";

const address = { pid: process.pid, url: "http://127.0.0.1:18800", bind: "127.0.0.1", port: 18800, tls: false, startedAt: "2026-12-05T00:00:00.000Z" };

test("the listening address beside the lock is trusted only while the lock names that live pid", async () => {
  const dir = await tempDir();
  await recordServerAddress(dir, address);
  assert.equal(await liveServerAddress(dir), undefined, "no lock: a leftover record is ignored");
  const lock = await acquireStateLock(dir);
  assert.deepEqual(await liveServerAddress(dir), address);
  await writeFile(join(dir, "cara.address"), JSON.stringify({ ...address, pid: 999_999_999 }));
  assert.equal(await liveServerAddress(dir), undefined, "a record of another pid is ignored");
  await recordServerAddress(dir, address);
  await clearServerAddress(dir);
  assert.equal(await liveServerAddress(dir), undefined);
  assert.ok(!(await readdir(dir)).includes("cara.address"));
  await lock.release();
  assert.equal(localHostFor("0.0.0.0"), "127.0.0.1");
  assert.equal(localHostFor("::"), "::1");
  assert.equal(localHostFor("10.1.2.3"), "10.1.2.3");
});
