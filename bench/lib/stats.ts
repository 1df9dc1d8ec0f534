import type { Goal, Row } from "./types.js";

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile of an already sorted array (p in 0..100). */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Builds a row from repetition samples, with an optional baseline (its samples) and goal. */
export function makeRow(init: {
  group: string;
  name: string;
  unit: string;
  samples: number[];
  baseline?: { name: string; samples: number[] };
  goal?: Goal;
  note?: string;
}): Row {
  const samples = init.samples.filter((v) => Number.isFinite(v));
  const med = median(samples);
  const row: Row = {
    group: init.group,
    name: init.name,
    unit: init.unit,
    samples: samples.map((v) => round(v, 4)),
    median: med,
    min: samples.length ? Math.min(...samples) : null,
    max: samples.length ? Math.max(...samples) : null,
    met: null,
  };
  if (init.baseline) {
    const b = median(init.baseline.samples.filter((v) => Number.isFinite(v)));
    row.baseline = { name: init.baseline.name, median: b };
    row.ratio = med !== null && b !== null && b !== 0 ? med / b : null;
  }
  if (init.goal) {
    row.goal = init.goal;
    const v = init.goal.on === "ratio" ? row.ratio : med;
    if (v !== null && v !== undefined) row.met = init.goal.op === ">=" ? v >= init.goal.value : v <= init.goal.value;
  }
  if (init.note) row.note = init.note;
  return row;
}

/** A row for something that cannot be measured yet (e.g. an RPC still UNIMPLEMENTED). */
export function unavailableRow(group: string, name: string, unit: string, note: string, goal?: Goal): Row {
  const row: Row = { group, name, unit, samples: [], median: null, min: null, max: null, met: null, note };
  if (goal) row.goal = goal;
  return row;
}
