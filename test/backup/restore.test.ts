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
  assert.deepEqual(
    res.diffs.map((d) => [d.section, d.added, d.changed]),
    [
      ["config", [], ["config/config.json"]],
      ["tasks", ["tasks/queue.json"], []],
    ],
  );
  // Once it finished, the next one runs.
  assert.equal((await manager.restore(streamOf(archive), { dryRun: true, force: false, allowForeign: false })).dryRun, true);
});

test("a restored state that the live store cannot load is rolled back and the store reopens on the previous state", async () => {
  const { FileTaskStore } = await import("../../src/tasks/store.js");
  const { RestoreRolledBackError } = await import("../../src/backup/backups.js");
  const { readdir, readFile } = await import("node:fs/promises");
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "backups"), { recursive: true });
  await mkdir(join(state, "tasks"), { recursive: true });
  const store = await FileTaskStore.open({ dir: join(state, "tasks") });
  const { task } = await store.create({ payload: { kind: "systemEvent", text: "before" } } as Parameters<typeof store.create>[0]);
  const live = {
    holdWrites: <T>(fn: () => Promise<T>) => store.withWritesHeld(fn),
    pause: () => store.suspend("a restore is replacing the state; retry in a few seconds"),
    resume: () => store.reopen(),
  };
  // No checkRestored: the unloadable queue reaches the swap, as a check that missed something would.
  const manager = new BackupManager({ stateDir: state, backupsDir: join(state, "backups"), secret: SECRET, caraVersion: "0.1.0", writers: live });
  const archive = gzipSync(Buffer.concat([backupBlocks([{ path: "tasks/queue.json", content: "[{ not json" }]), END]));
  await assert.rejects(manager.restore(streamOf(archive), { dryRun: false, force: true, allowForeign: false }), (err: unknown) => {
    assert.ok(err instanceof RestoreRolledBackError);
    assert.match(
      err.message,
      /^the restored state failed to load \(task queue file .*\/tasks\/queue\.json is corrupt .*\); the previous state was put back and nothing was changed$/,
    );
    return true;
  });
  assert.equal(store.closedBecause, undefined, "the store serves again");
  assert.deepEqual(
    [...store.all()].map((t) => t.id),
    [task.id],
  );
  assert.equal((await store.create({ payload: { kind: "systemEvent", text: "after" } } as Parameters<typeof store.create>[0])).created, true);
  assert.deepEqual(
    (await readdir(state)).filter((n) => n.startsWith(".restore") || n === "restore-swap.json"),
    [],
    "no marker or holding dir left",
  );
  assert.notEqual(await readFile(join(state, "tasks", "queue.json"), "utf8").catch(() => ""), "[{ not json");
  await store.close();
});

test("while a restore holds the store, writes are refused with a retry hint and the runtime check fails", async () => {
  const { startTasks } = await import("../../src/tasks/runtime.js");
  const { TaskStoreWriteError } = await import("../../src/tasks/store.js");
  const pino = (await import("pino")).default;
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir);
  const tasks = await startTasks({ dir, config: {}, env: {}, logger: pino({ level: "silent" }) });
  await tasks.store.suspend("a restore is replacing the state; retry in a few seconds");
  await assert.rejects(
    tasks.store.create({ payload: { kind: "systemEvent", text: "x" } } as Parameters<typeof tasks.store.create>[0]),
    (err: unknown) => err instanceof TaskStoreWriteError && err.message === "a restore is replacing the state; retry in a few seconds",
  );
  assert.deepEqual(await tasks.check.run(), { status: "fail", message: "a restore is replacing the state; retry in a few seconds" });
  assert.deepEqual(tasks.storeHealth.loaded(), { ok: false, message: "a restore is replacing the state; retry in a few seconds" });
  await tasks.store.reopen();
  assert.equal((await tasks.check.run()).status, "warn", "open again (the worker was never started)");
  await tasks.close(0);
});
