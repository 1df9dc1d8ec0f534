/**
 * `npm run bench [-- --quick] [-- --only unary,cli] [-- --readme] [-- --compare OLD.json]`
 *
 * Runs every benchmark module (bench/benchmarks/*), prints one table (median, min, max of the
 * repetitions, the baseline measured in the same run, the ratio and the goal), and writes
 * bench/results.json (+ bench/results.md). `--readme` also replaces the table in bench/README.md.
 * `--compare OLD.json` then prints this run against an earlier results.json, row by row
 * (`--compare OLD.json --to NEW.json` compares two files without running anything).
 * Build first (`npm run build`): the server and the CLI run from dist/ through bin/cara.js.
 */
import { existsSync, readFileSync, statSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { backup } from "./benchmarks/backup.js";
import { cli } from "./benchmarks/cli.js";
import { download } from "./benchmarks/download.js";
import { memory } from "./benchmarks/memory.js";
import { metrics } from "./benchmarks/metrics.js";
import { profile } from "./benchmarks/profile.js";
import { streaming } from "./benchmarks/streaming.js";
import { tasks } from "./benchmarks/tasks.js";
import { tasksPostgres } from "./benchmarks/tasks-postgres.js";
import { logging } from "./benchmarks/logging.js";
import { unary } from "./benchmarks/unary.js";
import { verify } from "./benchmarks/verify.js";
import { installCleanup, killAll, sleep } from "./lib/procs.js";
import { compareRuns, compareTable, type RunResults } from "./lib/compare.js";
import { markdownTable, textTable } from "./lib/report.js";
import { unavailableRow } from "./lib/stats.js";
import type { BenchOptions, Benchmark, Row } from "./lib/types.js";

/** Every benchmark, in the order they run. Later features add their module here. */
export const BENCHMARKS: Benchmark[] = [unary, profile, streaming, cli, memory, tasks, tasksPostgres, logging, backup, verify, download, metrics];

const ROOT = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");
const BENCH = join(ROOT, "bench");

function parseArgs(argv: string[]) {
  const args = {
    quick: false,
    only: undefined as string[] | undefined,
    readme: false,
    reps: undefined as number | undefined,
    durationMs: undefined as number | undefined,
    connections: 32,
    compare: undefined as string | undefined,
    to: undefined as string | undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--quick") args.quick = true;
    else if (a === "--readme") args.readme = true;
    else if (a === "--only") args.only = value().split(",");
    else if (a === "--reps") args.reps = Number(value());
    else if (a === "--duration") args.durationMs = Number(value()) * 1000;
    else if (a === "--connections") args.connections = Number(value());
    else if (a === "--compare") args.compare = value();
    else if (a === "--to") args.to = value();
    else if (a === "--help" || a === "-h") {
      process.stdout.write(
        `npm run bench -- [--quick] [--only ${BENCHMARKS.map((b) => b.name).join(",")}] [--reps N] [--duration SECONDS] [--connections N] [--readme] [--compare OLD.json [--to NEW.json]]\n`,
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  return args;
}

/** Newest mtime under a directory (files only). */
function newest(dir: string, ext: string): number {
  let m = 0;
  if (!existsSync(dir)) return m;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) m = Math.max(m, newest(p, ext));
    else if (e.name.endsWith(ext)) m = Math.max(m, statSync(p).mtimeMs);
  }
  return m;
}

/** Share of CPU not idle over `ms`, across all cores (0..cores), from /proc/stat. */
async function busyCores(ms: number): Promise<number | null> {
  const read = () => {
    try {
      const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
      const idle = f[3]! + (f[4] ?? 0);
      return { idle, total: f.reduce((a, b) => a + b, 0) };
    } catch {
      return null;
    }
  };
  const a = read();
  await sleep(ms);
  const b = read();
  if (!a || !b || b.total === a.total) return null;
  return (1 - (b.idle - a.idle) / (b.total - a.total)) * os.cpus().length;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const older = args.compare !== undefined ? (JSON.parse(await readFile(args.compare, "utf8")) as RunResults) : undefined;
  if (older && args.to !== undefined) {
    const newer = JSON.parse(await readFile(args.to, "utf8")) as RunResults;
    process.stdout.write(`${args.to} (${newer.date ?? "?"}) against ${args.compare} (${older.date ?? "?"}):\n${compareTable(compareRuns(older, newer))}\n`);
    return 0;
  }
  installCleanup();
  if (!existsSync(join(ROOT, "dist", "src", "cli", "main.js"))) {
    process.stderr.write("bench: dist/ is missing; run `npm run build` first\n");
    return 1;
  }
  if (newest(join(ROOT, "src"), ".ts") > newest(join(ROOT, "dist", "src"), ".js")) {
    process.stderr.write("bench: warning: src/ is newer than dist/ (run `npm run build` to measure the current code)\n");
  }
  const quick = args.quick;
  const tmp = await mkdtemp(join(os.tmpdir(), "cara-bench-"));
  const out = join(BENCH, ".out");
  await mkdir(out, { recursive: true });
  const log = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
  const opts: BenchOptions = {
    quick,
    reps: args.reps ?? (quick ? 3 : 5),
    durationMs: args.durationMs ?? (quick ? 1200 : 6000),
    warmupMs: quick ? 600 : 2000,
    connections: args.connections,
    root: ROOT,
    tmp,
    out,
    log,
  };
  const selected = args.only ? BENCHMARKS.filter((b) => args.only!.includes(b.name)) : BENCHMARKS;
  if (args.only && selected.length !== args.only.length) {
    process.stderr.write(`bench: unknown benchmark in --only (have: ${BENCHMARKS.map((b) => b.name).join(", ")})\n`);
    return 2;
  }

  const cpus = os.cpus();
  const busyBefore = await busyCores(500);
  const machine = {
    cpuModel: cpus[0]?.model ?? "unknown",
    cpuCount: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadavgAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
    busyCoresBeforeStart: busyBefore === null ? null : Math.round(busyBefore * 100) / 100,
  };
  log(`bench: ${quick ? "quick" : "full"} run on ${machine.cpuCount}× ${machine.cpuModel}, node ${machine.node}; ${selected.map((b) => b.name).join(", ")}`);
  if (busyBefore !== null && busyBefore > 0.3)
    log(`bench: warning: ${busyBefore.toFixed(2)} cores were already busy before the run (other processes); numbers will be noisy`);

  const started = Date.now();
  // Other work on the machine shows up here (the 1-minute load average, sampled every 5 s).
  let maxLoad = os.loadavg()[0]!;
  const loadTimer = setInterval(() => (maxLoad = Math.max(maxLoad, os.loadavg()[0]!)), 5000);
  loadTimer.unref();
  const rows: Row[] = [];
  const details: Record<string, unknown> = {};
  const notes: string[] = [];
  for (const b of selected) {
    const t0 = Date.now();
    log(`bench: ${b.name}: ${b.description}`);
    try {
      const res = await b.run(opts);
      rows.push(...res.rows);
      if (res.details) details[b.name] = res.details;
      if (res.notes) notes.push(...res.notes);
    } catch (err) {
      log(`bench: ${b.name} failed: ${(err as Error)?.stack ?? err}`);
      rows.push(
        unavailableRow(
          b.name,
          `${b.name} failed`,
          "",
          String((err as Error)?.message ?? err)
            .split("\n")[0]!
            .slice(0, 200),
        ),
      );
    }
    log(`bench: ${b.name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  const elapsedS = (Date.now() - started) / 1000;
  clearInterval(loadTimer);
  const busyAfter = await busyCores(500);
  const result = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    elapsedSeconds: Math.round(elapsedS),
    machine: {
      ...machine,
      loadavgAtEnd: os.loadavg().map((v) => Math.round(v * 100) / 100),
      maxLoadavg1mDuringRun: Math.round(maxLoad * 100) / 100,
      busyCoresAfterEnd: busyAfter === null ? null : Math.round(busyAfter * 100) / 100,
    },
    options: { reps: opts.reps, durationMs: opts.durationMs, warmupMs: opts.warmupMs, connections: opts.connections },
    rows,
    details,
    notes,
  };

  const table = textTable(rows);
  process.stdout.write(`\n${table}\n\n`);
  for (const n of notes) process.stdout.write(`${n}\n`);
  const header =
    `${result.mode} run, ${result.date.slice(0, 16).replace("T", " ")} UTC, ${elapsedS.toFixed(0)} s: ${machine.cpuCount}× ${machine.cpuModel}, ` +
    `${machine.totalMemGiB} GiB, node ${machine.node}, ${machine.platform}; ${opts.reps} reps × ${opts.durationMs / 1000} s, ${opts.connections} connections` +
    (machine.busyCoresBeforeStart !== null ? `; ${machine.busyCoresBeforeStart} cores busy with other work before the start` : "") +
    `; 1-min load average up to ${maxLoad.toFixed(1)} during the run (the harness itself keeps about 2 busy)`;
  process.stdout.write(`\n${header}\n`);

  await writeFile(join(BENCH, "results.json"), `${JSON.stringify(result, null, 2)}\n`);
  const md = `${header}\n\n${markdownTable(rows)}\n`;
  await writeFile(join(BENCH, "results.md"), md);
  if (args.readme) {
    const readme = join(BENCH, "README.md");
    const text = await readFile(readme, "utf8");
    const start = "<!-- results:start -->";
    const end = "<!-- results:end -->";
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    if (i >= 0 && j > i) {
      await writeFile(readme, `${text.slice(0, i + start.length)}\n${md}${text.slice(j)}`);
      log("bench: README.md table updated");
    } else {
      log("bench: README.md has no results markers; not updated");
    }
  }
  log(`bench: wrote bench/results.json and bench/results.md (${elapsedS.toFixed(0)} s)`);
  if (older) process.stdout.write(`\nThis run against ${args.compare} (${older.date ?? "?"}):\n${compareTable(compareRuns(older, result))}\n`);
  await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  // A missed goal is a finding, not a failure of the harness: exit 0 either way.
  return 0;
}

main().then(
  (code) => {
    killAll("SIGKILL");
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? err}\n`);
    killAll("SIGKILL");
    process.exit(1);
  },
);
