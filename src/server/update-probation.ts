import type { HealthMonitor } from "../ops/health.js";
import type { Logger } from "../ops/logger.js";

export interface ProbationDeps {
  monitor: HealthMonitor;
  manager: {
    onProbation(): Promise<boolean>;
    markHealthy(): Promise<void>;
    resumeAtStart(signal: AbortSignal): Promise<unknown>;
  };
  log: Logger;
  version: string;
  readyTimeoutMs: number;
  shutdown: AbortSignal;
  /** Exit for a restart under the launcher (which then rolls back); absent when not under one. */
  exitForRollback?: () => void;
}

/**
 * The update protocol after start: once ready, clear the rollback marker (this version is good),
 * then resume an interrupted update if one is pending and still confirmed. A version on
 * probation (marker `started`) that is not ready within readyTimeoutMs exits for a restart under
 * the launcher, which then rolls it back.
 */
export async function watchUpdateProbation(d: ProbationDeps): Promise<void> {
  const onProbation = await d.manager.onProbation();
  const deadline = Date.now() + d.readyTimeoutMs;
  for (let i = 0; !d.monitor.shuttingDown; i++) {
    const evaluation = await d.monitor.evaluate();
    if (evaluation.ready) {
      await d.manager.markHealthy().catch((err: Error) => d.log.error({ err: err.message }, "could not clear the rollback marker; a restart may roll back"));
      break;
    }
    if (i === 0 && onProbation) d.log.warn("not ready yet: the rollback marker stays until every check passes");
    if (onProbation && Date.now() >= deadline && d.exitForRollback) {
      const failing = evaluation.results
        .filter((r) => r.status === "fail")
        .map((r) => `${r.name}: ${r.message}`)
        .join("; ");
      d.log.error(
        { failing },
        `v${d.version} did not become ready within ${Math.round(d.readyTimeoutMs / 1000)} s after an update; exiting so the launcher rolls back`,
      );
      d.exitForRollback();
      return;
    }
    await d.monitor.waitForChange(Math.max(100, Math.min(5_000, deadline - Date.now())), d.shutdown).catch(() => undefined);
  }
  if (!d.monitor.shuttingDown) await d.manager.resumeAtStart(d.shutdown);
}
