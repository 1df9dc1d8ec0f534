import assert from "node:assert/strict";
import { test } from "node:test";
import { compareRuns, compareTable } from "../../bench/lib/compare.js";
import type { Row } from "../../bench/lib/types.js";

const row = (name: string, median: number | null, extra: Partial<Row> = {}): Row => ({
  group: "cli",
  name,
  unit: "ms",
  samples: [],
  median,
  min: median,
  max: median,
  met: null,
  ...extra,
});
const goal = { on: "ratio" as const, op: "<=" as const, value: 2, label: "≤ 2×" };

test("compareRuns matches rows by group and name: new/old, each run's ratio to its baseline, the goal and whether each met it", () => {
  const older = { date: "old", rows: [row("status", 400, { ratio: 4, goal, met: false }), row("gone", 10)] };
  const newer = { rows: [row("status", 200, { ratio: 1.9, goal, met: true }), row("added", 5), row("zero", 3)] };
  older.rows.push(row("zero", 0));
  assert.deepEqual(compareRuns(older, newer), [
    { group: "cli", name: "status", unit: "ms", oldMedian: 400, newMedian: 200, change: 0.5, oldRatio: 4, newRatio: 1.9, goal, oldMet: false, newMet: true },
    {
      group: "cli",
      name: "added",
      unit: "ms",
      oldMedian: null,
      newMedian: 5,
      change: null,
      oldRatio: null,
      newRatio: null,
      goal: null,
      oldMet: null,
      newMet: null,
    },
    {
      group: "cli",
      name: "zero",
      unit: "ms",
      oldMedian: 0,
      newMedian: 3,
      change: null,
      oldRatio: null,
      newRatio: null,
      goal: null,
      oldMet: null,
      newMet: null,
    },
    {
      group: "cli",
      name: "gone",
      unit: "ms",
      oldMedian: 10,
      newMedian: null,
      change: null,
      oldRatio: null,
      newRatio: null,
      goal: null,
      oldMet: null,
      newMet: null,
    },
  ]);
});

test("compareTable prints one aligned line per row under a header", () => {
  const text = compareTable(
    compareRuns({ rows: [row("status", 1234.5, { ratio: 4, goal, met: false })] }, { rows: [row("status", 617.25, { ratio: 2, goal, met: true })] }),
  );
  assert.equal(
    text,
    [
      "group  row     unit  old    new  new/old  old vs base  new vs base  goal  old met  new met",
      "cli    status  ms    1,235  617  0.50x    4.00x        2.00x        ≤ 2×  no       yes",
    ].join("\n"),
  );
});
