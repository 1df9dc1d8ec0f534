import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { analyzeProfile, formatSummary, type CpuProfile, type ProfileSummary } from "../lib/cpuprofile.js";
import { captureStatusJson, GET_STATUS_PATH, startCara } from "../lib/cara.js";
import { LoadWorker, type LoadResult, type LoadSpec } from "../lib/load.js";
import { plainWorker } from "../lib/plain.js";
import { forkWorker, nextMessage, stopProcess } from "../lib/procs.js";
import { makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Row } from "../lib/types.js";

const CONNECT_SERVER = fileURLToPath(new URL("../workers/connect-server.ts", import.meta.url));

async function readProfile(dir: string): Promise<{ profile: CpuProfile; file: string }> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
  // With tsx, the module-hooks worker thread writes its own (idle) profile: take the largest.
  const sized = await Promise.all(files.map(async (f) => ({ f: join(dir, f), size: (await stat(join(dir, f))).size })));
  const file = sized.sort((a, b) => b.size - a.size)[0]!.f;
  return { profile: JSON.parse(await readFile(file, "utf8")) as CpuProfile, file };
}

/**
 * Where the server's time goes under the Connect JSON GetStatus load: `node --cpu-prof` on the
 * real server (and on the connect-node-alone ablation server, for the library's share), then a
 * self-time breakdown per package/category of the samples inside the load window.
 */
export const profile: Benchmark = {
  name: "profile",
  description: "--cpu-prof of cara, of connect-node alone and of bare node:http under the Connect JSON GetStatus load",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const load = await LoadWorker.start();
    const rows: Row[] = [];
    const details: Record<string, unknown> = {};
    const texts: string[] = [];
    const durationMs = opts.quick ? 1500 : 10_000;
    try {
      const jsonSpec = (port: number, token: string, d: number): LoadSpec => ({
        mode: "h1",
        port,
        path: GET_STATUS_PATH,
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: Buffer.from("{}").toString("base64"),
        connections: opts.connections,
        warmupMs: Math.min(2000, opts.warmupMs),
        durationMs: d,
        expectStatus: 200,
      });
      const summarize = async (key: string, title: string, dir: string, r: LoadResult) => {
        const { profile: p, file } = await readProfile(dir);
        const s = analyzeProfile(p, opts.root, { startUs: r.windowStartUs, endUs: r.windowEndUs });
        const keep = join(opts.out, `${key}.cpuprofile`);
        await copyFile(file, keep);
        const usPerReq = r.requests > 0 ? (s.busyMs * 1000) / r.requests : NaN;
        const text = formatSummary(s, `${title} (${r.rps.toFixed(0)} req/s under the profiler, ${usPerReq.toFixed(0)} µs busy per request)`);
        texts.push(text);
        details[key] = { rpsUnderProfiler: r.rps, busyUsPerRequest: usPerReq, profileFile: `bench/.out/${key}.cpuprofile`, summary: s };
        return s;
      };

      // 1. cara itself.
      const profDir = join(opts.tmp, "prof-cara");
      await mkdir(profDir, { recursive: true });
      const cara = await startCara(opts.root, join(opts.tmp, "profile-state"), {
        nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profDir}`, "--cpu-prof-interval=500"],
      });
      let caraRun: LoadResult;
      let statusJson: { json: string; token: string };
      try {
        statusJson = { json: await captureStatusJson(cara.port, cara.token), token: cara.token };
        opts.log(`profile: cara under Connect JSON GetStatus load for ${durationMs} ms`);
        caraRun = await load.run(jsonSpec(cara.port, cara.token, durationMs));
      } finally {
        await cara.stop();
      }
      const caraSummary = await summarize("cara-getstatus-json", "cara GetStatus, Connect JSON", profDir, caraRun);
      addRows(rows, "profile: cara GetStatus (Connect JSON)", caraSummary);

      // 2. connect-node alone, constant answer: what the library costs by itself.
      const constDir = join(opts.tmp, "prof-const");
      await mkdir(constDir, { recursive: true });
      const proc = forkWorker(CONNECT_SERVER, [], { execArgv: ["--import", "tsx", "--cpu-prof", `--cpu-prof-dir=${constDir}`, "--cpu-prof-interval=500"] });
      proc.stdout?.resume();
      proc.stderr?.resume();
      let constRun: LoadResult;
      try {
        proc.send({ type: "config", variant: "const", statusJson: statusJson.json, token: statusJson.token, stateDir: join(opts.tmp, "prof-const-state") });
        const { port } = await nextMessage<{ port: number }>(proc, (m) => m?.type === "listening", 20_000, "connect-const start");
        opts.log(`profile: connect-node alone (constant GetStatus) for ${durationMs} ms`);
        constRun = await load.run(jsonSpec(port, statusJson.token, durationMs));
      } finally {
        // A clean exit (not a kill) makes V8 write the profile.
        const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
        if (proc.connected) proc.disconnect();
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        await stopProcess(proc, "SIGTERM", 5000);
      }
      const constSummary = await summarize("connect-const-json", "connect-node alone, constant GetStatus, Connect JSON", constDir, constRun);
      addRows(rows, "profile: connect-node alone (constant GetStatus)", constSummary);

      // 3. The bare node:http baseline: what Node's HTTP/1.1 itself costs per request.
      const bareDir = join(opts.tmp, "prof-bare");
      await mkdir(bareDir, { recursive: true });
      const bareScript = await plainWorker("../workers/bare-server.ts", opts.tmp);
      const bare = forkWorker(bareScript, [], { execArgv: ["--cpu-prof", `--cpu-prof-dir=${bareDir}`, "--cpu-prof-interval=500"] });
      bare.stdout?.resume();
      bare.stderr?.resume();
      let bareRun: LoadResult;
      try {
        bare.send({ type: "config", body: statusJson.json });
        const { port } = await nextMessage<{ port: number }>(bare, (m) => m?.type === "listening", 20_000, "bare start");
        opts.log(`profile: bare node:http for ${durationMs} ms`);
        bareRun = await load.run(jsonSpec(port, statusJson.token, durationMs));
      } finally {
        const exited = new Promise<void>((resolve) => bare.once("exit", () => resolve()));
        if (bare.connected) bare.disconnect();
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        await stopProcess(bare, "SIGTERM", 5000);
      }
      const bareSummary = await summarize("bare-json", "bare node:http JSON", bareDir, bareRun);
      addRows(rows, "profile: bare node:http (baseline)", bareSummary);

      const txt = join(opts.out, "profile-summary.txt");
      await writeFile(txt, `${texts.join("\n\n")}\n`);
      opts.log(`profile: summaries in bench/.out/profile-summary.txt, profiles in bench/.out/*.cpuprofile`);
      return {
        rows,
        details,
        notes: [
          "profile: one profiled run each (so median = min = max); % of busy (non-idle) CPU samples inside the load window; 'attributed' charges Node-internal/native frames to their nearest caller in a package or in our code.",
        ],
      };
    } finally {
      await load.stop();
    }
  },
};

function addRows(rows: Row[], group: string, s: ProfileSummary): void {
  for (const c of s.attributed.slice(0, 10)) {
    if (c.pct < 0.5) continue;
    rows.push(makeRow({ group, name: `attributed: ${c.name}`, unit: "% CPU", samples: [c.pct] }));
  }
}
