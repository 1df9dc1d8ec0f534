import type { ChildProcess } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanEnv, collectLines, spawnTracked, stopProcess } from "./procs.js";

export interface RunningCara {
  proc: ChildProcess;
  pid: number;
  port: number;
  stateDir: string;
  token: string;
  lines: string[];
  /** How many output lines so far contained each of the `count` strings given at start. */
  counts: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Starts the real server (`node [nodeArgs] bin/cara.js start --port 0 --state-dir DIR`) and waits
 * for its "listening on" log line. Its output is drained (kept: the last lines) so that a busy
 * logger never blocks on a full pipe.
 */
export async function startCara(
  root: string,
  stateDir: string,
  options: { nodeArgs?: string[]; env?: Record<string, string>; args?: string[]; count?: string[] } = {},
): Promise<RunningCara> {
  await mkdir(join(stateDir, ".."), { recursive: true });
  const proc = spawnTracked(
    process.execPath,
    [...(options.nodeArgs ?? []), join(root, "bin", "cara.js"), "start", "--port", "0", "--state-dir", stateDir, ...(options.args ?? [])],
    { cwd: root, env: cleanEnv(options.env), stdio: ["ignore", "pipe", "pipe"] },
  );
  const counts = new Map<string, number>((options.count ?? []).map((c) => [c, 0]));
  const lines = collectLines(
    proc,
    500,
    counts.size === 0
      ? undefined
      : (line) => {
          for (const [k, v] of counts) if (line.includes(k)) counts.set(k, v + 1);
        },
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setInterval(() => {
      for (const line of lines) {
        if (!line.includes("listening on")) continue;
        try {
          const rec = JSON.parse(line) as { msg?: string; port?: number };
          if (rec.msg?.startsWith("listening on") && typeof rec.port === "number") {
            clearInterval(timer);
            clearTimeout(deadline);
            resolve(rec.port);
            return;
          }
        } catch {
          // not a JSON line
        }
      }
    }, 20);
    const deadline = setTimeout(() => {
      clearInterval(timer);
      reject(new Error(`cara start did not listen within 15 s:\n${lines.join("\n")}`));
    }, 15_000);
    proc.once("exit", (code) => {
      clearInterval(timer);
      clearTimeout(deadline);
      reject(new Error(`cara start exited with ${code} before listening:\n${lines.join("\n")}`));
    });
  });
  const token = options.env?.CARAPACE_GATEWAY_TOKEN ?? (await readFile(join(stateDir, "auth", "token"), "utf8")).trim();
  return {
    proc,
    pid: proc.pid!,
    port,
    stateDir,
    token,
    lines,
    counts,
    stop: () => stopProcess(proc, "SIGTERM", 15_000),
  };
}

export const GET_STATUS_PATH = "/carapace.ops.v1.OpsService/GetStatus";
export const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";

/** One GetStatus over Connect JSON: the exact response body the bare server will answer with. */
export async function captureStatusJson(port: number, token: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${GET_STATUS_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: "{}",
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GetStatus answered HTTP ${res.status}: ${text.slice(0, 300)}`);
  return text;
}

/** One GetStatus over Connect binary: the protobuf bytes the bare gRPC server will answer with. */
export async function captureStatusBinary(port: number, token: string): Promise<Buffer> {
  const res = await fetch(`http://127.0.0.1:${port}${GET_STATUS_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/proto", authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(10_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`GetStatus (binary) answered HTTP ${res.status}`);
  return body;
}
