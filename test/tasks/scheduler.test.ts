// The scheduler over real stores in a temp dir, with a clock the test moves.
import assert from "node:assert/strict";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { BackupManager } from "../../src/backup/backups.js";
import { backupTaskExecutor } from "../../src/backup/status.js";
import { DEFAULT_POLICY } from "../../src/tasks/model.js";
import { ScheduleStore } from "../../src/tasks/schedule-store.js";
import type { ScheduleRecord } from "../../src/tasks/schedule.js";
import { Scheduler } from "../../src/tasks/scheduler.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { Worker } from "../../src/tasks/worker.js";
import { tempDir } from "../helpers/cara.js";

const at = (s: string) => Date.parse(s);

function nightly(init: Partial<ScheduleRecord> = {}): ScheduleRecord {
  const created = at("2026-01-01T12:00:00Z");
  return {
    id: "nightly-1",
    name: "nightly",
    cron: "0 3 * * *",
    timezone: "UTC",
    template: { payload: { kind: "systemEvent", text: "nightly" }, policy: { ...DEFAULT_POLICY } },
    enabled: true,
    overlap: "allow",
    createdAtMs: created,
    updatedAtMs: created,
    anchorMs: created,
    missedRuns: 0,
    ...init,
  };
}

async function world(clock: { now: number }) {
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir, { recursive: true });
  const open = async () => {
    const tasks = await FileTaskStore.open({ dir, now: () => clock.now, retentionMs: 0 });
    const schedules = await ScheduleStore.open(dir);
    return { tasks, schedules };
  };
  return { dir, open };
}

test("exactly one task per due time, even when the server dies between creating it and recording the run", async () => {
  const clock = { now: at("2026-01-02T03:00:00Z") };
  const w = await world(clock);
  let { tasks, schedules } = await w.open();
  await schedules.create(nightly());
  // "Crash" right after the task is durable, before the schedule records the run.
  const crashing = new Scheduler(schedules, tasks, {
    now: () => clock.now,
    afterCreate: async () => {
      throw new Error("killed");
    },
  });
  await crashing.tick().catch(() => undefined);
  assert.equal(tasks.size, 1);
  assert.equal(schedules.get("nightly-1").lastRun, undefined, "the run was not recorded");
  await tasks.close();
  ({ tasks, schedules } = await w.open());
  const scheduler = new Scheduler(schedules, tasks, { now: () => clock.now });
  await scheduler.tick();
  assert.equal(tasks.size, 1, "the restart found the task by its key and created no second one");
  const s = schedules.get("nightly-1");
  assert.equal(s.lastRun?.outcome, "created");
  assert.equal(s.lastRun?.taskId, [...tasks.all()][0]!.id);
  assert.equal(new Date(s.anchorMs).toISOString(), "2026-01-02T03:00:00.000Z");
  // The same due time again: nothing.
  await scheduler.tick();
  assert.equal(tasks.size, 1);
  // Next day: one more.
  clock.now = at("2026-01-03T03:00:05Z");
  await scheduler.tick();
  assert.equal(tasks.size, 2);
  assert.deepEqual([...tasks.all()].map((t) => t.idempotencyKey).sort(), [
    "schedule:nightly-1:2026-01-02T03:00:00.000Z",
    "schedule:nightly-1:2026-01-03T03:00:00.000Z",
  ]);
  assert.deepEqual(
    [...tasks.all()].map((t) => t.labels?.schedule),
    ["nightly-1", "nightly-1"],
  );
  await tasks.close();
});

test("after downtime across several due times: one catch-up run, the others recorded as missed", async () => {
  const clock = { now: at("2026-01-02T03:00:00Z") };
  const w = await world(clock);
  const { tasks, schedules } = await w.open();
  await schedules.create(nightly());
  const scheduler = new Scheduler(schedules, tasks, { now: () => clock.now });
  await scheduler.tick();
  clock.now = at("2026-01-06T09:00:00Z"); // down from the 2nd to the 6th
  await scheduler.tick();
  assert.equal(tasks.size, 2, "one catch-up run, not four");
  const s = schedules.get("nightly-1");
  assert.equal(s.missedRuns, 3);
  assert.deepEqual(s.lastMissed, { count: 3, fromMs: at("2026-01-03T03:00:00Z"), toMs: at("2026-01-05T03:00:00Z") });
  assert.equal(new Date(s.lastRun!.dueAtMs).toISOString(), "2026-01-06T03:00:00.000Z");
  await tasks.close();
});

test("overlap skip: no new run while the previous one is still queued or running; allow runs anyway", async () => {
  const clock = { now: at("2026-01-02T03:00:00Z") };
  const w = await world(clock);
  const { tasks, schedules } = await w.open();
  await schedules.create(nightly({ overlap: "skip" }));
  await schedules.create(nightly({ id: "hourly-1", name: "hourly", cron: "@hourly", overlap: "allow" }));
  const scheduler = new Scheduler(schedules, tasks, { now: () => clock.now });
  await scheduler.tick();
  assert.equal(tasks.size, 2);
  clock.now = at("2026-01-03T03:00:00Z"); // yesterday's tasks are still queued (no worker here)
  await scheduler.tick();
  const skip = schedules.get("nightly-1");
  assert.equal(skip.lastRun?.outcome, "skipped_overlap");
  assert.equal(skip.lastRun?.taskId, [...tasks.all()].find((t) => t.labels?.schedule === "nightly-1")!.id);
  assert.equal(schedules.get("hourly-1").lastRun?.outcome, "created");
  assert.equal([...tasks.all()].filter((t) => t.labels?.schedule === "nightly-1").length, 1);
  // Once the previous run is finished, the next due time runs.
  const previous = skip.lastRun!.taskId!;
  await tasks.update(previous, (t) => ({ ...t, state: "done", finishedAtMs: clock.now }));
  clock.now = at("2026-01-04T03:00:00Z");
  await scheduler.tick();
  assert.equal(schedules.get("nightly-1").lastRun?.outcome, "created");
  assert.equal([...tasks.all()].filter((t) => t.labels?.schedule === "nightly-1").length, 2);
  await tasks.close();
});

test("a nightly backup schedule writes one archive per night and keeps the newest `keep`", async () => {
  const clock = { now: at("2026-03-01T02:59:00Z") };
  const root = join(await tempDir(), "state");
  const tasksDir = join(root, "tasks");
  await mkdir(tasksDir, { recursive: true });
  await mkdir(join(root, "backups"), { recursive: true });
  const tasks = await FileTaskStore.open({ dir: tasksDir, retentionMs: 0 });
  const schedules = await ScheduleStore.open(tasksDir);
  const backups = new BackupManager({
    stateDir: root,
    backupsDir: join(root, "backups"),
    secret: "schedule-test-secret-0123456789abcdefghijkl",
    caraVersion: "0.1.0",
    writers: { holdWrites: (fn) => tasks.withWritesHeld(fn), pause: async () => undefined, resume: async () => undefined },
    now: () => clock.now,
  });
  const worker = new Worker(tasks, { backup: backupTaskExecutor(backups) }, { concurrency: 1, pollMs: 20 });
  worker.start();
  await schedules.create(
    nightly({
      overlap: "skip",
      createdAtMs: at("2026-03-01T00:00:00Z"),
      anchorMs: at("2026-03-01T00:00:00Z"),
      template: { payload: { kind: "backup", keep: 2 }, policy: { ...DEFAULT_POLICY } },
    }),
  );
  const scheduler = new Scheduler(schedules, tasks, { now: () => clock.now });
  const nightDone = async () => {
    for (;;) {
      const runs = [...tasks.all()];
      if (runs.length > 0 && runs.every((t) => t.state === "done")) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const archives = async () => (await readdir(join(root, "backups"))).filter((n) => n.endsWith(".tar.gz")).sort();
  for (const night of ["2026-03-01", "2026-03-02", "2026-03-03"]) {
    clock.now = at(`${night}T03:00:01Z`);
    await scheduler.tick();
    await nightDone();
  }
  assert.equal(tasks.size, 3, "one backup task per night");
  const kept = await archives();
  assert.equal(kept.length, 2, `keep 2: ${kept.join(", ")}`);
  assert.deepEqual(
    kept.map((n) => n.slice(0, "scheduled-20260303".length)),
    ["scheduled-20260302", "scheduled-20260303"],
    "the newest two nights",
  );
  assert.ok(kept.every((n) => n.startsWith("scheduled-")));
  await worker.stop(1_000);
  await tasks.close();
});
