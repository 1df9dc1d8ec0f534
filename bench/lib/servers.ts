import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { plainWorker } from "./plain.js";
import { forkWorker, nextMessage, stopProcess } from "./procs.js";
import type { ConnectVariant } from "../workers/connect-server.js";

export interface WorkerServer {
  proc: ChildProcess;
  pid: number;
  port: number;
  /** The bare server's h2c (gRPC) port. */
  h2Port?: number;
  stop(): Promise<void>;
}

async function startWorkerServer(script: string, config: Record<string, unknown>, what: string, plain = false): Promise<WorkerServer> {
  const proc = plain ? forkWorker(script, [], { execArgv: [] }) : forkWorker(fileURLToPath(new URL(script, import.meta.url)));
  proc.stdout?.resume();
  proc.stderr?.on("data", (c: Buffer) => process.stderr.write(`[${what}] ${c.toString()}`));
  proc.send(config);
  const { port, h2Port } = await nextMessage<{ port: number; h2Port?: number }>(proc, (m) => m?.type === "listening", 20_000, `${what} start`);
  const server: WorkerServer = { proc, pid: proc.pid!, port, stop: () => stopProcess(proc, "SIGTERM", 3000) };
  if (h2Port !== undefined) server.h2Port = h2Port;
  return server;
}

/**
 * The bare node:http (+ node:http2 gRPC) baselines (bench/workers/bare-server.ts), transpiled
 * into `tmp` and run on plain node (no tsx loader).
 */
export async function startBare(tmp: string, body: string, binaryBody?: Buffer): Promise<WorkerServer> {
  const script = await plainWorker("../workers/bare-server.ts", tmp);
  return startWorkerServer(script, { type: "config", body, binaryBody: binaryBody?.toString("base64") ?? "" }, "bare", true);
}

/** A connect-node ablation server (bench/workers/connect-server.ts). */
export function startConnectVariant(variant: ConnectVariant, statusJson: string, token: string, stateDir: string): Promise<WorkerServer> {
  return startWorkerServer("../workers/connect-server.ts", { type: "config", variant, statusJson, token, stateDir }, `connect-${variant}`);
}
