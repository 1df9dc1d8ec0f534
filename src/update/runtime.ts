import { createReadStream } from "node:fs";
import { join } from "node:path";
import type { BackupManager } from "../backup/backups.js";
import type { HealthCheck } from "../ops/checks.js";
import type { Logger } from "../ops/logger.js";
import type { CaraConfig } from "../state/config.js";
import type { Executor } from "../tasks/worker.js";
import { UpdateError } from "./errors.js";
import { detectInstall } from "./install-layout.js";
import { UpdateManager } from "./manager.js";
import { resolveUpdateSettings } from "./settings.js";

export interface UpdateRuntime {
  manager: UpdateManager;
  /** The managed install's launcher, when there is one (what a restart runs). */
  launcher?: string;
  check: HealthCheck;
  executor: Executor;
}

/** Builds the updater for a server: install detection, settings, pre-update backup, restore. */
export async function createUpdateRuntime(options: {
  updatesDir: string;
  packageRoot: string;
  runningVersion: string;
  config: CaraConfig;
  backups: BackupManager;
  logger: Logger;
  requestRestart?: () => void;
}): Promise<UpdateRuntime> {
  const install = await detectInstall(options.packageRoot);
  const manager = new UpdateManager({
    updatesDir: options.updatesDir,
    settings: resolveUpdateSettings(options.config),
    runningVersion: options.runningVersion,
    install,
    logger: options.logger,
    backup: async () => (await options.backups.backupToDir("pre-update", 5)).path,
    restore: async (archive) => {
      await options.backups.restore(createReadStream(archive), { dryRun: false, force: true, allowForeign: false });
    },
    ...(install.managed && options.requestRestart ? { requestRestart: options.requestRestart } : {}),
  });
  return {
    manager,
    ...(install.managed ? { launcher: join(install.installDir, "bin", "cara") } : {}),
    check: updateCheck(manager),
    executor: updateCheckExecutor(manager),
  };
}

/** `update` health check: warns about a rolled-back version, a stuck or corrupt transaction. */
function updateCheck(manager: UpdateManager): HealthCheck {
  return {
    name: "update",
    async run() {
      const s = await manager.status();
      if (s.transactionError) return { status: "warn", message: s.transactionError };
      if (s.markerError) return { status: "warn", message: s.markerError };
      if (s.marker?.startupState === "rolled_back" && s.marker.rolledBackAtMs && Date.now() - s.marker.rolledBackAtMs < 7 * 86_400_000) {
        return {
          status: "warn",
          message: `${s.marker.reason ?? `rolled back from v${s.marker.toVersion}`} (${new Date(s.marker.rolledBackAtMs).toISOString()}); see \`cara update --status\``,
        };
      }
      const tx = s.transaction;
      if (tx?.state === "failed") {
        const how = tx.retryable ? "it will be retried; `cara update` resumes it now" : "`cara update` starts a fresh one";
        return { status: "warn", message: `update to v${tx.version} failed in ${tx.failedPhase ?? "?"}: ${tx.lastError ?? "unknown error"} (${how})` };
      }
      if (tx?.state === "in_progress" && !s.inProgress)
        return { status: "warn", message: `update to v${tx.version} was interrupted in ${tx.phase}; \`cara update\` resumes it` };
      return {
        status: "ok",
        message: s.managed
          ? `v${s.currentVersion} (managed install ${s.installDir})`
          : `v${s.currentVersion} (self-update does not apply: ${s.unmanagedReason})`,
      };
    },
  };
}

/** Task payload `updateCheck {channel?}`: asks the release source; never installs anything. */
function updateCheckExecutor(manager: UpdateManager): Executor {
  return async ({ task }) => {
    const channel = (task.payload as { channel?: string }).channel;
    try {
      const r = await manager.check(channel ? { channel } : {});
      return {
        kind: "done",
        result: r.updateAvailable
          ? `update available: v${r.currentVersion} -> v${r.latestVersion}${r.prerelease ? " (pre-release)" : ""} ${r.releaseNotesUrl}`.trim()
          : `up to date (v${r.currentVersion}; newest on ${r.channel} is v${r.latestVersion})`,
      };
    } catch (err) {
      if (err instanceof UpdateError && !err.retryable) return { kind: "failed", error: `update check failed: ${err.message}` };
      return { kind: "retry", error: `update check failed: ${(err as Error).message}` };
    }
  };
}
