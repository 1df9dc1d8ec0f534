/**
 * Durable task creates with 10,000 tasks already stored, 32 concurrent clients: the real
 * FileTaskStore (journal + group commit) versus a whole-file-rewrite store (every create rewrites
 * queue.json through the same durable-write helper), measured in the same run. Plus the time to
 * open (load + replay) a store of 10,000 tasks. And bulk submission over the API: CreateTasks calls
 * of 1,000 tasks against the real server, versus the store's own durable create rate above.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { startCara } from "../lib/cara.js";
import { join } from "node:path";
import { DEFAULT_POLICY, orderedRecord, type TaskRecord } from "../../src/tasks/model.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { writeFileDurable } from "../../src/state/durable.js";
import { makeRow, percentileSorted } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark } from "../lib/types.js";

const STORED = 10_000;
const CLIENTS = 32;
/** Tasks per CreateTasks call (the API's limit) and calls in flight, as `cara task create --from-file` sends them (one at a time) times 4. */
const BULK_BATCH = 1000;
const BULK_CALLERS = 4;

/**
 * Tasks created per second through CreateTasks on a real server for durationMs: BULK_CALLERS loops,
 * each sending calls of BULK_BATCH tasks (due in a day, so the worker does not run them).
 */
async function bulkOverApi(root: string, tmp: string, durationMs: number): Promise<number> {
  const stateDir = join(tmp, "tasks-bulk-state");
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ tasks: { capacity: 1_000_000 } }));
  const cara = await startCara(root, stateDir);
  try {
    const transport = createConnectTransport({
      baseUrl: `http://127.0.0.1:${cara.port}`,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${cara.token}`);
          return next(req);
        },
      ],
    });
    const client = createClient(TasksService, transport);
    const due = BigInt(Date.now() + 86_400_000);
    const batch = Array.from({ length: BULK_BATCH }, (_, i) => ({
      payload: { kind: { case: "systemEvent" as const, value: { text: `bulk ${i}` } } },
      nextRunAtMs: due,
    }));
    let created = 0;
    const start = performance.now();
    const end = start + durationMs;
    await Promise.all(
      Array.from({ length: BULK_CALLERS }, async () => {
        while (performance.now() < end) {
          const res = await client.createTasks({ tasks: batch });
          created += res.results.length;
        }
      }),
    );
    return created / ((performance.now() - start) / 1000);
  } finally {
    await cara.stop();
  }
}

function seedRecords(n: number): TaskRecord[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => ({
    id: `seed-${i.toString().padStart(6, "0")}-0000-4000-8000-000000000000`,
    state: i % 3 === 0 ? "done" : "queued",
    attempts: i % 3 === 0 ? 1 : 0,
    nextRunAtMs: now + 86_400_000,
    lastError: null,
    payload: { kind: "systemEvent", text: `seeded task ${i} with a realistic amount of payload text` },
    createdAtMs: now - i,
    updatedAtMs: now - i,
    policy: { ...DEFAULT_POLICY },
    policyExplicit: true,
  }));
}

async function seededDir(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "queue.json"), `${JSON.stringify(seedRecords(STORED).map(orderedRecord), null, 2)}\n`);
  return dir;
}

/** Runs CLIENTS loops of `create` for durationMs; returns creates/s and p99 latency (ms). */
async function drive(create: (i: number) => Promise<unknown>, durationMs: number): Promise<{ rate: number; p99: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + durationMs;
  let n = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await create(n++);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / elapsed, p99: percentileSorted(latencies, 99) };
}

/** The baseline: one JSON file rewritten on every create (serialized; no journal, no batching). */
class WholeFileStore {
  private chain: Promise<void> = Promise.resolve();
  constructor(
    private readonly file: string,
    private readonly records: TaskRecord[],
  ) {}
  create(i: number): Promise<void> {
    const now = Date.now();
    this.records.push({
      id: `wf-${i}`,
      state: "queued",
      attempts: 0,
      nextRunAtMs: null,
      lastError: null,
      payload: { kind: "systemEvent", text: "bench" },
      createdAtMs: now,
      updatedAtMs: now,
      policy: { ...DEFAULT_POLICY },
      policyExplicit: true,
    });
    const next = this.chain.then(() => writeFileDurable(this.file, `${JSON.stringify(this.records.map(orderedRecord), null, 2)}\n`));
    this.chain = next.catch(() => undefined);
    return next;
  }
}

export const tasks: Benchmark = {
  name: "tasks",
  description:
    "Durable task creates/s and p99 with 10,000 stored tasks, 32 concurrent clients, vs a whole-file-rewrite store; store open time with 10,000 tasks; bulk CreateTasks over the API vs the store rate",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const reps = opts.quick ? 2 : opts.reps;
    const duration = opts.quick ? 1500 : 3000;
    const journalRate: number[] = [];
    const journalP99: number[] = [];
    const wholeRate: number[] = [];
    const wholeP99: number[] = [];
    const openMs: number[] = [];
    const bulkRate: number[] = [];
    for (let rep = 0; rep < reps + 1; rep++) {
      const warm = rep === 0;
      // Journaled store (capacity above what the run can create, so no eviction scan).
      const dir = await seededDir(opts.tmp, "tasks-journal");
      const store = await FileTaskStore.open({ dir, capacity: 1_000_000, retentionMs: 0 });
      const j = await drive(
        () => store.create({ payload: { kind: "systemEvent", text: "bench" }, policy: { ...DEFAULT_POLICY }, policyExplicit: true, nextRunAtMs: null }),
        duration,
      );
      await store.close();
      // Open time: load a queue.json of exactly 10k tasks cold in this process (the store the
      // create run grew can pass the 64 MiB file cap on a fast machine, and would measure more).
      const openDir = await seededDir(opts.tmp, "tasks-open");
      const t0 = performance.now();
      const reopened = await FileTaskStore.open({ dir: openDir, capacity: 1_000_000, retentionMs: 0 });
      const opened = performance.now() - t0;
      await reopened.close();
      // Whole-file baseline.
      const wdir = await seededDir(opts.tmp, "tasks-wholefile");
      const whole = new WholeFileStore(join(wdir, "queue.json"), seedRecords(STORED));
      const w = await drive((i) => whole.create(i), duration);
      const bulk = await bulkOverApi(opts.root, opts.tmp, duration);
      if (!warm) {
        journalRate.push(j.rate);
        journalP99.push(j.p99);
        wholeRate.push(w.rate);
        wholeP99.push(w.p99);
        openMs.push(opened);
        bulkRate.push(bulk);
      }
      opts.log(
        `tasks rep ${rep}${warm ? " (warm-up)" : ""}: journal ${j.rate.toFixed(0)}/s p99 ${j.p99.toFixed(1)} ms; whole-file ${w.rate.toFixed(1)}/s p99 ${w.p99.toFixed(0)} ms; open ${opened.toFixed(0)} ms; bulk over the API ${bulk.toFixed(0)}/s`,
      );
    }
    return {
      rows: [
        makeRow({
          group: "tasks",
          name: "durable creates/s (10k stored, 32 clients)",
          unit: "creates/s",
          samples: journalRate,
          baseline: { name: "whole-file rewrite", samples: wholeRate },
          goal: { on: "value", op: ">=", value: 2000, label: "≥ 2,000/s" },
        }),
        makeRow({
          group: "tasks",
          name: "create p99 latency",
          unit: "ms",
          samples: journalP99,
          baseline: { name: "whole-file rewrite p99", samples: wholeP99 },
          goal: { on: "value", op: "<=", value: 50, label: "≤ 50 ms" },
        }),
        makeRow({
          group: "tasks",
          name: `bulk creates/s over the API (CreateTasks, ${BULK_BATCH} per call, ${BULK_CALLERS} in flight)`,
          unit: "creates/s",
          samples: bulkRate,
          baseline: { name: "store durable creates/s (row above)", samples: journalRate },
          goal: { on: "ratio", op: ">=", value: 0.5, label: "≥ 0.5× store" },
        }),
        makeRow({
          group: "tasks",
          name: "store open with 10k tasks",
          unit: "ms",
          samples: openMs,
          goal: { on: "value", op: "<=", value: 1000, label: "≤ 1 s" },
        }),
      ],
      notes: [
        "tasks: the bulk row's server starts with an empty store (the store rows have 10k stored).",
        "tasks: measured at the store (the RPC layer adds its own per-call cost, see the unary rows); every create is fdatasync'ed before it resolves.",
      ],
    };
  },
};
