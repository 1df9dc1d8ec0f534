import { join } from "node:path";
import { captureStatusBinary, captureStatusJson, GET_STATUS_PATH, HEALTH_CHECK_PATH, startCara, type RunningCara } from "../lib/cara.js";
import { LoadWorker, type LoadResult, type LoadSpec } from "../lib/load.js";
import { cpuTimeMs, sleep } from "../lib/procs.js";
import { startBare, startConnectVariant, type WorkerServer } from "../lib/servers.js";
import { makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Goal, Row } from "../lib/types.js";

const GOAL: Goal = { on: "ratio", op: ">=", value: 0.35, label: "≥ 0.35× bare" };
const JSON_BODY = Buffer.from("{}").toString("base64");
const EMPTY = "";
const GRPC_EMPTY_FRAME = Buffer.alloc(5).toString("base64");

interface Target {
  key: string;
  label: string;
  /** Part of the quick run. */
  quick: boolean;
  /** full: throughput, latency, CPU rows; short: throughput and CPU per request only. */
  detail?: "full" | "short";
  goal?: Goal;
  pid(): number;
  spec(base: Pick<LoadSpec, "connections" | "warmupMs" | "durationMs">): LoadSpec;
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  clientCpu: number;
  serverCpu: number;
  serverUsPerReq: number;
  errors: number;
}

/**
 * Unary RPC overhead: GetStatus under a closed loop of N keep-alive connections, against a bare
 * node:http JSON handler in the same run, plus the connect-node ablation ladder that separates
 * the library's cost from ours.
 */
export const unary: Benchmark = {
  name: "unary",
  description: "GetStatus req/s and latency over Connect JSON, Connect binary and gRPC (h2c) vs bare node:http",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const started: { stop(): Promise<void> }[] = [];
    let load: LoadWorker | undefined;
    try {
      const cara: RunningCara = await startCara(opts.root, join(opts.tmp, "unary-state"));
      started.push(cara);
      const statusJson = await captureStatusJson(cara.port, cara.token);
      const bare: WorkerServer = await startBare(opts.tmp, statusJson, await captureStatusBinary(cara.port, cara.token));
      started.push(bare);
      const variants: Record<string, WorkerServer> = {};
      for (const v of opts.quick ? (["const", "cached"] as const) : (["const", "gated", "live", "cached"] as const)) {
        variants[v] = await startConnectVariant(v, statusJson, cara.token, join(opts.tmp, `connect-${v}-state`));
        started.push(variants[v]!);
      }
      load = await LoadWorker.start();

      const json =
        (port: number, path = GET_STATUS_PATH) =>
        (base: Pick<LoadSpec, "connections" | "warmupMs" | "durationMs">): LoadSpec => ({
          mode: "h1",
          port,
          path,
          headers: { "content-type": "application/json", authorization: `Bearer ${cara.token}` },
          body: JSON_BODY,
          expectStatus: 200,
          ...base,
        });
      const targets: Target[] = [
        { key: "bare", label: "bare node:http JSON (baseline)", quick: true, pid: () => bare.pid, spec: json(bare.port) },
        { key: "cara-json", label: "cara GetStatus, Connect JSON (HTTP/1.1)", quick: true, goal: GOAL, pid: () => cara.pid, spec: json(cara.port) },
        {
          key: "cara-binary",
          label: "cara GetStatus, Connect binary (HTTP/1.1)",
          quick: true,
          goal: GOAL,
          pid: () => cara.pid,
          spec: (base) => ({
            mode: "h1",
            port: cara.port,
            path: GET_STATUS_PATH,
            headers: { "content-type": "application/proto", authorization: `Bearer ${cara.token}` },
            body: EMPTY,
            expectStatus: 200,
            ...base,
          }),
        },
        {
          key: "cara-grpc",
          label: "cara GetStatus, gRPC (h2c)",
          quick: true,
          goal: GOAL,
          pid: () => cara.pid,
          spec: (base) => ({
            mode: "h2",
            port: cara.port,
            path: GET_STATUS_PATH,
            headers: { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${cara.token}` },
            body: GRPC_EMPTY_FRAME,
            expectStatus: 200,
            grpc: true,
            ...base,
          }),
        },
        {
          key: "bare-h2",
          label: "bare node:http2 gRPC (h2c), reference for gRPC",
          // In the quick run too: issue 17's gRPC goal is a ratio to it.
          quick: true,
          pid: () => bare.pid,
          spec: (base) => ({
            mode: "h2",
            port: bare.h2Port!,
            path: GET_STATUS_PATH,
            headers: { "content-type": "application/grpc", te: "trailers" },
            body: GRPC_EMPTY_FRAME,
            expectStatus: 200,
            grpc: true,
            ...base,
          }),
        },
        {
          key: "cara-health",
          label: "cara grpc.health.v1 Check, Connect JSON (no token, cached)",
          quick: false,
          detail: "short",
          pid: () => cara.pid,
          spec: json(cara.port, HEALTH_CHECK_PATH),
        },
      ];
      const ladder: [string, string, boolean][] = [
        ["const", "ablation: connect-node alone, constant GetStatus (Connect JSON)", true],
        ["gated", "ablation: + cara's adapter options (auth gate, context values), constant", false],
        ["live", "ablation: + real GetStatus work from src/ (= cara minus its listener)", false],
        ["cached", "proposed: live with diagnostics (statfs, fd count, RSS) cached 500 ms", true],
      ];
      for (const [v, label, quick] of ladder) {
        const server = variants[v];
        if (server) targets.push({ key: `connect-${v}`, label, quick, detail: "short", pid: () => server.pid, spec: json(server.port) });
      }
      const active = targets.filter((t) => !opts.quick || t.quick);
      const base = { connections: opts.connections, warmupMs: opts.quick ? 300 : 1000, durationMs: opts.durationMs };

      const runOne = async (t: Target, b: typeof base): Promise<{ r: LoadResult; serverCpuMs: number }> => {
        const pid = t.pid();
        // Sample the server's CPU time at the start and the end of the measured window.
        let c0 = NaN;
        const t0 = setTimeout(() => (c0 = cpuTimeMs(pid)), b.warmupMs);
        const r = await load!.run(t.spec(b));
        clearTimeout(t0);
        const c1 = cpuTimeMs(pid);
        return { r, serverCpuMs: c1 - c0 };
      };

      // Warm-up: one discarded run per target (JIT, caches, connections).
      opts.log(`unary: warm-up (${active.length} targets × ${opts.warmupMs} ms)`);
      for (const t of active) await runOne(t, { ...base, warmupMs: 200, durationMs: opts.warmupMs });

      const samples = new Map<string, Sample[]>(active.map((t) => [t.key, []]));
      const firstErrors = new Map<string, string>();
      for (let rep = 0; rep < opts.reps; rep++) {
        // Interleave the targets, rotating the order, so drift hits them all alike.
        const order = active.map((_, i) => active[(i + rep) % active.length]!);
        for (const t of order) {
          const { r, serverCpuMs } = await runOne(t, base);
          if (r.firstError && !firstErrors.has(t.key)) firstErrors.set(t.key, r.firstError);
          if (r.errors > 0 && !firstErrors.has(t.key)) firstErrors.set(t.key, `unexpected statuses ${JSON.stringify(r.statuses)}`);
          samples.get(t.key)!.push({
            rps: r.rps,
            p50: r.latencyMs.p50,
            p99: r.latencyMs.p99,
            clientCpu: r.cpu.pctOfCore,
            serverCpu: (serverCpuMs / r.elapsedMs) * 100,
            serverUsPerReq: r.requests > 0 ? (serverCpuMs * 1000) / r.requests : NaN,
            errors: r.errors,
          });
          opts.log(
            `unary: rep ${rep + 1}/${opts.reps} ${t.key.padEnd(14)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.latencyMs.p50.toFixed(2)} ms  p99 ${r.latencyMs.p99.toFixed(2)} ms  ` +
              `load CPU ${r.cpu.pctOfCore.toFixed(0)}%  server CPU ${((serverCpuMs / r.elapsedMs) * 100).toFixed(0)}%${r.errors ? `  errors ${r.errors}` : ""}`,
          );
          await sleep(100);
        }
      }

      const rows: Row[] = [];
      const bareS = samples.get("bare")!;
      const pick = (s: Sample[], k: keyof Sample) => s.map((x) => x[k]);
      for (const t of active) {
        const s = samples.get(t.key)!;
        const isBare = t.key === "bare";
        const baseline = (k: keyof Sample) => (isBare ? undefined : { name: "bare", samples: pick(bareS, k) });
        const g = "unary";
        const errs = s.reduce((a, x) => a + x.errors, 0);
        const note = errs > 0 ? `${errs} errors: ${firstErrors.get(t.key) ?? ""}` : undefined;
        rows.push(
          makeRow({
            group: g,
            name: `${t.label}: throughput`,
            unit: "req/s",
            samples: pick(s, "rps"),
            baseline: baseline("rps"),
            ...(t.goal ? { goal: t.goal } : {}),
            ...(note ? { note } : {}),
          }),
        );
        if (t.key === "cara-grpc" && samples.has("bare-h2")) {
          rows.push(
            makeRow({
              group: g,
              name: `${t.label}: throughput vs bare node:http2 gRPC`,
              unit: "req/s",
              samples: pick(s, "rps"),
              baseline: { name: "bare h2", samples: pick(samples.get("bare-h2")!, "rps") },
            }),
          );
        }
        if (t.detail !== "short") {
          rows.push(makeRow({ group: g, name: `${t.label}: p50 latency`, unit: "ms", samples: pick(s, "p50"), baseline: baseline("p50") }));
          rows.push(makeRow({ group: g, name: `${t.label}: p99 latency`, unit: "ms", samples: pick(s, "p99"), baseline: baseline("p99") }));
        }
        rows.push(
          makeRow({
            group: g,
            name: `${t.label}: server CPU per request`,
            unit: "µs",
            samples: pick(s, "serverUsPerReq"),
            baseline: baseline("serverUsPerReq"),
          }),
        );
        if (t.detail !== "short") rows.push(makeRow({ group: g, name: `${t.label}: server CPU`, unit: "% core", samples: pick(s, "serverCpu") }));
        rows.push(makeRow({ group: g, name: `${t.label}: load tool CPU`, unit: "% core", samples: pick(s, "clientCpu") }));
      }
      return {
        rows,
        details: { connections: opts.connections, durationMs: opts.durationMs, reps: opts.reps, statusJsonBytes: Buffer.byteLength(statusJson) },
        notes: [
          `unary: ${opts.connections} keep-alive connections, closed loop (one request in flight each), ${opts.reps} × ${opts.durationMs} ms per target after a warm-up; targets interleaved.`,
          "unary: 'server CPU per request' = server process CPU time in the window / successful requests: the cost that does not depend on how the load tool and the server share the cores.",
        ],
      };
    } finally {
      await load?.stop();
      for (const s of started.reverse()) await s.stop().catch(() => undefined);
    }
  },
};
