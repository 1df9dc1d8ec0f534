import { join } from "node:path";
import { GET_STATUS_PATH, startCara } from "../lib/cara.js";
import { LoadWorker } from "../lib/load.js";
import { sleep } from "../lib/procs.js";
import { makeRow, percentileSorted } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Goal } from "../lib/types.js";

const GOAL: Goal = { on: "value", op: "<=", value: 5, label: "≤ 5 ms" };

interface Scrape {
  renderMs: number;
  cpuMs: number;
  wallMs: number;
  bytes: number;
}

/** One scrape: the server's own cost (its Server-Timing header) and what the scraper waited. */
async function scrape(port: number, token: string): Promise<Scrape> {
  const started = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  const wallMs = performance.now() - started;
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const timing = res.headers.get("server-timing") ?? "";
  const renderMs = Number(/render;dur=([\d.]+)/.exec(timing)?.[1]);
  const cpuMs = Number(/cpu;dur=([\d.]+)/.exec(timing)?.[1]);
  return { renderMs, cpuMs, wallMs, bytes: Buffer.byteLength(body) };
}

/**
 * What a Prometheus scrape costs: the server's render time per scrape (collecting every value,
 * 1,000 tasks in the store) while 32 connections load it with GetStatus, and idle for reference.
 */
export const metrics: Benchmark = {
  name: "metrics",
  description: "GET /metrics render time (p50/p99) idle and under the 32-connection GetStatus load",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const cara = await startCara(opts.root, join(opts.tmp, "metrics-state"));
    const load = await LoadWorker.start();
    try {
      for (let i = 0; i < 10; i++) {
        await Promise.all(
          Array.from({ length: 100 }, (_, j) =>
            fetch(`http://127.0.0.1:${cara.port}/carapace.tasks.v1.TasksService/CreateTask`, {
              method: "POST",
              headers: { "content-type": "application/json", authorization: `Bearer ${cara.token}` },
              body: JSON.stringify({ payload: { systemEvent: { text: `bench ${i}.${j}` } } }),
            }).then((r) => r.text()),
          ),
        );
      }
      const scrapes = opts.quick ? 60 : 200;
      const series = async (underLoad: boolean) => {
        const out: Scrape[] = [];
        const running = underLoad
          ? load.run({
              mode: "h1",
              port: cara.port,
              path: GET_STATUS_PATH,
              headers: { "content-type": "application/json", authorization: `Bearer ${cara.token}` },
              body: Buffer.from("{}").toString("base64"),
              connections: opts.connections,
              warmupMs: 300,
              durationMs: scrapes * 40,
              expectStatus: 200,
            })
          : undefined;
        if (running) await sleep(500);
        // The values behind a scrape are cached for a second (5 s for update and backup): space
        // the scrapes so that some pay for a fresh collection.
        for (let i = 0; i < scrapes; i++) {
          out.push(await scrape(cara.port, cara.token));
          await sleep(i % 10 === 0 ? 1_050 : 10);
        }
        await running;
        return out;
      };
      opts.log("metrics: scrapes idle");
      const idle = await series(false);
      opts.log(`metrics: scrapes under ${opts.connections}-connection GetStatus load`);
      const loaded = await series(true);
      const p = (xs: number[], q: number) =>
        percentileSorted(
          [...xs].sort((a, b) => a - b),
          q,
        );
      const rows = [
        makeRow({
          group: "metrics",
          name: "/metrics render p99, idle",
          unit: "ms",
          samples: [
            p(
              idle.map((s) => s.renderMs),
              99,
            ),
          ],
        }),
        makeRow({
          group: "metrics",
          name: `/metrics render p50 under ${opts.connections}-connection load`,
          unit: "ms",
          samples: [
            p(
              loaded.map((s) => s.renderMs),
              50,
            ),
          ],
        }),
        makeRow({
          group: "metrics",
          name: `/metrics render CPU p99 under ${opts.connections}-connection load`,
          unit: "ms",
          samples: [
            p(
              loaded.map((s) => s.cpuMs),
              99,
            ),
          ],
          goal: GOAL,
        }),
        makeRow({
          group: "metrics",
          name: `/metrics render wall time p99 under ${opts.connections}-connection load`,
          unit: "ms",
          samples: [
            p(
              loaded.map((s) => s.renderMs),
              99,
            ),
          ],
        }),
        makeRow({
          group: "metrics",
          name: `/metrics wall time p99 under load (queueing behind ${opts.connections} connections included)`,
          unit: "ms",
          samples: [
            p(
              loaded.map((s) => s.wallMs),
              99,
            ),
          ],
        }),
        makeRow({ group: "metrics", name: "/metrics exposition size", unit: "KiB", samples: [idle[0]!.bytes / 1024] }),
      ];
      return { rows };
    } finally {
      await load.stop();
      await cara.stop();
    }
  },
};
