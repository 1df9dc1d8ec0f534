import { readdir } from "node:fs/promises";
import type { CheckResult } from "./checks.js";
import { diskFreeBytes } from "./checks.js";
import type { HealthMonitor } from "./health.js";

/** Facts about the running server that do not change while it runs. */
export interface ServerIdentity {
  version: string;
  startedAt: Date;
  /** performance.now() at start: uptime is measured on the monotonic clock. */
  startedMonotonicMs: number;
  bind: string;
  port: number;
  tls: boolean;
  stateDir: string;
  tokenSource: "env" | "file";
  secretSource: "env" | "generated";
}

export interface Diagnostics {
  memoryRssBytes: number;
  diskFreeBytes: number;
  openFds: number;
}

/** Optional sections that other features contribute (tasks, backup, update, logs). */
export type StatusSections = Record<string, unknown>;
export type SectionProvider = () => Promise<unknown> | unknown;

/** What GetStatus reports: the identity (without the monotonic start), the process, the checks. */
export interface ServerStatus extends Omit<ServerIdentity, "startedMonotonicMs"> {
  uptimeSeconds: number;
  pid: number;
  nodeVersion: string;
  platform: string;
  arch: string;
  overall: "healthy" | "degraded" | "failing";
  checks: CheckResult[];
  diagnostics: Diagnostics;
  shuttingDown: boolean;
  sections: StatusSections;
}

export function uptimeSeconds(identity: Pick<ServerIdentity, "startedMonotonicMs">): number {
  return Math.max(0, Math.floor((performance.now() - identity.startedMonotonicMs) / 1000));
}

async function countOpenFds(): Promise<number> {
  try {
    return (await readdir("/proc/self/fd")).length;
  } catch {
    return 0;
  }
}

/** Builds the full status: identity, checks (from the shared monitor), diagnostics, sections. */
export async function collectStatus(identity: ServerIdentity, monitor: HealthMonitor, providers: ReadonlyMap<string, SectionProvider>): Promise<ServerStatus> {
  const [evaluation, free, fds] = await Promise.all([monitor.evaluate(), diskFreeBytes(identity.stateDir).catch(() => 0), countOpenFds()]);
  const sections: StatusSections = {};
  for (const [name, provide] of providers) sections[name] = await provide();
  return {
    version: identity.version,
    startedAt: identity.startedAt,
    uptimeSeconds: uptimeSeconds(identity),
    pid: process.pid,
    nodeVersion: process.version,
    platform: process.platform,
    arch: process.arch,
    bind: identity.bind,
    port: identity.port,
    tls: identity.tls,
    stateDir: identity.stateDir,
    tokenSource: identity.tokenSource,
    secretSource: identity.secretSource,
    overall: evaluation.verdict === "ok" ? "healthy" : evaluation.verdict === "warn" ? "degraded" : "failing",
    checks: evaluation.results,
    diagnostics: { memoryRssBytes: process.memoryUsage.rss(), diskFreeBytes: free, openFds: fds },
    shuttingDown: monitor.shuttingDown,
    sections,
  };
}
