import { join } from "node:path";
import { captureStatusJson, GET_STATUS_PATH, startCara } from "../lib/cara.js";
import { LoadWorker } from "../lib/load.js";
import { peakRssBytes, rssBytes, sleep } from "../lib/procs.js";
import { startBare } from "../lib/servers.js";
import { median, makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Row } from "../lib/types.js";

const MiB = 1024 * 1024;

/** Samples VmRSS of `pid` every `everyMs` until `until` resolves. */
async function sampleWhile(pid: number, until: Promise<unknown>, everyMs = 200): Promise<number[]> {
  const samples: number[] = [];
  let done = false;
  void until.finally(() => (done = true));
  while (!done) {
    samples.push(rssBytes(pid));
    await Promise.race([sleep(everyMs), until.catch(() => undefined)]);
  }
  return samples.filter((v) => Number.isFinite(v));
}

/**
 * Server memory: RSS of a freshly started, idle cara (after it settles), and under the Connect
 * JSON GetStatus load of the unary benchmark; the bare node:http server measured the same way is
 * the baseline.
 */
export const memory: Benchmark = {
  name: "memory",
  description: "server RSS idle and under the Connect JSON GetStatus load, vs bare node:http",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const load = await LoadWorker.start();
    const cara = await startCara(opts.root, join(opts.tmp, "memory-state"));
    const stops: { stop(): Promise<void> }[] = [cara];
    try {
      const statusJson = await captureStatusJson(cara.port, cara.token);
      const bare = await startBare(opts.tmp, statusJson);
      stops.push(bare);
      const settle = opts.quick ? 1000 : 3000;
      await sleep(settle);
      const idle = async (pid: number) => {
        const s: number[] = [];
        for (let i = 0; i < 5; i++) {
          s.push(rssBytes(pid));
          await sleep(100);
        }
        return median(s)! / MiB;
      };
      const caraIdle = [await idle(cara.pid)];
      const bareIdle = [await idle(bare.pid)];
      const caraLoadMedian: number[] = [];
      const caraLoadMax: number[] = [];
      const bareLoadMedian: number[] = [];
      const bareLoadMax: number[] = [];
      const reps = opts.quick ? 1 : 3;
      const durationMs = opts.quick ? 2000 : opts.durationMs;
      for (let rep = 0; rep < reps; rep++) {
        for (const [pid, port, med, max] of [
          [cara.pid, cara.port, caraLoadMedian, caraLoadMax],
          [bare.pid, bare.port, bareLoadMedian, bareLoadMax],
        ] as const) {
          const run = load.run({
            mode: "h1",
            port,
            path: GET_STATUS_PATH,
            headers: { "content-type": "application/json", authorization: `Bearer ${cara.token}` },
            body: Buffer.from("{}").toString("base64"),
            connections: opts.connections,
            warmupMs: 500,
            durationMs,
            expectStatus: 200,
          });
          const s = await sampleWhile(pid, run);
          await run;
          med.push(median(s)! / MiB);
          max.push(Math.max(...s) / MiB);
        }
        opts.log(`memory: rep ${rep + 1}/${reps}: cara RSS under load max ${caraLoadMax.at(-1)!.toFixed(1)} MiB, bare ${bareLoadMax.at(-1)!.toFixed(1)} MiB`);
      }
      await sleep(1000);
      const caraAfter = [await idle(cara.pid)];
      const rows: Row[] = [];
      const g = "memory";
      rows.push(makeRow({ group: g, name: "cara RSS idle (after start)", unit: "MiB", samples: caraIdle, baseline: { name: "bare idle", samples: bareIdle } }));
      rows.push(
        makeRow({
          group: g,
          name: "cara RSS under load (median of samples)",
          unit: "MiB",
          samples: caraLoadMedian,
          baseline: { name: "bare under load", samples: bareLoadMedian },
        }),
      );
      rows.push(
        makeRow({
          group: g,
          name: "cara RSS under load (max)",
          unit: "MiB",
          samples: caraLoadMax,
          baseline: { name: "bare under load", samples: bareLoadMax },
        }),
      );
      rows.push(makeRow({ group: g, name: "cara RSS 1 s after the load", unit: "MiB", samples: caraAfter }));
      rows.push(makeRow({ group: g, name: "cara peak RSS (VmHWM)", unit: "MiB", samples: [peakRssBytes(cara.pid) / MiB] }));
      return {
        rows,
        notes: [`memory: VmRSS from /proc/PID/status, sampled every 200 ms during ${reps} × ${durationMs} ms of load (${opts.connections} connections).`],
      };
    } finally {
      await load.stop();
      for (const s of stops.reverse()) await s.stop().catch(() => undefined);
    }
  },
};
