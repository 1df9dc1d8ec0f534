import { fork, spawn, type ChildProcess, type ForkOptions, type SpawnOptions } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * Every process the harness starts is registered here and killed when the harness exits, however
 * it exits (normal end, error, Ctrl-C). Processes are only ever stopped by their own pid.
 */
const children = new Set<ChildProcess>();

function track(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  return proc;
}

export function killAll(signal: NodeJS.Signals = "SIGKILL"): void {
  for (const proc of children) {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        proc.kill(signal);
      } catch {
        // already gone
      }
    }
  }
}

let installed = false;
/** Kills every tracked child on exit, on SIGINT/SIGTERM and on an uncaught error. */
export function installCleanup(onSignal?: () => void): void {
  if (installed) return;
  installed = true;
  process.on("exit", () => killAll("SIGKILL"));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping the benchmark processes\n`);
      onSignal?.();
      killAll("SIGKILL");
      process.exit(130);
    });
  }
}

/** Environment without CARAPACE_* from the developer's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CARAPACE_") && !k.startsWith("NODE_TEST")) env[k] = v;
  env.NO_COLOR = "1";
  return { ...env, ...extra };
}

export function spawnTracked(cmd: string, args: string[], options: SpawnOptions): ChildProcess {
  return track(spawn(cmd, args, options));
}

/** Forks a TypeScript worker (run through tsx) with an IPC channel. */
export function forkWorker(script: string, args: string[] = [], options: ForkOptions = {}): ChildProcess {
  return track(
    fork(script, args, {
      execArgv: ["--import", "tsx"],
      env: cleanEnv(),
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      ...options,
    }),
  );
}

/** Resolves with the first IPC message matching `accept`, or rejects on exit or timeout. */
// biome-ignore lint/suspicious/noExplicitAny: an IPC message is whatever the worker sent; each caller checks the shape it waits for.
export function nextMessage<T>(proc: ChildProcess, accept: (m: any) => boolean, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if (!accept(m)) return;
      cleanup();
      resolve(m as T);
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`${what}: worker exited (${code ?? signal}) before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      proc.off("message", onMessage);
      proc.off("exit", onExit);
    };
    proc.on("message", onMessage);
    proc.once("exit", onExit);
  });
}

/** Stops a child: `signal`, then SIGKILL after `graceMs`. Resolves once it has exited. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Collects a child's output lines (keeps the last `keep`); also keeps its pipes drained. */
export function collectLines(proc: ChildProcess, keep = 200, onLine?: (line: string) => void): string[] {
  const lines: string[] = [];
  for (const stream of [proc.stdout, proc.stderr]) {
    if (!stream) continue;
    let buffered = "";
    stream.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        lines.push(line);
        onLine?.(line);
        buffered = buffered.slice(nl + 1);
        if (lines.length > keep) lines.splice(0, lines.length - keep);
      }
      if (buffered.length > 65536) buffered = buffered.slice(-65536);
    });
  }
  return lines;
}

/** Resident set size (VmRSS) of a process, in bytes; NaN when it cannot be read. */
export function rssBytes(pid: number): number {
  return procStatusField(pid, "VmRSS");
}

/** Peak resident set size (VmHWM) of a process, in bytes. */
export function peakRssBytes(pid: number): number {
  return procStatusField(pid, "VmHWM");
}

function procStatusField(pid: number, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU time (user + system) a process has used so far, in ms; NaN when unreadable. */
export function cpuTimeMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return ((utime + stime) * 1000) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
