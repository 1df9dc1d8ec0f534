import { EventEmitter } from "node:events";
import { runChecks, worstVerdict, type CheckResult, type HealthCheck } from "./checks.js";

export interface HealthEvaluation {
  results: CheckResult[];
  /** Ready: no check fails and shutdown has not started. */
  ready: boolean;
  verdict: "ok" | "warn" | "fail";
}

/**
 * The server's one source of health truth: `/health/ready`, `grpc.health.v1` and `GetStatus`
 * all read it. Evaluations are shared for a short time so that probes under load cost little.
 */
export class HealthMonitor {
  private readonly checks: HealthCheck[] = [];
  private readonly events = new EventEmitter();
  private shutting = false;
  private cached: { at: number; value: Promise<HealthEvaluation> } | undefined;
  private evaluations = 0;

  constructor(private readonly cacheMs = 500) {
    this.events.setMaxListeners(0);
  }

  addCheck(check: HealthCheck): void {
    this.checks.push(check);
    this.cached = undefined;
    this.evaluations++;
  }

  get shuttingDown(): boolean {
    return this.shutting;
  }

  /**
   * Changes whenever a newer verdict exists (a new evaluation began, a check was added, shutdown
   * began): what is derived from an evaluation, such as the shared GetStatus answer, is stale
   * once it differs, so that GetStatus never shows a check passing that /health/ready already saw
   * failing (test/ops/health.test.ts).
   */
  get generation(): number {
    return this.evaluations;
  }

  /** Marks the server as going away: every reader sees it not ready from now on. */
  beginShutdown(): void {
    if (this.shutting) return;
    this.shutting = true;
    this.cached = undefined;
    this.evaluations++;
    this.events.emit("change");
  }

  evaluate(): Promise<HealthEvaluation> {
    const now = performance.now();
    if (this.cached && now - this.cached.at < this.cacheMs) return this.cached.value;
    const value = this.compute();
    this.cached = { at: now, value };
    this.evaluations++;
    return value;
  }

  private async compute(): Promise<HealthEvaluation> {
    const results = await runChecks(this.checks);
    if (this.shutting) {
      results.push({ name: "shutdown", status: "fail", message: "the server is shutting down", durationMs: 0 });
    }
    const verdict = worstVerdict(results);
    return { results, verdict, ready: verdict !== "fail" };
  }

  /** Resolves on the next change notification, after `timeoutMs`, or when `signal` aborts. */
  waitForChange(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.events.off("change", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.events.on("change", done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
