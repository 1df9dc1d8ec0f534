import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ScheduleSchema } from "../../gen/carapace/tasks/v1/schedules_pb.js";
import { intervalText, parseIntervalText, ruleText } from "../../src/wire/schedules.js";

test("an interval is written in the largest unit that divides it, and read back", () => {
  const cases: [number, string][] = [
    [60_000, "1m"],
    [900_000, "15m"],
    [5_400_000, "90m"],
    [7_200_000, "2h"],
    [86_400_000, "1d"],
    [90_000, "90s"],
  ];
  for (const [ms, text] of cases) {
    assert.equal(intervalText(ms), text);
    assert.equal(parseIntervalText(text), ms);
  }
  assert.equal(intervalText(1_500), "1500ms");
  assert.equal(intervalText(0n), "0ms");
  for (const bad of ["", "15", "15 m", "1.5h", "-5m", "15min", "1w", "m"]) assert.equal(parseIntervalText(bad), undefined, bad);
  assert.equal(parseIntervalText(" 6h "), 21_600_000);
});

test("a schedule's rule for people", () => {
  assert.equal(ruleText(create(ScheduleSchema, { rule: { case: "cron", value: "0 3 * * *" }, timezone: "Europe/Berlin" })), "0 3 * * * (Europe/Berlin)");
  assert.equal(ruleText(create(ScheduleSchema, { rule: { case: "intervalMs", value: 900_000n }, timezone: "UTC" })), "every 15m");
  assert.equal(ruleText(create(ScheduleSchema, {})), "no rule");
});
