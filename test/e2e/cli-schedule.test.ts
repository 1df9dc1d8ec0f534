// `cara schedule ...` against the real server, both in this process (serveCara, runCli). The
// schedules' clock starts at a fixed time (CARA_TEST_CLOCK_START), so cron due times are exact;
// ids and creation times come from each answer. The scheduling itself (due times, catch-up, crash
// at a due time) is tested in test/tasks/ and test/e2e/schedules.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { serveCara, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { until } from "../helpers/wait.js";

/** Saturday noon before the spring-forward night in Europe (2026-03-29, 02:00 -> 03:00 CEST). */
const CLOCK_START = "2026-03-28T12:00:00.000Z";
const cli = (s: CaraEndpoint, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir]);
const iso = (ms: number) => new Date(ms).toISOString();
const POLICY = "  Policy:     maxAttempts 100, maxTotalRuntimeMs 604800000, maxTurns 25, maxRunTimeoutSeconds 600";
const POLICY_JSON = { maxAttempts: 100, maxTotalRuntimeMs: 604800000, maxTurns: 25, maxRunTimeoutSeconds: 600 };

async function getJson(s: CaraEndpoint, idOrName: string): Promise<any> {
  const res = await cli(s, ["schedule", "get", idOrName, "--json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout).schedule;
}

test("cara schedule: create (cron and interval), list, get, run now, pause, resume, update, delete; human and --json", async () => {
  const s = await serveCara({ env: { CARA_TEST_CLOCK_START: CLOCK_START } });

  // The backup check's advice, word for word.
  const nightly = await cli(s, ["schedule", "create", "--name", "nightly-backup", "--cron", "0 3 * * *", "--payload", '{"kind":"backup","keep":7}']);
  assert.equal(nightly.code, 0, nightly.stderr);
  const n = await getJson(s, "nightly-backup");
  assert.equal(
    nightly.stdout,
    [
      "Created.",
      "Schedule nightly-backup  enabled",
      `  Id:         ${n.id}`,
      "  When:       0 3 * * * (UTC)",
      "  Overlap:    skip",
      "  Payload:    backup (keep 7)",
      POLICY,
      "  Next due:   2026-03-29T03:00:00.000Z",
      "              2026-03-30T03:00:00.000Z",
      "              2026-03-31T03:00:00.000Z",
      "  Last run:   - (none yet)",
      `  Created:    ${iso(n.createdAtMs)}   Updated: ${iso(n.updatedAtMs)}`,
      "",
    ].join("\n"),
  );
  assert.equal(nightly.stderr, "");

  // 02:30 does not exist in Berlin on 2026-03-29: that night's run is at 03:00 CEST, the first minute after the gap.
  const berlin = await cli(s, [
    "schedule",
    "create",
    "--name",
    "berlin-brief",
    "--cron",
    "30 2 * * *",
    "--tz",
    "Europe/Berlin",
    "--payload",
    '{"kind":"systemEvent","text":"brief"}',
    "--label",
    "team=ops",
    "--priority",
    "5",
    "--max-attempts",
    "3",
    "--json",
  ]);
  assert.equal(berlin.code, 0, berlin.stderr);
  const b = JSON.parse(berlin.stdout).schedule;
  assert.deepEqual(
    { ...b, id: "x", createdAtMs: 0, updatedAtMs: 0 },
    {
      id: "x",
      name: "berlin-brief",
      cron: "30 2 * * *",
      intervalMs: null,
      timezone: "Europe/Berlin",
      state: "enabled",
      overlap: "skip",
      template: { payload: { kind: "systemEvent", text: "brief" }, policy: { ...POLICY_JSON, maxAttempts: 3 }, labels: { team: "ops" }, priority: 5 },
      nextDueMs: ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"].map(Date.parse),
      lastRun: null,
      missedRuns: 0,
      createdAtMs: 0,
      updatedAtMs: 0,
    },
  );
  assert.equal(b.createdAtMs, b.updatedAtMs);
  assert.ok(b.createdAtMs >= Date.parse(CLOCK_START) && b.createdAtMs < Date.parse(CLOCK_START) + 60_000, "the schedules' clock");

  const every = await cli(s, [
    "schedule",
    "create",
    "--name",
    "tick",
    "--every",
    "15m",
    "--payload",
    '{"kind":"systemEvent","text":"tick"}',
    "--overlap",
    "allow",
    "--paused",
    "--json",
  ]);
  assert.equal(every.code, 0, every.stderr);
  const t = JSON.parse(every.stdout).schedule;
  assert.deepEqual([t.cron, t.intervalMs, t.timezone, t.state, t.overlap, t.nextDueMs], [null, 900_000, "UTC", "paused", "allow", []]);

  const list = await cli(s, ["schedule", "list"]);
  assert.equal(list.code, 0, list.stderr);
  assert.equal(
    list.stdout,
    [
      "ID                                    NAME            WHEN        TZ             STATE    NEXT DUE                  LAST RUN",
      `${n.id}  nightly-backup  0 3 * * *   UTC            enabled  2026-03-29T03:00:00.000Z  -`,
      `${b.id}  berlin-brief    30 2 * * *  Europe/Berlin  enabled  2026-03-29T01:00:00.000Z  -`,
      `${t.id}  tick            every 15m   -              paused   -                         -`,
      "",
    ].join("\n"),
  );
  const listJson = JSON.parse((await cli(s, ["schedule", "list", "--json"])).stdout);
  assert.deepEqual(Object.keys(listJson), ["schedules"]);
  assert.deepEqual(
    listJson.schedules.map((x: { name: string }) => x.name),
    ["nightly-backup", "berlin-brief", "tick"],
  );
  assert.deepEqual(listJson.schedules[1], b);

  // Run now: one task, labelled with the schedule, from the template.
  const run = await cli(s, ["schedule", "run", "berlin-brief"]);
  assert.equal(run.code, 0, run.stderr);
  const taskId = /^Created task ([0-9a-f-]{36}) from schedule berlin-brief\.\n/.exec(run.stdout)?.[1];
  assert.ok(taskId, run.stdout);
  assert.equal(run.stdout, `Created task ${taskId} from schedule berlin-brief.\nFollow it: cara task watch ${taskId}\n`);
  const task = JSON.parse((await cli(s, ["task", "get", taskId, "--json"])).stdout).task;
  assert.deepEqual(
    [task.payload, task.labels, task.priority, task.policy.maxAttempts],
    [{ kind: "systemEvent", text: "brief" }, { team: "ops", schedule: b.id }, 5, 3],
  );
  const ran = await until("the run's task to finish", async () => {
    const got = await getJson(s, b.id);
    return got.lastRun?.taskState === "done" ? got : undefined;
  });
  assert.deepEqual({ ...ran.lastRun, dueAtMs: 0, atMs: 0 }, { dueAtMs: 0, atMs: 0, outcome: "created", taskId, taskState: "done", error: null, manual: true });
  assert.deepEqual(ran.nextDueMs, b.nextDueMs, "a run now leaves the due times as they were");
  const get = await cli(s, ["schedule", "get", "berlin-brief"]);
  assert.equal(
    get.stdout,
    [
      "Schedule berlin-brief  enabled",
      `  Id:         ${b.id}`,
      "  When:       30 2 * * * (Europe/Berlin)",
      "  Overlap:    skip",
      '  Payload:    systemEvent "brief"',
      "  Policy:     maxAttempts 3, maxTotalRuntimeMs 604800000, maxTurns 25, maxRunTimeoutSeconds 600",
      "  Priority:   5",
      "  Labels:     team=ops",
      "  Next due:   2026-03-29T01:00:00.000Z  (2026-03-29 03:00 Europe/Berlin)",
      "              2026-03-30T00:30:00.000Z  (2026-03-30 02:30 Europe/Berlin)",
      "              2026-03-31T00:30:00.000Z  (2026-03-31 02:30 Europe/Berlin)",
      `  Last run:   ${iso(ran.lastRun.atMs)}  created, task ${taskId} (done) (run now)`,
      `  Created:    ${iso(b.createdAtMs)}   Updated: ${iso(ran.updatedAtMs)}`,
      "",
    ].join("\n"),
  );
  const runJson = JSON.parse((await cli(s, ["schedule", "run", "tick", "--json"])).stdout);
  assert.deepEqual(Object.keys(runJson), ["run", "schedule"]);
  assert.deepEqual(
    [runJson.run.outcome, runJson.run.manual, runJson.schedule.name, runJson.schedule.lastRun.taskId],
    ["created", true, "tick", runJson.run.taskId],
  );

  // Pause and resume, by name and by id.
  const pause = await cli(s, ["schedule", "pause", "nightly-backup"]);
  assert.equal(pause.code, 0, pause.stderr);
  assert.match(pause.stdout, /^Paused\.\nSchedule nightly-backup {2}paused\n/);
  assert.match(pause.stdout, /\n {2}Next due: {3}- \(paused\)\n/);
  assert.deepEqual((await getJson(s, n.id)).nextDueMs, []);
  const resume = await cli(s, ["schedule", "resume", n.id, "--json"]);
  assert.deepEqual([JSON.parse(resume.stdout).schedule.state, JSON.parse(resume.stdout).schedule.nextDueMs], ["enabled", n.nextDueMs]);
  const resumeTick = JSON.parse((await cli(s, ["schedule", "resume", "tick", "--json"])).stdout).schedule;
  assert.deepEqual(
    resumeTick.nextDueMs,
    [1, 2, 3].map((k) => t.createdAtMs + k * 900_000),
    "every 15 min from the creation",
  );

  // Update: a template flag keeps the rest of the template.
  const upd = await cli(s, [
    "schedule",
    "update",
    "berlin-brief",
    "--payload",
    '{"kind":"systemEvent","text":"later"}',
    "--remove-label",
    "team",
    "--cron",
    "0 6 * * *",
    "--json",
  ]);
  assert.equal(upd.code, 0, upd.stderr);
  const u = JSON.parse(upd.stdout).schedule;
  assert.deepEqual(
    [u.cron, u.template, u.nextDueMs[0]],
    [
      "0 6 * * *",
      { payload: { kind: "systemEvent", text: "later" }, policy: { ...POLICY_JSON, maxAttempts: 3 }, labels: {}, priority: 5 },
      Date.parse("2026-03-29T04:00:00Z"),
    ],
  );
  const noop = await cli(s, ["schedule", "update", "berlin-brief"]);
  assert.equal(noop.code, 2);
  assert.match(noop.stderr, /^Error: schedule update requires at least one of: --name, --cron, --every/);

  // Delete prints the schedule as it was; the tasks it created stay.
  const del = await cli(s, ["schedule", "delete", "berlin-brief", "--json"]);
  assert.equal(del.code, 0, del.stderr);
  assert.equal(JSON.parse(del.stdout).schedule.id, b.id);
  const gone = await cli(s, ["schedule", "get", b.id]);
  assert.deepEqual([gone.code, gone.stdout, gone.stderr], [1, "", `Error: no schedule '${b.id}' (see cara schedule list)\n`]);
  assert.equal((await cli(s, ["task", "get", taskId])).code, 0);
  const delHuman = await cli(s, ["schedule", "delete", t.id]);
  assert.match(delHuman.stdout, /^Deleted\.\nSchedule tick {2}enabled\n {2}Id: {9}[0-9a-f-]{36}\n {2}When: {7}every 15m\n/);
  assert.deepEqual(
    JSON.parse((await cli(s, ["schedule", "list", "--json"])).stdout).schedules.map((x: { name: string }) => x.name),
    ["nightly-backup"],
  );
  await s.stop();
});

test("cara schedule: bad input gets the server's error naming the field (exit 1) or a usage error (exit 2), and changes nothing", async () => {
  const s = await serveCara({ env: { CARA_TEST_CLOCK_START: CLOCK_START } });
  const payload = ["--payload", '{"kind":"systemEvent","text":"x"}'];
  const cases: [string[], number, string][] = [
    [["--cron", "61 * * * *", ...payload], 1, "Error: invalid cron expression '61 * * * *': Invalid value for minute: 61 (field cron)\n"],
    [
      ["--cron", "0 3 * * *", "--tz", "Mars/Base", ...payload],
      1,
      "Error: unknown time zone 'Mars/Base': use an IANA name such as UTC or Europe/Berlin (field timezone)\n",
    ],
    [["--every", "30s", ...payload], 1, "Error: interval must be at least 60 s (got 30000 ms) (field interval_ms)\n"],
    [
      ["--cron", "@daily", "--payload", '{"kind":"backup","keep":0}'],
      1,
      "Error: Invalid task payload: backup keep must be between 1 and 1000 (field template.payload.backup.keep)\n",
    ],
    [
      ["--cron", "@daily", "--payload", '{"kind":"reboot"}'],
      2,
      "Error: invalid --payload: unknown payload kind 'reboot' (known: systemEvent, agentTurn, backup, updateCheck)\nRun 'cara schedule create --help' for usage.\n",
    ],
    [
      ["--every", "15 minutes", ...payload],
      2,
      "Error: --every must be a whole number with a unit s, m, h or d, like 15m, 2h or 1d (got '15 minutes')\nRun 'cara schedule create --help' for usage.\n",
    ],
    [["--cron", "@daily", "--every", "1h", ...payload], 2, "Error: give exactly one of --cron or --every\nRun 'cara schedule create --help' for usage.\n"],
    [payload, 2, "Error: give exactly one of --cron or --every\nRun 'cara schedule create --help' for usage.\n"],
    [
      ["--cron", "@daily", "--overlap", "queue", ...payload],
      2,
      "Error: --overlap must be one of skip, allow (got 'queue')\nRun 'cara schedule create --help' for usage.\n",
    ],
  ];
  for (const [args, code, stderr] of cases) {
    const res = await cli(s, ["schedule", "create", "--name", "bad", ...args]);
    assert.deepEqual([res.code, res.stdout, res.stderr], [code, "", stderr], args.join(" "));
  }
  const empty = await cli(s, ["schedule", "list"]);
  assert.equal(empty.stdout, "No schedules. Create one with 'cara schedule create' (see --help).\n");

  assert.equal((await cli(s, ["schedule", "create", "--name", "ok", "--cron", "@daily", ...payload])).code, 0);
  const before = await getJson(s, "ok");
  const badUpdate = await cli(s, ["schedule", "update", "ok", "--tz", "Mars/Base", "--payload", '{"kind":"systemEvent","text":"changed"}']);
  assert.deepEqual(
    [badUpdate.code, badUpdate.stderr],
    [1, "Error: unknown time zone 'Mars/Base': use an IANA name such as UTC or Europe/Berlin (field timezone)\n"],
  );
  assert.deepEqual(await getJson(s, "ok"), before, "nothing changed");
  const duplicate = await cli(s, ["schedule", "create", "--name", "ok", "--every", "1h", ...payload]);
  assert.deepEqual([duplicate.code, duplicate.stderr], [1, "Error: a schedule named 'ok' exists already (field name)\n"]);

  for (const verb of ["get", "pause", "resume", "delete", "run"]) {
    const res = await cli(s, ["schedule", verb, "no-such-schedule", "--json"]);
    // With --json the failure is the error document on stdout, with the same exit code.
    assert.deepEqual(
      [res.code, JSON.parse(res.stdout), res.stderr],
      [1, { error: { code: "not_found", message: "no schedule 'no-such-schedule' (see cara schedule list)", details: { reason: "SCHEDULE_NOT_FOUND" } } }, ""],
      verb,
    );
    const human = await cli(s, ["schedule", verb, "no-such-schedule"]);
    assert.deepEqual([human.code, human.stdout, human.stderr], [1, "", "Error: no schedule 'no-such-schedule' (see cara schedule list)\n"], verb);
  }
  assert.deepEqual(
    JSON.parse((await cli(s, ["schedule", "list", "--json"])).stdout).schedules.map((x: { name: string }) => x.name),
    ["ok"],
  );
  await s.stop();
});

test("cara schedule create --help shows the rule, the flags and examples", async () => {
  const help = await runCli(["schedule", "create", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Create a recurring schedule: a task from a template at every due time/);
  assert.match(help.stdout, /cara schedule create --name nightly-backup --cron '0 3 \* \* \*' --payload '\{"kind":"backup","keep":7\}'/);
  for (const flag of ["--name", "--cron", "--every", "--tz", "--payload", "--max-attempts", "--label", "--overlap", "--paused", "--json"])
    assert.ok(help.stdout.includes(flag), flag);
  const all = await runCli(["--help"]);
  for (const verb of ["create", "list", "get", "update", "pause", "resume", "delete", "run"])
    assert.match(all.stdout, new RegExp(`cara schedule ${verb}\\b`), verb);
});

test("cara schedule get after downtime: one catch-up run, the missed due times counted", async () => {
  const first = await serveCara({ env: { CARA_TEST_CLOCK_START: CLOCK_START } });
  const stateDir = first.stateDir;
  const created = await cli(first, [
    "schedule",
    "create",
    "--name",
    "nightly",
    "--cron",
    "0 3 * * *",
    "--payload",
    '{"kind":"systemEvent","text":"nightly"}',
    "--json",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const id = JSON.parse(created.stdout).schedule.id as string;
  await first.stop();

  // Down from Saturday noon to Wednesday 09:00: due at 03:00 on Sunday, Monday, Tuesday and Wednesday.
  const s = await serveCara({ stateDir, env: { CARA_TEST_CLOCK_START: "2026-04-01T09:00:00.000Z" } });
  const after = await until("the catch-up run's task to finish", async () => {
    const got = await getJson(s, "nightly");
    return got.lastRun?.taskState === "done" ? got : undefined;
  });
  assert.deepEqual(
    { ...after.lastRun, atMs: 0, taskId: "x" },
    { dueAtMs: Date.parse("2026-04-01T03:00:00Z"), atMs: 0, outcome: "created", taskId: "x", taskState: "done", error: null, manual: false },
  );
  assert.equal(after.missedRuns, 3);
  const tasks = JSON.parse((await cli(s, ["task", "list", "--label", `schedule=${id}`, "--json"])).stdout).tasks;
  assert.deepEqual(
    tasks.map((t: { id: string }) => t.id),
    [after.lastRun.taskId],
    "one task for four due times",
  );
  const get = await cli(s, ["schedule", "get", "nightly"]);
  assert.equal(
    get.stdout,
    [
      "Schedule nightly  enabled",
      `  Id:         ${id}`,
      "  When:       0 3 * * * (UTC)",
      "  Overlap:    skip",
      '  Payload:    systemEvent "nightly"',
      POLICY,
      "  Next due:   2026-04-02T03:00:00.000Z",
      "              2026-04-03T03:00:00.000Z",
      "              2026-04-04T03:00:00.000Z",
      `  Last run:   ${iso(after.lastRun.atMs)}  created, task ${after.lastRun.taskId} (done)`,
      "  Missed:     3 due times passed while the server was down (a catch-up run stood for them)",
      `  Created:    ${iso(after.createdAtMs)}   Updated: ${iso(after.updatedAtMs)}`,
      "",
    ].join("\n"),
  );
  await s.stop();
});
