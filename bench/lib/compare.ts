/**
 * Two runs side by side: `npm run bench -- --compare OLD.json` reads the results.json of an
 * earlier run and prints, per row (matched by group and name), the medians of both runs, the
 * ratio new/old, each run's ratio to its own baseline, and the goal with whether each run met it.
 */
import type { Goal, Row } from "./types.js";

/** What --compare reads of a results.json. */
export interface RunResults {
  date?: string;
  rows: Row[];
}

export interface ComparedRow {
  group: string;
  name: string;
  unit: string;
  oldMedian: number | null;
  newMedian: number | null;
  /** newMedian / oldMedian; null when either is missing or old is 0. */
  change: number | null;
  oldRatio: number | null;
  newRatio: number | null;
  goal: Goal | null;
  oldMet: boolean | null;
  newMet: boolean | null;
}

const key = (r: Row) => `${r.group}\u0000${r.name}`;

/** Every row of `newer` in its order, then rows only `older` has; a side without the row is null. */
export function compareRuns(older: RunResults, newer: RunResults): ComparedRow[] {
  const olds = new Map(older.rows.map((r) => [key(r), r]));
  const news = new Map(newer.rows.map((r) => [key(r), r]));
  const keys = [...news.keys(), ...[...olds.keys()].filter((k) => !news.has(k))];
  return keys.map((k) => {
    const o = olds.get(k);
    const n = news.get(k);
    const any = (n ?? o)!;
    const oldMedian = o?.median ?? null;
    const newMedian = n?.median ?? null;
    return {
      group: any.group,
      name: any.name,
      unit: any.unit,
      oldMedian,
      newMedian,
      change: oldMedian !== null && newMedian !== null && oldMedian !== 0 ? newMedian / oldMedian : null,
      oldRatio: o?.ratio ?? null,
      newRatio: n?.ratio ?? null,
      goal: n?.goal ?? o?.goal ?? null,
      oldMet: o?.met ?? null,
      newMet: n?.met ?? null,
    };
  });
}

function num(v: number | null): string {
  if (v === null) return "-";
  const abs = Math.abs(v);
  return abs >= 100 ? Math.round(v).toLocaleString("en-US") : abs >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const ratio = (v: number | null) => (v === null ? "-" : `${v.toFixed(2)}x`);
const met = (v: boolean | null) => (v === null ? "-" : v ? "yes" : "no");

/** The comparison as aligned text columns, one line per row, under a header. */
export function compareTable(rows: readonly ComparedRow[]): string {
  const table = [
    ["group", "row", "unit", "old", "new", "new/old", "old vs base", "new vs base", "goal", "old met", "new met"],
    ...rows.map((r) => [
      r.group,
      r.name,
      r.unit,
      num(r.oldMedian),
      num(r.newMedian),
      ratio(r.change),
      ratio(r.oldRatio),
      ratio(r.newRatio),
      r.goal?.label ?? "-",
      met(r.oldMet),
      met(r.newMet),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
