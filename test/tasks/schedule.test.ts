import assert from "node:assert/strict";
import { test } from "node:test";
import {
  checkCron,
  checkInterval,
  checkName,
  checkTimezone,
  dueNow,
  dueTimes,
  nextDueTimes,
  runKey,
  ScheduleValidationError,
  type ScheduleRecord,
} from "../../src/tasks/schedule.js";

const iso = (ms: number[]) => ms.map((t) => new Date(t).toISOString());
const at = (s: string) => Date.parse(s);

function schedule(init: Partial<ScheduleRecord>): ScheduleRecord {
  const created = init.createdAtMs ?? at("2026-01-01T00:00:00Z");
  return {
    id: "s1",
    name: "nightly",
    timezone: "UTC",
    template: { payload: { kind: "systemEvent", text: "x" } },
    enabled: true,
    overlap: "skip",
    createdAtMs: created,
    updatedAtMs: created,
    anchorMs: created,
    missedRuns: 0,
    ...init,
  } as ScheduleRecord;
}

test("cron in a time zone: 03:00 Berlin is 02:00 UTC in winter and 01:00 UTC in summer", () => {
  const s = schedule({ cron: "0 3 * * *", timezone: "Europe/Berlin" });
  assert.deepEqual(iso(dueTimes(s, at("2026-03-26T12:00:00Z"), at("2026-03-31T00:00:00Z"))), [
    "2026-03-27T02:00:00.000Z",
    "2026-03-28T02:00:00.000Z",
    "2026-03-29T01:00:00.000Z",
    "2026-03-30T01:00:00.000Z",
  ]);
});

test("spring forward: a time that does not exist that night still runs once (no lost run)", () => {
  // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 never happens.
  const s = schedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" });
  const got = iso(dueTimes(s, at("2026-03-27T12:00:00Z"), at("2026-03-30T12:00:00Z")));
  assert.deepEqual(got, ["2026-03-28T01:30:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]);
});

test("fall back: a time that happens twice that night runs once (no double run)", () => {
  // 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
  const s = schedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" });
  const got = iso(dueTimes(s, at("2026-10-23T12:00:00Z"), at("2026-10-26T12:00:00Z")));
  assert.deepEqual(got, ["2026-10-24T00:30:00.000Z", "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]);
  // America/New_York too: 2026-11-01 01:30 happens twice.
  const ny = schedule({ cron: "30 1 * * *", timezone: "America/New_York" });
  assert.deepEqual(iso(dueTimes(ny, at("2026-10-31T12:00:00Z"), at("2026-11-02T12:00:00Z"))), ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]);
});

test("shorthands and fixed intervals", () => {
  assert.deepEqual(iso(dueTimes(schedule({ cron: "@daily" }), at("2026-01-01T05:00:00Z"), at("2026-01-03T00:00:00Z"))), [
    "2026-01-02T00:00:00.000Z",
    "2026-01-03T00:00:00.000Z",
  ]);
  assert.deepEqual(iso(dueTimes(schedule({ cron: "@hourly" }), at("2026-01-01T05:10:00Z"), at("2026-01-01T07:00:00Z"))), [
    "2026-01-01T06:00:00.000Z",
    "2026-01-01T07:00:00.000Z",
  ]);
  // An interval counts from the creation, whatever the zone.
  const every6h = schedule({ intervalMs: 6 * 3600_000, createdAtMs: at("2026-01-01T01:15:00Z") });
  assert.deepEqual(iso(dueTimes(every6h, at("2026-01-01T08:00:00Z"), at("2026-01-02T00:00:00Z"))), ["2026-01-01T13:15:00.000Z", "2026-01-01T19:15:00.000Z"]);
  assert.deepEqual(iso(nextDueTimes(every6h, at("2026-01-01T08:00:00Z"))), [
    "2026-01-01T13:15:00.000Z",
    "2026-01-01T19:15:00.000Z",
    "2026-01-02T01:15:00.000Z",
  ]);
});

test("due now: the latest due time runs, earlier ones that passed are missed (one catch-up run)", () => {
  const s = schedule({ cron: "0 3 * * *", anchorMs: at("2026-01-01T04:00:00Z") });
  assert.equal(dueNow(s, at("2026-01-02T02:59:59Z")), undefined);
  assert.deepEqual(dueNow(s, at("2026-01-02T03:00:00Z")), { dueAtMs: at("2026-01-02T03:00:00Z"), missed: [] });
  const after3Days = dueNow(s, at("2026-01-05T10:00:00Z"))!;
  assert.equal(new Date(after3Days.dueAtMs).toISOString(), "2026-01-05T03:00:00.000Z");
  assert.deepEqual(iso(after3Days.missed), ["2026-01-02T03:00:00.000Z", "2026-01-03T03:00:00.000Z", "2026-01-04T03:00:00.000Z"]);
  assert.equal(dueNow({ ...s, enabled: false }, at("2026-01-05T10:00:00Z")), undefined, "paused");
  assert.equal(runKey("s1", at("2026-01-05T03:00:00Z")), "schedule:s1:2026-01-05T03:00:00.000Z");
});

test("bad input is refused with the field named", () => {
  const field = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ScheduleValidationError);
      return [(err as ScheduleValidationError).field, (err as Error).message];
    }
    assert.fail("no error");
  };
  assert.deepEqual(
    field(() => checkCron("61 * * * *", "UTC")),
    ["cron", "invalid cron expression '61 * * * *': Invalid value for minute: 61"],
  );
  assert.deepEqual(
    field(() => checkCron("0 3 * *", "UTC")),
    ["cron", "cron expression '0 3 * *' has 4 fields; use 5 (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"],
  );
  assert.deepEqual(
    field(() => checkCron("*/5 0 3 * * *", "UTC")),
    ["cron", "cron expression '*/5 0 3 * * *' has 6 fields; use 5 (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"],
  );
  assert.deepEqual(
    field(() => checkCron("@sometimes", "UTC")),
    ["cron", "unknown cron shorthand '@sometimes' (one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"],
  );
  assert.deepEqual(
    field(() => checkTimezone("Mars/Olympus_Mons")),
    ["timezone", "unknown time zone 'Mars/Olympus_Mons': use an IANA name such as UTC or Europe/Berlin"],
  );
  assert.deepEqual(
    field(() => checkInterval(5_000)),
    ["interval_ms", "interval must be at least 60 s (got 5000 ms)"],
  );
  assert.deepEqual(
    field(() => checkName("")),
    ["name", "name must be 1-100 characters: letters, digits, space, '.', '_', ':' or '-', starting with a letter or digit"],
  );
  assert.equal(checkTimezone(""), "UTC");
  assert.equal(checkCron(" 0  3 * * * ", "Europe/Berlin"), "0 3 * * *");
});
