/**
 * The task queue on PostgreSQL (issue 19), on a throwaway cluster started for the run with fsync
 * on (test/helpers/postgres.ts): durable creates/s and the wake-up + claim latency with 1, 2 and 4
 * real `cara start` servers sharing one database, beside one server on the file store, and beside
 * `pgbench`'s simple-update rate on the same cluster with the same client count (the database's
 * own ceiling for small durable transactions). Also the PgTaskStore alone in this process (no RPC
 * layer), which separates the store's cost from the server's.
 *
 * - creates/s: CLIENTS connections, each with one CreateTask (Connect binary over HTTP/1.1) in
 *   flight, spread round-robin over the servers, for a fixed time; the tasks are due in a day, so
 *   no worker runs them. The load comes from the raw HTTP/1.1 load worker in its own process (as
 *   in the unary benchmarks): like pgbench's C client it costs little CPU, which leaves the two
 *   cores to the servers and the database (a connect-node client in this process cost 0.5 to
 *   1.2 ms of CPU per create, as much as a server).
 * - claim latency: one task at a time on an idle queue, created on the servers in turn; from the
 *   acknowledgement of CreateTask to the attempt's start, i.e. the agentTurn executor's request
 *   reaching a local LLM endpoint (test/helpers/recording-agent.ts). It includes the wake-up
 *   (the local change event, or another server's NOTIFY), the claim transaction and the start.
 */
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CreateTaskRequestSchema, TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { DEFAULT_POLICY } from "../../src/tasks/model.js";
import { PgTaskStore } from "../../src/tasks/postgres/pg-store.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../../test/helpers/postgres.js";
import { startRecordingAgent, type RecordingAgent } from "../../test/helpers/recording-agent.js";
import { startCara, type RunningCara } from "../lib/cara.js";
import { LoadWorker } from "../lib/load.js";
import { cpuTimeMs } from "../lib/procs.js";
import { makeRow, median, percentileSorted, unavailableRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Row } from "../lib/types.js";

const run = promisify(execFile);
const GROUP = "tasks-postgres";
const CLIENTS = 32;
const SERVER_COUNTS = [1, 2, 4] as const;
const CREATE_TASK_PATH = `/${TasksService.typeName}/CreateTask`;

type Tasks = Client<typeof TasksService>;

function tasksClient(cara: RunningCara): Tasks {
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${cara.port}`,
    httpVersion: "1.1",
    useBinaryFormat: true,
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${cara.token}`);
        return next(req);
      },
    ],
  });
  return createClient(TasksService, transport);
}

/** CLIENTS loops of `create(client index)` for durationMs: creates/s and latency percentiles (ms). */
async function drive(create: (i: number) => Promise<unknown>, durationMs: number): Promise<{ rate: number; p50: number; p99: number; count: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await create(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / elapsed, p50: percentileSorted(latencies, 50), p99: percentileSorted(latencies, 99), count: latencies.length };
}

/** `n` servers on the store `tasks` config, each calling the agent under its own base URL. */
async function startServers(
  opts: BenchOptions,
  label: string,
  n: number,
  tasks: object,
  agent: RecordingAgent,
  env: Record<string, string>,
): Promise<RunningCara[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const dir = join(opts.tmp, `${label}-${i}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify({ tasks: { capacity: 1_000_000, ...tasks }, agent: { baseUrl: agent.urlFor(`s${i}`), model: "m" } }),
      );
      return startCara(opts.root, dir, { env });
    }),
  );
}

/** Creates/s through the servers (from `load`), then the claim latency of `samples` tasks one at a time. */
async function measureServers(servers: RunningCara[], agent: RecordingAgent, load: LoadWorker, warmupMs: number, durationMs: number, samples: number) {
  const clients = servers.map(tasksClient);
  const body = toBinary(
    CreateTaskRequestSchema,
    create(CreateTaskRequestSchema, {
      payload: { kind: { case: "systemEvent", value: { text: "bench" } } },
      nextRunAtMs: BigInt(Date.now() + 86_400_000),
    }),
  );
  const spec = {
    mode: "h1" as const,
    port: servers[0]!.port,
    path: CREATE_TASK_PATH,
    headers: {},
    targets: servers.map((s) => ({ port: s.port, headers: { "content-type": "application/proto", authorization: `Bearer ${s.token}` } })),
    body: Buffer.from(body).toString("base64"),
    connections: CLIENTS,
    warmupMs: 0,
    expectStatus: 200,
  };
  const run = async (ms: number) => {
    const r = await load.run({ ...spec, durationMs: ms });
    if (r.errors > 0) throw new Error(`CreateTask failed ${r.errors} time(s) under load: ${r.firstError ?? JSON.stringify(r.statuses)}`);
    return r;
  };
  // Fresh servers reach their steady rate only after several seconds (V8 optimizes the hot paths
  // as they run, and n servers each see 1/n of the calls): measured, 4 servers sharing the load
  // went from 900 to 1,500 creates/s over their first 15 s, and a file-store server's CPU per
  // create fell by a third over its first 4 s. The rate reported is the steady one.
  await run(warmupMs);
  const cpuBefore = servers.reduce((sum, s) => sum + cpuTimeMs(s.pid), 0);
  const r = await run(durationMs);
  // All servers' CPU time (the one taking the RPC, and the others reading the change back) per create.
  const cpuPerCreateMs = (servers.reduce((sum, s) => sum + cpuTimeMs(s.pid), 0) - cpuBefore) / r.requests;
  const creates = { rate: r.rps, p99: r.latencyMs.p99, count: r.requests, driverCpuMs: (r.cpu.userMs + r.cpu.systemMs) / r.requests };
  const latencies: number[] = [];
  for (let i = 0; i < samples + 5; i++) {
    const message = `claim ${i} ${Math.random()}`;
    const started = new Promise<number>((resolve) => {
      agent.onRequest = (r) => {
        if (r.message === message) resolve(r.atMs);
      };
    });
    await clients[i % clients.length]!.createTask({ payload: { kind: { case: "agentTurn", value: { message, timeoutSeconds: 30 } } } });
    const ackMs = performance.timeOrigin + performance.now();
    const atMs = await started;
    // The first few wake cold code paths (and connections): not counted.
    if (i >= 5) latencies.push(Math.max(0, atMs - ackMs));
  }
  agent.onRequest = undefined;
  latencies.sort((a, b) => a - b);
  return { creates, cpuPerCreateMs, claimP50: percentileSorted(latencies, 50), claimP99: percentileSorted(latencies, 99) };
}

/**
 * pgbench's built-in simple-update script (-N) on its own database of the same cluster:
 * transactions/s, without the time its clients took to connect (which -T includes: 32 password
 * handshakes can take seconds on a busy machine, hence the 3 s more).
 */
async function pgbench(cluster: TestPostgres, durationMs: number): Promise<number> {
  const env = { ...process.env, PGPASSWORD: cluster.password, PGHOST: "127.0.0.1", PGPORT: String(cluster.port), PGUSER: "cara" };
  const { stdout, stderr } = await run(
    join(cluster.bin, "pgbench"),
    ["-N", "-n", "-c", String(CLIENTS), "-j", "2", "-T", String(Math.round(durationMs / 1000) + 3), "pgbench"],
    { env },
  );
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  if (!tps) throw new Error(`pgbench printed no tps: ${`${stdout}\n${stderr}`.replace(/\s+/g, " ").slice(0, 600)}`);
  return Number(tps[1]);
}

export const tasksPostgres: Benchmark = {
  name: "tasks-postgres",
  description:
    "Task queue on PostgreSQL (fsync on): durable creates/s and create-to-start latency with 1, 2 and 4 servers on one database, vs pgbench simple-update (same cluster, same clients) and the file store",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const missing = postgresUnavailable();
    if (missing !== undefined) {
      opts.log(`tasks-postgres: SKIPPED: ${missing}`);
      return { rows: [unavailableRow(GROUP, "PostgreSQL task store", "", `skipped: ${missing}`)], notes: [`tasks-postgres: skipped: ${missing}`] };
    }
    const reps = opts.quick ? 1 : Math.min(opts.reps, 3);
    const durationMs = opts.quick ? 2000 : 4000;
    const warmupMs = opts.quick ? 2000 : 10_000;
    const samples = opts.quick ? 40 : 100;
    const cluster = await startPostgres({ durable: true });
    const agent = await startRecordingAgent();
    const load = await LoadWorker.start();
    try {
      const pgEnv = { PGPASSWORD: cluster.password, PGHOST: "127.0.0.1", PGPORT: String(cluster.port), PGUSER: "cara" };
      // pgbench comes with the server on Debian; a build without it measures cara alone (no ratios).
      const hasPgbench = existsSync(join(cluster.bin, "pgbench"));
      if (hasPgbench) {
        await cluster.createDatabase("pgbench");
        await run(join(cluster.bin, "pgbench"), ["-i", "-q", "-s", "1", "pgbench"], { env: { ...process.env, ...pgEnv } });
      } else opts.log(`tasks-postgres: pgbench not found in ${cluster.bin}: no ceiling to compare with (the ratios stay empty)`);
      const ceiling: number[] = [];
      const store: number[] = [];
      const storeP99: number[] = [];
      const storeCpu: number[] = [];
      const file = { rate: [] as number[], p99: [] as number[], cpu: [] as number[], claimP50: [] as number[], claimP99: [] as number[] };
      const pg = new Map(
        SERVER_COUNTS.map((n) => [n, { rate: [] as number[], p99: [] as number[], cpu: [] as number[], claimP50: [] as number[], claimP99: [] as number[] }]),
      );
      let db = 0;
      for (let rep = 0; rep < reps; rep++) {
        if (hasPgbench) ceiling.push(await pgbench(cluster, durationMs));
        // The store alone, in this process: the same 32 concurrent creates, no RPC layer.
        const direct = await PgTaskStore.open({ url: await cluster.createDatabase(`direct${rep}`), capacity: 1_000_000, retentionMs: 0 });
        try {
          const init = () => ({
            payload: { kind: "systemEvent" as const, text: "bench" },
            policy: { ...DEFAULT_POLICY },
            nextRunAtMs: Date.now() + 86_400_000,
          });
          await drive(() => direct.create(init()), 500);
          const cpu0 = process.cpuUsage();
          const d = await drive(() => direct.create(init()), durationMs);
          const cpu = process.cpuUsage(cpu0);
          storeCpu.push((cpu.user + cpu.system) / 1000 / d.count);
          store.push(d.rate);
          storeP99.push(d.p99);
        } finally {
          await direct.close();
        }
        const fileServers = await startServers(opts, "pgtasks-file", 1, {}, agent, {});
        try {
          const m = await measureServers(fileServers, agent, load, warmupMs, durationMs, samples);
          file.rate.push(m.creates.rate);
          file.p99.push(m.creates.p99);
          file.cpu.push(m.cpuPerCreateMs);
          file.claimP50.push(m.claimP50);
          file.claimP99.push(m.claimP99);
        } finally {
          await Promise.all(fileServers.map((s) => s.stop()));
        }
        for (const n of SERVER_COUNTS) {
          const url = await cluster.createDatabase(`cara${++db}`);
          const servers = await startServers(opts, `pgtasks-${n}`, n, { store: "postgres" }, agent, { CARAPACE_DATABASE_URL: url });
          try {
            const m = await measureServers(servers, agent, load, warmupMs, durationMs, samples);
            const into = pg.get(n)!;
            into.rate.push(m.creates.rate);
            into.p99.push(m.creates.p99);
            into.cpu.push(m.cpuPerCreateMs);
            into.claimP50.push(m.claimP50);
            into.claimP99.push(m.claimP99);
            opts.log(
              `tasks-postgres rep ${rep}, ${n} server(s): ${m.creates.rate.toFixed(0)} creates/s (p99 ${m.creates.p99.toFixed(1)} ms; CPU per create: servers ${m.cpuPerCreateMs.toFixed(2)} ms, load driver ${m.creates.driverCpuMs.toFixed(2)} ms); create-to-start p50 ${m.claimP50.toFixed(1)} ms, p99 ${m.claimP99.toFixed(1)} ms`,
            );
          } finally {
            await Promise.all(servers.map((s) => s.stop()));
          }
        }
        opts.log(
          `tasks-postgres rep ${rep}: pgbench -N ${ceiling.at(-1)?.toFixed(0) ?? "(not run)"} tps; PgTaskStore alone ${store.at(-1)!.toFixed(0)} creates/s; file store server ${file.rate.at(-1)!.toFixed(0)} creates/s`,
        );
      }
      const ceilingRow = { name: `pgbench simple-update (-N), ${CLIENTS} clients`, samples: ceiling };
      const rows: Row[] = [
        makeRow({ group: GROUP, name: `pgbench simple-update (-N), ${CLIENTS} clients: the database's ceiling`, unit: "tx/s", samples: ceiling }),
        makeRow({
          group: GROUP,
          name: `PgTaskStore alone (no RPC), ${CLIENTS} clients: durable creates/s`,
          unit: "creates/s",
          samples: store,
          baseline: ceilingRow,
          goal: { on: "ratio", op: ">=", value: 0.5, label: "≥ 0.5× pgbench" },
        }),
        makeRow({ group: GROUP, name: "PgTaskStore alone: create p99 latency", unit: "ms", samples: storeP99 }),
        makeRow({ group: GROUP, name: "PgTaskStore alone: CPU per create (this process)", unit: "ms", samples: storeCpu }),
        makeRow({
          group: GROUP,
          name: `1 server, file store, ${CLIENTS} clients (CreateTask): durable creates/s`,
          unit: "creates/s",
          samples: file.rate,
          baseline: ceilingRow,
        }),
        makeRow({ group: GROUP, name: "1 server, file store: server CPU per create", unit: "ms", samples: file.cpu }),
        makeRow({ group: GROUP, name: "1 server, file store: create-to-start p50", unit: "ms", samples: file.claimP50 }),
        makeRow({ group: GROUP, name: "1 server, file store: create-to-start p99", unit: "ms", samples: file.claimP99 }),
      ];
      for (const n of SERVER_COUNTS) {
        const m = pg.get(n)!;
        const label = `${n} server${n === 1 ? "" : "s"}, PostgreSQL`;
        rows.push(
          makeRow({
            group: GROUP,
            name: `${label}, ${CLIENTS} clients (CreateTask): durable creates/s`,
            unit: "creates/s",
            samples: m.rate,
            baseline: ceilingRow,
            goal: { on: "ratio", op: ">=", value: 0.5, label: "≥ 0.5× pgbench" },
            note: `${ratioText(m.rate, file.rate)} of the file store's server`,
          }),
          makeRow({ group: GROUP, name: `${label}: create p99 latency`, unit: "ms", samples: m.p99 }),
          makeRow({
            group: GROUP,
            name: `${label}: servers' CPU per create`,
            unit: "ms",
            samples: m.cpu,
            baseline: { name: "file store server CPU per create", samples: file.cpu },
          }),
          makeRow({
            group: GROUP,
            name: `${label}: create-to-start p50`,
            unit: "ms",
            samples: m.claimP50,
            baseline: { name: "file store p50", samples: file.claimP50 },
          }),
          makeRow({
            group: GROUP,
            name: `${label}: create-to-start p99`,
            unit: "ms",
            samples: m.claimP99,
            baseline: { name: "file store p99", samples: file.claimP99 },
            goal: { on: "value", op: "<=", value: 50, label: "≤ 50 ms" },
          }),
        );
      }
      return {
        rows,
        notes: [
          `tasks-postgres: a throwaway PostgreSQL cluster with fsync on, on this machine's disk; every server, the load driver, pgbench and PostgreSQL share its ${"cores"}.`,
          "tasks-postgres: create-to-start is measured one task at a time on an idle queue, from the CreateTask acknowledgement to the executor's request reaching a local endpoint.",
        ],
      };
    } finally {
      await load.stop();
      await agent.close();
      await cluster.stop();
    }
  },
};

function ratioText(a: number[], b: number[]): string {
  const ma = median(a);
  const mb = median(b);
  return ma !== null && mb ? `${(ma / mb).toFixed(2)}×` : "n/a";
}
