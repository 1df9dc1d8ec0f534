import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { finishSwap, MARKER_NAME, recoverInterruptedSwap, rollBackSwap, swapIntoPlace } from "../../src/backup/swap.js";
import { tempDir } from "../helpers/cara.js";

/** A state dir with old sections, and a staging dir with new ones (config.json new, sessions new, cron removed). */
async function setup() {
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "tasks"), { recursive: true });
  await mkdir(join(state, "cron"), { recursive: true });
  await writeFile(join(state, "tasks", "queue.json"), "old-queue");
  await writeFile(join(state, "cron", "jobs.json"), "old-cron");
  await writeFile(join(state, "config.json"), "old-config");
  const staged = join(state, ".restore-staged");
  await mkdir(join(staged, "tasks"), { recursive: true });
  await mkdir(join(staged, "sessions"), { recursive: true });
  await writeFile(join(staged, "tasks", "queue.json"), "new-queue");
  await writeFile(join(staged, "sessions", "a.json"), "new-session");
  await writeFile(join(staged, "config.json"), "new-config");
  return { state, staged, holding: join(state, ".restore-holding"), entries: ["config.json", "cron", "sessions", "tasks"] };
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile())
      out[join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length)] = await readFile(
        join(e.parentPath ?? (e as unknown as { path: string }).path, e.name),
        "utf8",
      );
  }
  return out;
}

const OLD = { "/tasks/queue.json": "old-queue", "/cron/jobs.json": "old-cron", "/config.json": "old-config" };
const NEW = { "/tasks/queue.json": "new-queue", "/sessions/a.json": "new-session", "/config.json": "new-config" };

test("a completed swap leaves exactly the new sections and no leftovers", async () => {
  const { state, staged, holding, entries } = await setup();
  const marker = await swapIntoPlace(state, staged, holding, entries);
  assert.equal(marker.phase, "swapped");
  await finishSwap(state, marker);
  assert.deepEqual(await snapshot(state), NEW);
  assert.deepEqual((await readdir(state)).sort(), ["config.json", "sessions", "tasks"]);
});

test("a swapped state that fails to load is rolled back; a crash during that rollback still ends in the old state", async () => {
  const { state, staged, holding, entries } = await setup();
  const marker = await swapIntoPlace(state, staged, holding, entries);
  await rollBackSwap(state, marker);
  assert.deepEqual(await snapshot(state), OLD);
  assert.deepEqual((await readdir(state)).sort(), ["config.json", "cron", "tasks"]);

  // Crash right after the rollback was recorded: the next start finishes it.
  const b = await setup();
  const m = await swapIntoPlace(b.state, b.staged, b.holding, b.entries);
  await writeFile(join(b.state, MARKER_NAME), JSON.stringify({ ...m, phase: "rolling-back" }));
  assert.equal(await recoverInterruptedSwap(b.state), "rolled-back");
  assert.deepEqual(await snapshot(b.state), OLD);
});

test("a crash after any step of the swap is rolled back to exactly the old state", async () => {
  for (let crashAt = 0; crashAt < 4; crashAt++) {
    const { state, staged, holding, entries } = await setup();
    let step = 0;
    await assert.rejects(
      swapIntoPlace(state, staged, holding, entries, async () => {
        if (step++ === crashAt) throw new Error("crash");
      }),
      /crash/,
    );
    assert.equal(await recoverInterruptedSwap(state), "rolled-back");
    assert.deepEqual(await snapshot(state), OLD, `crash after step ${crashAt}`);
  }
});

test("a crash before anything moved, and a crash after the swap completed (marker left), recover cleanly", async () => {
  const a = await setup();
  await mkdir(a.holding);
  await writeFile(
    join(a.state, MARKER_NAME),
    JSON.stringify({ phase: "swapping", holding: a.holding, staged: a.staged, entries: a.entries, present: ["config.json", "sessions", "tasks"] }),
  );
  assert.equal(await recoverInterruptedSwap(a.state), "rolled-back");
  assert.deepEqual(await snapshot(a.state), OLD);

  const b = await setup();
  await swapIntoPlace(b.state, b.staged, b.holding, b.entries);
  await writeFile(join(b.holding, "left.json"), "old");
  assert.equal(await recoverInterruptedSwap(b.state), "rolled-forward");
  assert.deepEqual(await snapshot(b.state), NEW);
  assert.equal(await recoverInterruptedSwap(b.state), "none");
});

test("recovery removes what a killed restore or backup left behind, but keeps a holding dir with content", async () => {
  const { state } = await setup();
  const put = async (rel: string, content = "x") => {
    await mkdir(join(state, rel, ".."), { recursive: true });
    await writeFile(join(state, rel), content);
  };
  await put(".restore-staging-0a1b2c3d/tasks/queue.json");
  await put(".restore-ready-0a1b2c3d/config.json");
  await mkdir(join(state, ".restore-holding-0a1b2c3d"));
  await put(".restore-holding-99aa88bb/tasks/queue.json", "only copy");
  await put("backups/.snapshot-1234abcd/tasks__queue.json");
  await put("backups/scheduled-20260101T000000Z-ab12.tar.gz.partial");
  await put("backups/scheduled-20260101T000000Z-ab12.tar.gz", "archive");
  await put(".restore-staging-notes.txt", "not ours");
  assert.equal(await recoverInterruptedSwap(state), "none");
  assert.deepEqual(await snapshot(state), {
    ...OLD,
    "/.restore-holding-99aa88bb/tasks/queue.json": "only copy",
    "/.restore-staged/config.json": "new-config",
    "/.restore-staged/sessions/a.json": "new-session",
    "/.restore-staged/tasks/queue.json": "new-queue",
    "/backups/scheduled-20260101T000000Z-ab12.tar.gz": "archive",
    "/.restore-staging-notes.txt": "not ours",
  });
  assert.deepEqual(
    (await readdir(state)).filter((n) => n.startsWith(".restore-holding")),
    [".restore-holding-99aa88bb"],
  );

  // Called by a failed restore (other operations may be running): leftovers are not touched.
  await put(".restore-staging-feedbeef/x");
  assert.equal(await recoverInterruptedSwap(state, { removeLeftovers: false }), "none");
  assert.ok((await readdir(state)).includes(".restore-staging-feedbeef"));
});

test("a marker that is not JSON is reported as damaged, naming the way out", async () => {
  const { state } = await setup();
  await writeFile(join(state, MARKER_NAME), "{ half a mark");
  await assert.rejects(recoverInterruptedSwap(state), {
    message: `restore marker ${join(state, MARKER_NAME)} is damaged; inspect ${state} by hand (the previous state may be in a .restore-* directory), then remove the marker`,
  });
});
