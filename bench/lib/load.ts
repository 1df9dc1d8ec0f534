import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { forkWorker, nextMessage, stopProcess } from "./procs.js";

/** What the load worker should do for one repetition. */
export interface LoadSpec {
  /**
   * h1: a minimal HTTP/1.1 client on raw sockets (keep-alive, one request in flight per
   * connection); h1-nodehttp: node:http with a keep-alive Agent; h2: node:http2, one session per
   * connection and one stream in flight per session.
   */
  mode: "h1" | "h1-nodehttp" | "h2";
  port: number;
  path: string;
  method?: string;
  headers: Record<string, string>;
  /** Request body, base64. */
  body: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** HTTP status that counts as success. */
  expectStatus: number;
  /** For gRPC: also require grpc-status 0 (from the headers of a trailers-only answer or the trailers). */
  grpc?: boolean;
  /**
   * Spread the connections over many loopback source addresses (127.x.y.z): after `perAddress`
   * responses a connection is closed and reopened from the next address. Used to produce many
   * failed-auth log lines without hitting the per-address limiter.
   */
  rotateAddresses?: { start: number; perAddress: number };
  /**
   * h1 only: several servers under one load. The connections are spread round-robin over these
   * (each with its own port and headers, e.g. its own token) instead of `port` and `headers`.
   */
  targets?: { port: number; headers: Record<string, string> }[];
}

export interface LoadResult {
  /** Successful responses completed inside the measured window. */
  requests: number;
  /** Unexpected statuses, connection errors. */
  errors: number;
  statuses: Record<string, number>;
  elapsedMs: number;
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** The load worker's own CPU use during the window (process.cpuUsage). */
  cpu: { userMs: number; systemMs: number; pctOfCore: number };
  /** The window on the shared monotonic clock (process.hrtime), in µs. */
  windowStartUs: number;
  windowEndUs: number;
  /** rotateAddresses: the next unused address index. */
  nextAddress?: number;
  firstError?: string;
}

const WORKER = fileURLToPath(new URL("../workers/load-worker.ts", import.meta.url));

/** A load-generator process (bench/workers/load-worker.ts), reused for many repetitions. */
export class LoadWorker {
  private constructor(private readonly proc: ChildProcess) {}
  private seq = 0;

  static async start(): Promise<LoadWorker> {
    const proc = forkWorker(WORKER);
    proc.stderr?.on("data", (c: Buffer) => process.stderr.write(`[load-worker] ${c.toString()}`));
    proc.stdout?.resume();
    await nextMessage(proc, (m) => m?.type === "ready", 20_000, "load worker start");
    return new LoadWorker(proc);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async run(spec: LoadSpec): Promise<LoadResult> {
    const id = ++this.seq;
    const answer = nextMessage<{ type: "result"; id: number; result?: LoadResult; error?: string }>(
      this.proc,
      (m) => m?.type === "result" && m.id === id,
      spec.warmupMs + spec.durationMs + 30_000,
      `load ${spec.mode} ${spec.path}`,
    );
    this.proc.send({ type: "run", id, spec });
    const msg = await answer;
    if (msg.error !== undefined || !msg.result) throw new Error(`load worker: ${msg.error}`);
    return msg.result;
  }

  async stop(): Promise<void> {
    if (this.proc.connected) this.proc.send({ type: "exit" });
    await stopProcess(this.proc, "SIGTERM", 3000);
  }
}
