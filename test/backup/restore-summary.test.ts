import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { configChanges, isCorruptCopy, taskChanges } from "../../src/backup/restore-summary.js";
import { tempDir } from "../helpers/cara.js";

const task = (id: string, state: string, attempts = 0) => ({
  id,
  state,
  attempts,
  nextRunAtMs: null,
  lastError: null,
  payload: { kind: "systemEvent", text: id },
  createdAtMs: 1,
  updatedAtMs: 1,
  policy: {},
});

test("config changes are leaf key paths, sorted, with exact counts and no values; a missing file has no keys", async () => {
  const dir = await tempDir();
  await writeFile(
    join(dir, "live.json"),
    JSON.stringify({ logLevel: "debug", agent: { model: "m", baseUrl: "http://user:pw@h" }, update: { retryDelaysMs: [1, 2] } }),
  );
  await writeFile(
    join(dir, "backup.json"),
    JSON.stringify({ logLevel: "info", agent: { model: "m" }, update: { retryDelaysMs: [1, 3] }, tasks: { concurrency: 2 } }),
  );
  const c = await configChanges(join(dir, "live.json"), join(dir, "backup.json"));
  assert.deepEqual(c, {
    added: ["tasks.concurrency"],
    removed: ["agent.baseUrl"],
    changed: ["logLevel", "update.retryDelaysMs"],
    addedCount: 1,
    removedCount: 1,
    changedCount: 2,
  });
  assert.doesNotMatch(JSON.stringify(c), /pw|debug|info/);
  const fresh = await configChanges(join(dir, "none.json"), join(dir, "backup.json"));
  assert.deepEqual(fresh.added, ["logLevel", "agent.model", "tasks.concurrency", "update.retryDelaysMs"].sort());
});

test("task changes list at most 20 ids each with exact counts and per-state counts; an unreadable live queue is said so", async () => {
  const dir = await tempDir();
  const live = join(dir, "live");
  const staged = join(dir, "staged");
  await mkdir(live);
  await mkdir(staged);
  const ids = Array.from({ length: 25 }, (_, i) => `t${String(i).padStart(2, "0")}`);
  await writeFile(join(live, "queue.json"), JSON.stringify([task("keep", "queued"), task("moved", "queued")]));
  await writeFile(join(staged, "queue.json"), JSON.stringify([task("keep", "queued"), task("moved", "done", 1), ...ids.map((id) => task(id, "failed"))]));
  const t = await taskChanges(live, staged);
  assert.deepEqual(t, {
    added: ids.slice(0, 20),
    removed: [],
    changed: ["moved"],
    addedCount: 25,
    removedCount: 0,
    changedCount: 1,
    unchangedCount: 1,
    states: [
      { state: "queued", before: 2, after: 1 },
      { state: "done", before: 0, after: 1 },
      { state: "failed", before: 0, after: 25 },
    ],
    currentUnreadable: false,
  });
  await writeFile(join(live, "queue.json"), "[{ corrupt");
  const unreadable = await taskChanges(live, staged);
  assert.equal(unreadable?.currentUnreadable, true);
  assert.equal(unreadable?.addedCount, 27);
  await writeFile(join(staged, "queue.json"), "not json");
  assert.equal(await taskChanges(live, staged), undefined, "a staged queue that does not load has no summary (the load check refuses it)");
  assert.deepEqual(["queue.json.corrupt.1767225600000", "queue.json", "queue.json.corrupt.x"].map(isCorruptCopy), [true, false, false]);
});
