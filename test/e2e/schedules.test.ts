// Schedules against the real server: exactly one task per due time across a SIGKILL right at the
// due time, one catch-up run after downtime, bad input refused with the field named, and
// schedules that survive a backup and restore. The server's schedule clock starts where the test
// says (CARA_TEST_CLOCK_START) so a due time comes within a second.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";

const SECRET = "schedules-e2e-secret-0123456789abcdefghij";
const call = (s: CaraServer, method: string, body: unknown) => connectJson(s, `carapace.tasks.v1.SchedulesService/${method}`, body, s.token);

async function tasksOf(s: CaraServer, scheduleId: string): Promise<{ id: string; idempotencyKey: string }[]> {
  const res = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { labels: { schedule: scheduleId }, limit: 1000 }, s.token);
  return res.json.tasks ?? [];
}

async function until<T>(what: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await what();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("exactly one task per due time across a SIGKILL right at it; one catch-up run after downtime", async () => {
  const stateDir = join(await tempDir(), "state");
  const env = { CARAPACE_SERVER_SECRET: SECRET, CARA_TEST_CLOCK_START: "2026-01-02T02:59:59.000Z", CARA_TEST_PAUSE_AT: "schedule:created" };
  let s = await startCara({ stateDir, env });
  const created = await call(s, "CreateSchedule", {
    name: "nightly",
    cron: "0 3 * * *",
    timezone: "UTC",
    template: { payload: { systemEvent: { text: "nightly" } } },
  });
  assert.equal(created.status, 200, JSON.stringify(created.json));
  const id = created.json.schedule.id as string;
  assert.deepEqual(
    created.json.schedule.nextDueMs,
    ["2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z", "2026-01-04T03:00:00Z"].map((t) => String(Date.parse(t))),
  );
  // The server pauses after the task is durable and before the run is recorded: kill it there.
  await until(async () => (s.lines.some((l) => l.includes("CARA_TEST_PAUSED_AT schedule:created")) ? true : undefined));
  s.proc.kill("SIGKILL");
  await s.exited;

  s = await startCara({ stateDir, env: { CARAPACE_SERVER_SECRET: SECRET, CARA_TEST_CLOCK_START: "2026-01-02T03:00:30.000Z" } });
  const recorded = await until(async () => {
    const got = await call(s, "GetSchedule", { id: "nightly" });
    return got.json.schedule.lastRun ? got.json.schedule : undefined;
  });
  const tasks = await tasksOf(s, id);
  assert.deepEqual(
    tasks.map((t) => t.idempotencyKey),
    [`schedule:${id}:2026-01-02T03:00:00.000Z`],
    "one task for the due time, not two",
  );
  assert.equal(recorded.lastRun.taskId, tasks[0]!.id);
  assert.equal(recorded.lastRun.outcome, "SCHEDULE_RUN_OUTCOME_CREATED");
  await s.stop();

  // Down for four nights: one catch-up run, three missed.
  s = await startCara({ stateDir, env: { CARAPACE_SERVER_SECRET: SECRET, CARA_TEST_CLOCK_START: "2026-01-06T09:00:00.000Z" } });
  // The run's task is durable before the schedule records the run: wait for both.
  const caught = await until(async () => {
    if ((await tasksOf(s, id)).length !== 2) return undefined;
    const schedule = (await call(s, "GetSchedule", { id })).json.schedule;
    return schedule.lastRun?.dueAtMs === String(Date.parse("2026-01-06T03:00:00Z")) ? schedule : undefined;
  });
  assert.equal(caught.missedRuns, 3);
  assert.equal(caught.lastRun.dueAtMs, String(Date.parse("2026-01-06T03:00:00Z")));
  // Status shows it; it has not failed.
  const status = (await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).json;
  assert.equal(status.tasks.schedules[0].name, "nightly");
  assert.equal(status.tasks.schedules[0].rule, "0 3 * * * (UTC)");
  await s.stop();
});

test("bad schedules are refused with the field named, and change nothing", async () => {
  const s = await startCara();
  const cases: [object, string, string][] = [
    [
      { name: "x", cron: "61 * * * *", template: { payload: { systemEvent: { text: "t" } } } },
      "cron",
      "invalid cron expression '61 * * * *': Invalid value for minute: 61",
    ],
    [
      { name: "x", cron: "0 3 * * *", timezone: "Mars/Base", template: { payload: { systemEvent: { text: "t" } } } },
      "timezone",
      "unknown time zone 'Mars/Base': use an IANA name such as UTC or Europe/Berlin",
    ],
    [{ name: "x", intervalMs: "1000", template: { payload: { systemEvent: { text: "t" } } } }, "interval_ms", "interval must be at least 60 s (got 1000 ms)"],
    [{ name: "x", cron: "@daily" }, "template", "template is required (with a payload)"],
    [{ name: "x", cron: "@daily", template: { payload: {} } }, "template.payload", "Invalid task payload: unrecognized payload kind"],
    [
      { name: "", cron: "@daily", template: { payload: { systemEvent: { text: "t" } } } },
      "name",
      "name must be 1-100 characters: letters, digits, space, '.', '_', ':' or '-', starting with a letter or digit",
    ],
  ];
  for (const [body, field, message] of cases) {
    const res = await call(s, "CreateSchedule", body);
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.equal(res.json.message, message);
    const badRequest = res.json.details.find((d: { type: string }) => d.type === "google.rpc.BadRequest");
    assert.equal(badRequest.debug.fieldViolations[0].field, field);
  }
  assert.deepEqual((await call(s, "ListSchedules", {})).json.schedules ?? [], []);
  assert.equal((await call(s, "GetSchedule", { id: "nope" })).status, 404);
  await s.stop();
});

test("schedules survive a backup and restore", async () => {
  const env = { CARAPACE_SERVER_SECRET: SECRET };
  const s = await startCara({ env });
  const created = await call(s, "CreateSchedule", {
    name: "nightly-backup",
    cron: "0 3 * * *",
    timezone: "Europe/Berlin",
    template: { payload: { backup: { keep: 7 } } },
  });
  assert.equal(created.status, 200);
  const out = join(await tempDir(), "b.tar.gz");
  assert.equal((await runCara(["backup", "-o", out, "--port", String(s.port), "--state-dir", s.stateDir], { env })).code, 0);
  assert.equal((await call(s, "DeleteSchedule", { id: "nightly-backup" })).status, 200);
  assert.deepEqual((await call(s, "ListSchedules", {})).json.schedules ?? [], []);
  const restored = await runCara(["restore", out, "--force", "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(restored.code, 0, restored.stderr);
  const list = (await call(s, "ListSchedules", {})).json.schedules;
  assert.deepEqual(
    list.map((x: { name: string; timezone: string; cron: string }) => [x.name, x.cron, x.timezone]),
    [["nightly-backup", "0 3 * * *", "Europe/Berlin"]],
  );
  await s.stop();
});
