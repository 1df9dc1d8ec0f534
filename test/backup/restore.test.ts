import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { BackupManager, BackupPreconditionError } from "../../src/backup/backups.js";
import { tempDir } from "../helpers/cara.js";
import { LEGIT, SECRET, backupBlocks, END, streamOf } from "./fixtures.js";
import { gzipSync } from "node:zlib";

const writers = { holdWrites: <T>(fn: () => Promise<T>) => fn(), pause: async () => undefined, resume: async () => undefined };

test("one restore at a time: a second restore is refused while the first one runs", async () => {
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "backups"), { recursive: true });
  await writeFile(join(state, "config.json"), "{}\n");
  const manager = new BackupManager({ stateDir: state, backupsDir: join(state, "backups"), secret: SECRET, caraVersion: "0.1.0", writers });
  const archive = gzipSync(Buffer.concat([backupBlocks(LEGIT), END]));
  const slow = new PassThrough();
  const first = manager.restore(slow, { dryRun: true, force: false, allowForeign: false });
  const second = streamOf(archive);
  await assert.rejects(manager.restore(second, { dryRun: true, force: false, allowForeign: false }), (err: unknown) => {
    assert.ok(err instanceof BackupPreconditionError);
    assert.equal(err.message, "another restore is in progress; try again once it has finished");
    return true;
  });
  assert.equal(second.destroyed, true, "the refused upload is not read");
  slow.end(archive);
  const res = await first;
  assert.deepEqual(res.diffs.map((d) => [d.section, d.added, d.changed]), [
    ["config", [], ["config/config.json"]],
    ["tasks", ["tasks/queue.json"], []],
  ]);
  // Once it finished, the next one runs.
  assert.equal((await manager.restore(streamOf(archive), { dryRun: true, force: false, allowForeign: false })).dryRun, true);
});
