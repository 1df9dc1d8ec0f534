import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import assert from "node:assert/strict";
import type { DestinationStream } from "pino";
import type { StartFlags } from "../../src/server/options.js";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const CARA_BIN = join(ROOT, "bin", "cara.js");

const tempDirs: string[] = [];
const servers: CaraServer[] = [];
const inProcess: InProcessCara[] = [];

/** A fresh temporary directory, removed when the test file ends. */
export async function tempDir(prefix = "cara-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A clean environment for child processes: no CARAPACE_* leaking in from the developer's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CARAPACE_") && !k.startsWith("NODE_TEST")) env[k] = v;
  env.NO_COLOR = "1";
  return { ...env, ...extra };
}

export interface CaraServer {
  proc: ChildProcess;
  port: number;
  stateDir: string;
  baseUrl: string;
  token: string;
  /** Every line the server printed (stdout and stderr). */
  lines: string[];
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Secret values handed in through the environment. */
  envSecrets: string[];
}

/**
 * Starts the real `cara start` on port 0 with a temp state dir and waits for its "listening"
 * log line. Secrets of every server started are checked against its log at the end of the file.
 */
export async function startCara(
  options: { stateDir?: string; args?: string[]; env?: Record<string, string>; expectFailure?: boolean; bin?: string; executable?: string } = {},
): Promise<CaraServer> {
  const stateDir = options.stateDir ?? join(await tempDir(), "state");
  // `bin` is a script run by this Node; `executable` a platform executable (or its launcher copy) run as it is.
  const [file, prefix] = options.executable ? [options.executable, []] : [process.execPath, [options.bin ?? CARA_BIN]];
  const proc = spawn(file, [...prefix, "start", "--port", "0", "--state-dir", stateDir, ...(options.args ?? [])], {
    env: cleanEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; port?: number };
          if (rec.msg?.startsWith("listening on") && typeof rec.port === "number") resolve(rec.port);
        } catch {
          // not JSON (e.g. an error line on stderr)
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    void exited.then((code) => reject(new Error(`cara start exited with ${code} before listening:\n${lines.join("\n")}`)));
    setTimeout(() => reject(new Error(`cara start did not listen within 10 s:\n${lines.join("\n")}`)), 10_000).unref();
  }).catch((err: unknown) => {
    // Never leave a server behind when the test gives up on it.
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    throw err;
  });
  const tokenFromEnv = options.env?.CARAPACE_GATEWAY_TOKEN;
  const token = tokenFromEnv ?? (await readFile(join(stateDir, "auth", "token"), "utf8")).trim();
  const server: CaraServer = {
    proc,
    port,
    stateDir,
    baseUrl: `http://127.0.0.1:${port}`,
    token,
    lines,
    exited,
    envSecrets: [options.env?.CARAPACE_SERVER_SECRET, options.env?.CARAPACE_GATEWAY_TOKEN].filter((v): v is string => !!v),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  servers.push(server);
  return server;
}

/** What a test needs of a running server, spawned (startCara) or in this process (serveCara). */
export type CaraEndpoint = Pick<CaraServer, "port" | "stateDir" | "baseUrl" | "token" | "lines">;

export interface InProcessCara extends CaraEndpoint {
  /** Secret values handed in through the environment. */
  envSecrets: string[];
  /** Graceful shutdown, as on SIGTERM. */
  stop(): Promise<void>;
}

/**
 * The real server (`startServer`, what `cara start` runs) in this process, on port 0 with a temp
 * state dir (or `stateDir`; `config` is written to its config.json), environment `env` on top
 * of a clean one: no process to spawn and
 * wait for. Its log lines (JSON) are collected in `lines`; like startCara's, they are checked for
 * secrets at the end of the file. Use startCara for what needs a process: signals, exit codes,
 * kill -9, the lock between processes, the launcher.
 */
export async function serveCara(
  options: { stateDir?: string; config?: object; flags?: Omit<StartFlags, "stateDir" | "port">; env?: Record<string, string> } = {},
): Promise<InProcessCara> {
  const { startServer } = await import("../../src/server/server.js");
  const stateDir = options.stateDir ?? join(await tempDir(), "state");
  if (options.config !== undefined) {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(join(stateDir, "config.json"), JSON.stringify(options.config));
  }
  const lines: string[] = [];
  let partial = "";
  const logDestination = {
    write(chunk: string) {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
    },
  };
  const running = await startServer(
    { ...options.flags, stateDir, port: 0 },
    { env: cleanEnv(options.env), logDestination: logDestination as unknown as DestinationStream },
  );
  const tokenFromEnv = options.env?.CARAPACE_GATEWAY_TOKEN;
  const token = tokenFromEnv ?? (await readFile(join(stateDir, "auth", "token"), "utf8")).trim();
  const scheme = running.options.tls ? "https" : "http";
  const server: InProcessCara = {
    port: running.port,
    stateDir,
    baseUrl: `${scheme}://127.0.0.1:${running.port}`,
    token,
    lines,
    envSecrets: [options.env?.CARAPACE_SERVER_SECRET, options.env?.CARAPACE_GATEWAY_TOKEN].filter((v): v is string => !!v),
    stop: () => running.shutdown(),
  };
  inProcess.push(server);
  return server;
}

/** Runs the CLI to completion. */
export function runCara(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number; bin?: string; executable?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const [file, prefix] = options.executable ? [options.executable, []] : [process.execPath, [options.bin ?? CARA_BIN]];
    const proc = spawn(file, [...prefix, ...args], { env: cleanEnv(options.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`cara ${args.join(" ")} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 20_000);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A Connect JSON call with plain fetch, as curl would make it. */
export async function connectJson(
  server: Pick<CaraServer, "baseUrl">,
  method: string,
  body: unknown,
  token?: string,
): Promise<{ status: number; headers: Headers; json: any }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${server.baseUrl}/${method}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

after(async () => {
  for (const s of servers) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill("SIGKILL");
      await s.exited;
    }
  }
  for (const s of inProcess) await s.stop();
  // No server ever logs its token or its server secret.
  for (const s of [...servers, ...inProcess]) {
    const secrets = [s.token, ...s.envSecrets];
    try {
      secrets.push((await readFile(join(s.stateDir, "auth", "server-secret"), "utf8")).trim());
    } catch {
      // secret came from the environment; the test passed it and checks it itself
    }
    for (const secret of secrets) {
      for (const line of s.lines) assert.ok(!line.includes(secret), `a secret appeared in a log line: ${line.slice(0, 80)}...`);
    }
  }
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});
