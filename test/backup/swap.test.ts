import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { MARKER_NAME, recoverInterruptedSwap, swapIntoPlace } from "../../src/backup/swap.js";
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
    if (e.isFile()) out[join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length)] = await readFile(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name), "utf8");
  }
  return out;
}

const OLD = { "/tasks/queue.json": "old-queue", "/cron/jobs.json": "old-cron", "/config.json": "old-config" };
const NEW = { "/tasks/queue.json": "new-queue", "/sessions/a.json": "new-session", "/config.json": "new-config" };

test("a completed swap leaves exactly the new sections and no leftovers", async () => {
  const { state, staged, holding, entries } = await setup();
  await swapIntoPlace(state, staged, holding, entries);
  assert.deepEqual(await snapshot(state), NEW);
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
  await writeFile(join(a.state, MARKER_NAME), JSON.stringify({ phase: "swapping", holding: a.holding, staged: a.staged, entries: a.entries, present: ["config.json", "sessions", "tasks"] }));
  assert.equal(await recoverInterruptedSwap(a.state), "rolled-back");
  assert.deepEqual(await snapshot(a.state), OLD);

  const b = await setup();
  await swapIntoPlace(b.state, b.staged, b.holding, b.entries);
  await mkdir(b.holding);
  await writeFile(join(b.holding, "left.json"), "old");
  await writeFile(join(b.state, MARKER_NAME), JSON.stringify({ phase: "swapped", holding: b.holding, staged: b.staged, entries: b.entries, present: [] }));
  assert.equal(await recoverInterruptedSwap(b.state), "rolled-forward");
  assert.deepEqual(await snapshot(b.state), NEW);
  assert.equal(await recoverInterruptedSwap(b.state), "none");
});
