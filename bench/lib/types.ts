/**
 * The contract between the harness (bench/run.ts) and each benchmark module in bench/benchmarks/.
 * A module exports a `Benchmark`; `run` starts whatever it needs, measures, stops everything it
 * started, and returns rows. Add a module and list it in bench/run.ts to add rows to the table.
 */

export interface BenchOptions {
  /** --quick: fewer and shorter repetitions (the whole run under 2 minutes). */
  quick: boolean;
  /** Repetitions per measurement (after the warm-up). */
  reps: number;
  /** Length of one load repetition, in ms. */
  durationMs: number;
  /** Length of the warm-up before the repetitions, in ms. */
  warmupMs: number;
  /** Concurrent connections of the load generator. */
  connections: number;
  /** Root of the cara checkout (where bin/cara.js lives). */
  root: string;
  /** Scratch directory for this run (state dirs, profiles); removed at the end. */
  tmp: string;
  /** Directory for artefacts worth keeping (bench/.out). */
  out: string;
  /** Progress lines (stderr). */
  log(message: string): void;
}

export type Direction = "higher" | "lower";

export interface Goal {
  /** "ratio": the goal applies to median / baseline median; "value": to the median itself. */
  on: "ratio" | "value";
  op: ">=" | "<=";
  value: number;
  /** How the goal reads in the table, e.g. "≥ 0.35×". */
  label: string;
}

export interface Row {
  /** Group shown in the table (usually the benchmark's name). */
  group: string;
  name: string;
  unit: string;
  /** One value per repetition (after warm-up). Empty when the measure is not available. */
  samples: number[];
  median: number | null;
  min: number | null;
  max: number | null;
  baseline?: { name: string; median: number | null };
  ratio?: number | null;
  goal?: Goal;
  /** true/false when there is a goal and a value; null otherwise. */
  met: boolean | null;
  note?: string;
}

export interface BenchResult {
  rows: Row[];
  /** Free-form details for results.json (e.g. the profile summary). */
  details?: Record<string, unknown>;
  /** Lines printed after the table (findings, caveats). */
  notes?: string[];
}

export interface Benchmark {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<BenchResult>;
}
