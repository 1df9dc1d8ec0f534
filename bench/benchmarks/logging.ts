/**
 * Logging throughput through the full pipeline (redaction, stdout to /dev/null, the rotating
 * file, the ring) versus pino writing to /dev/null, 100,000 lines per repetition, in-process:
 * clean lines and a mix where 10% of the lines carry secrets.
 */
import { openSync } from "node:fs";
import { join } from "node:path";
import { pino, type DestinationStream } from "pino";
import { createLogPipeline } from "../../src/ops/log-pipeline.js";
import { makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark } from "../lib/types.js";

function logger(dest: DestinationStream) {
  return pino(
    { level: "info", base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (l) => ({ level: l }) } },
    dest,
  ).child({ component: "tasks" });
}

async function rate(dest: DestinationStream, n: number, mixed: boolean, flush: () => void): Promise<number> {
  const log = logger(dest);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (mixed && i % 10 === 0)
      log.info({ url: "https://u:p@h/x", max_tokens: 100, token: "abc123def456" }, `request with Authorization: Bearer abcdef${i}123456`);
    else log.info({ taskId: `t-${i}`, attempt: 2, durationMs: 12 }, "task finished in 12 ms");
  }
  flush();
  await new Promise((r) => setImmediate(r));
  return n / ((performance.now() - t0) / 1000);
}

export const logging: Benchmark = {
  name: "logging",
  description: "Log lines/s through the full redacting pipeline (stdout + rotating file + ring) vs pino to /dev/null",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const n = 100_000;
    const reps = opts.quick ? 3 : opts.reps;
    const rows = [];
    for (const mixed of [false, true]) {
      const base: number[] = [];
      const full: number[] = [];
      for (let rep = 0; rep <= reps; rep++) {
        const devnull = pino.destination({ dest: openSync("/dev/null", "w"), sync: false });
        const b = await rate(devnull, n, mixed, () => devnull.flushSync());
        const stdout = pino.destination({ dest: openSync("/dev/null", "w"), sync: false });
        const p = createLogPipeline({
          stdout,
          file: { path: join(opts.tmp, `log-${mixed}-${rep}`, "cara.log") },
          knownSecrets: ["S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t12"],
        });
        const f = await rate(p.destination, n, mixed, () => p.flush());
        p.close();
        if (rep > 0) {
          base.push(b);
          full.push(f);
        }
      }
      rows.push(
        makeRow({
          group: "logging",
          name: `pipeline lines/s (${mixed ? "10% with secrets" : "clean lines"})`,
          unit: "lines/s",
          samples: full,
          baseline: { name: "pino -> /dev/null", samples: base },
          goal: { on: "ratio", op: ">=", value: 0.5, label: "≥ 0.5×" },
        }),
      );
    }
    return { rows };
  },
};
