import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCara } from "../lib/cara.js";
import { LoadWorker } from "../lib/load.js";
import { forkWorker, nextMessage, sleep, stopProcess } from "../lib/procs.js";
import { makeRow, unavailableRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Goal, Row } from "../lib/types.js";

const FOLLOW_WORKER = fileURLToPath(new URL("../workers/follow-worker.ts", import.meta.url));
/**
 * The info line the worker logs when a task's attempt ends: our log-line generator. (Failed-auth
 * warnings were used before: the limiter now answers all but 100 wrong tokens a minute with 429
 * and logs nothing more, so they cannot produce lines at any rate.)
 */
const LINE = "task attempt finished";
const CREATE_TASK_PATH = "/carapace.tasks.v1.TasksService/CreateTask";
const CREATE_BODY = JSON.stringify({ payload: { systemEvent: { text: "streaming bench" } } });
const DELIVERY_GOAL: Goal = { on: "ratio", op: ">=", value: 0.99, label: "≥ 0.99× produced" };

interface Report {
  counts: number[];
  dropped: number[];
  latencyMs: { p50: number; p99: number };
  errors: string[];
}

/**
 * FollowLogs delivery to 1 and to 50 followers. Log lines are produced by tasks: two connections
 * loop CreateTask (systemEvent), the worker (16 at a time) runs each and logs one line when its
 * attempt ends. "Produced" is counted from the server's own output, once the tasks created in the
 * window have finished; every follower should receive every line (the goal), at whatever rate the
 * server can produce them while serving the followers.
 */
export const streaming: Benchmark = {
  name: "streaming",
  description: "FollowLogs delivery rate to 1 and 50 followers (log lines from failed-auth RPCs)",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const rows: Row[] = [];
    const notes: string[] = [];
    const load = await LoadWorker.start();
    try {
      for (const followers of [1, 50]) {
        const group = "streaming";
        const label = `FollowLogs, ${followers} follower${followers > 1 ? "s" : ""}`;
        const stateDir = join(opts.tmp, `stream-${followers}-state`);
        await mkdir(stateDir, { recursive: true, mode: 0o700 });
        await writeFile(join(stateDir, "config.json"), JSON.stringify({ tasks: { concurrency: 16 } }));
        const cara = await startCara(opts.root, stateDir, { count: [LINE] });
        const worker = forkWorker(FOLLOW_WORKER);
        worker.stdout?.resume();
        worker.stderr?.on("data", (c: Buffer) => process.stderr.write(`[follow-worker] ${c.toString()}`));
        try {
          await nextMessage(worker, (m) => m?.type === "hello", 20_000, "follow worker start");
          worker.send({ type: "start", port: cara.port, token: cara.token, followers, contains: LINE, httpVersion: "1.1" });
          const state = await nextMessage<{ type: string; message?: string }>(
            worker,
            (m) => m?.type === "ready" || m?.type === "unavailable",
            20_000,
            "followers",
          );
          if (state.type === "unavailable") {
            const note = `not available yet: ${state.message ?? "FollowLogs failed"}`;
            opts.log(`streaming: ${note}`);
            rows.push(unavailableRow(group, `${label}: delivered lines/s per follower`, "lines/s", note, DELIVERY_GOAL));
            continue;
          }
          const produceOnce = async (durationMs: number) => {
            worker.send({ type: "reset" });
            await nextMessage(worker, (m) => m?.type === "reset-done", 5000, "reset");
            const before = cara.counts.get(LINE)!;
            const r = await load.run({
              mode: "h1",
              port: cara.port,
              path: CREATE_TASK_PATH,
              headers: { "content-type": "application/json", authorization: `Bearer ${cara.token}` },
              body: Buffer.from(CREATE_BODY).toString("base64"),
              connections: 2,
              warmupMs: 0,
              durationMs,
              expectStatus: 200,
            });
            // Let delivery catch up: wait until the followers' counts stop moving (bounded).
            let last = -1;
            let report!: Report;
            for (let i = 0; i < 40; i++) {
              await sleep(100);
              worker.send({ type: "report" });
              report = await nextMessage<Report>(worker, (m) => m?.type === "report", 5000, "report");
              const total = report.counts.reduce((a, b) => a + b, 0);
              if (total === last && cara.counts.get(LINE)! - before <= Math.min(...report.counts)) break;
              last = total;
            }
            const produced = cara.counts.get(LINE)! - before;
            return { r, produced, report };
          };
          opts.log(`streaming: ${label}: warm-up`);
          await produceOnce(opts.quick ? 500 : opts.warmupMs);
          const reps = opts.quick ? 2 : opts.reps;
          const producedRate: number[] = [];
          const perFollowerRate: number[] = [];
          const aggregate: number[] = [];
          const minRatio: number[] = [];
          const p50: number[] = [];
          const p99: number[] = [];
          const droppedTotal: number[] = [];
          for (let rep = 0; rep < reps; rep++) {
            const { r, produced, report } = await produceOnce(opts.durationMs);
            const seconds = r.elapsedMs / 1000;
            const delivered = report.counts.reduce((a, b) => a + b, 0);
            producedRate.push(produced / seconds);
            perFollowerRate.push(delivered / followers / seconds);
            aggregate.push(delivered / seconds);
            minRatio.push(produced > 0 ? Math.min(...report.counts) / produced : NaN);
            p50.push(report.latencyMs.p50);
            p99.push(report.latencyMs.p99);
            droppedTotal.push(report.dropped.reduce((a, b) => a + b, 0));
            opts.log(
              `streaming: ${label} rep ${rep + 1}/${reps}: produced ${produced} lines (${(produced / seconds).toFixed(0)}/s), delivered ${delivered} ` +
                `(min per follower ${Math.min(...report.counts)}), dropped ${droppedTotal.at(-1)}, latency p50 ${report.latencyMs.p50} ms p99 ${report.latencyMs.p99} ms` +
                (report.errors.length ? `, errors: ${report.errors[0]}` : ""),
            );
          }
          const baseline = { name: "lines produced/s", samples: producedRate };
          rows.push(makeRow({ group, name: `${label}: lines produced (logged) per s`, unit: "lines/s", samples: producedRate }));
          rows.push(makeRow({ group, name: `${label}: delivered per follower`, unit: "lines/s", samples: perFollowerRate, baseline, goal: DELIVERY_GOAL }));
          rows.push(makeRow({ group, name: `${label}: delivered, all followers`, unit: "msgs/s", samples: aggregate }));
          rows.push(makeRow({ group, name: `${label}: worst follower received / produced`, unit: "ratio", samples: minRatio }));
          rows.push(makeRow({ group, name: `${label}: delivery latency p50`, unit: "ms", samples: p50 }));
          rows.push(makeRow({ group, name: `${label}: delivery latency p99`, unit: "ms", samples: p99 }));
          rows.push(makeRow({ group, name: `${label}: dropped (slow-reader) records`, unit: "records", samples: droppedTotal }));
        } finally {
          if (worker.connected) worker.send({ type: "exit" });
          await stopProcess(worker, "SIGTERM", 2000);
          await cara.stop();
        }
      }
      notes.push(
        "streaming: lines come from tasks (2 connections looping CreateTask, 16 attempts at a time, one line per finished attempt); the production rate is what the server sustains while it also serves the followers.",
      );
      return { rows, notes };
    } finally {
      await load.stop();
    }
  },
};
