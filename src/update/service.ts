import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { UpdatePhase, type StartUpdateResponseSchema, type UpdateService, type UpdateTransactionSchema } from "../../gen/carapace/update/v1/update_pb.js";
import { errorTable, on, type WireFault } from "../wire/error-table.js";
import { UpdateError } from "./errors.js";
import type { Progress, UpdateManager, UpdateOutcome } from "./manager.js";
import type { RollbackMarkerFile } from "./rollback-marker.js";
import type { TxPhase, UpdateTransaction } from "./transaction.js";
import { rollbackStateNames, transactionStateNames, updateOutcomeNames, updatePhaseNames } from "../wire/update.js";

const FAULTS: Record<UpdateError["kind"], Pick<WireFault, "code" | "reason">> = {
  invalid: { code: Code.InvalidArgument, reason: "UPDATE_INVALID_ARGUMENT" },
  precondition: { code: Code.FailedPrecondition, reason: "UPDATE_PRECONDITION" },
  not_found: { code: Code.NotFound, reason: "UPDATE_NOT_FOUND" },
  unavailable: { code: Code.Unavailable, reason: "UPDATE_UNAVAILABLE" },
};

/**
 * Update errors on the wire: the code and reason by kind, BadRequest for a bad field, and
 * RetryInfo when rerunning may succeed (`retryMs()`: the manager's first retry delay).
 */
function updateErrors(retryMs: () => number) {
  return errorTable(
    [
      on(UpdateError, (e) => ({
        ...FAULTS[e.kind],
        field: e.field,
        retryAfterMs: e.retryable ? retryMs() : undefined,
        metadata: e.phase ? { phase: e.phase } : undefined,
      })),
    ],
    (err) => ({ code: Code.Internal, reason: "INTERNAL", message: `update failed: ${(err as Error).message}` }),
  );
}

export const phaseToProto = (p: TxPhase | undefined): UpdatePhase => updatePhaseNames.toWire(p);

export function transactionToProto(tx: UpdateTransaction): MessageInitShape<typeof UpdateTransactionSchema> {
  return {
    id: tx.id,
    version: tx.version,
    assetName: tx.assetName,
    state: transactionStateNames.toWire(tx.state),
    attempt: tx.attempt,
    maxAttempts: tx.maxAttempts,
    startedAtMs: BigInt(tx.startedAtMs),
    updatedAtMs: BigInt(tx.updatedAtMs),
    ...(tx.stagedPath !== null ? { stagedPath: tx.stagedPath } : {}),
    ...(tx.bundlePath !== null ? { bundlePath: tx.bundlePath } : {}),
    ...(tx.sha256 !== null ? { sha256: tx.sha256 } : {}),
    ...(tx.lastError !== null ? { lastError: tx.lastError } : {}),
    phase: phaseToProto(tx.phase),
    retryable: tx.retryable,
    ...(tx.applyConfirmedUntilMs !== undefined ? { applyConfirmedUntilMs: BigInt(tx.applyConfirmedUntilMs) } : {}),
    ...(tx.fromVersion !== undefined ? { fromVersion: tx.fromVersion } : {}),
    ...(tx.nextAttemptAtMs !== undefined ? { nextAttemptAtMs: BigInt(tx.nextAttemptAtMs) } : {}),
    failedPhase: phaseToProto(tx.failedPhase),
  };
}

export function markerToProto(m: RollbackMarkerFile) {
  const opt = (v: number | undefined) => (v !== undefined ? BigInt(v) : undefined);
  return {
    state: rollbackStateNames.toWire(m.startupState),
    fromVersion: m.fromVersion,
    toVersion: m.toVersion,
    appliedAtMs: BigInt(m.appliedAtMs),
    ...(m.startedAtMs !== undefined ? { startedAtMs: opt(m.startedAtMs) } : {}),
    ...(m.clearedAtMs !== undefined ? { clearedAtMs: opt(m.clearedAtMs) } : {}),
    ...(m.rolledBackAtMs !== undefined ? { rolledBackAtMs: opt(m.rolledBackAtMs) } : {}),
    ...(m.reason !== undefined ? { reason: m.reason } : {}),
    ...(m.backupPath !== undefined ? { backupPath: m.backupPath } : {}),
  };
}

function resultToProto(o: UpdateOutcome) {
  return {
    outcome: updateOutcomeNames.toWire(o.outcome),
    fromVersion: o.fromVersion,
    toVersion: o.toVersion,
    resumed: o.resumed,
    sha256: o.sha256,
    bundleVerified: o.bundleVerified,
    checksumVerified: o.checksumVerified,
    signingIdentity: o.signingIdentity,
    installPath: o.installPath,
    ...(o.preUpdateBackupPath ? { preUpdateBackupPath: o.preUpdateBackupPath } : {}),
    restartNeeded: o.restartNeeded,
    restarting: o.restarting,
    error: o.error?.message ?? "",
    retryable: o.error?.retryable ?? false,
    failedPhase: phaseToProto(o.error?.phase),
  };
}

type StreamMessage = MessageInitShape<typeof StartUpdateResponseSchema>;

/** Adapts the UpdateManager to the generated UpdateService. */
export function updateService(manager: UpdateManager, shutdown: AbortSignal): ServiceImpl<typeof UpdateService> {
  const errors = updateErrors(() => manager.retryHintMs);
  return {
    async checkForUpdate(req) {
      try {
        const r = await manager.check({
          channel: req.channel,
          ...(req.version !== undefined ? { version: req.version } : {}),
          allowDowngrade: req.allowDowngrade,
        });
        const { publishedAt, ...rest } = r;
        return { ...rest, ...(publishedAt ? { publishedAt: timestampFromDate(publishedAt) } : {}) };
      } catch (err) {
        throw errors.map(err);
      }
    },

    async *startUpdate(req, ctx) {
      const queue: StreamMessage[] = [];
      let wake: (() => void) | undefined;
      const push = (m: StreamMessage) => {
        queue.push(m);
        wake?.();
      };
      const onProgress = (p: Progress) =>
        push({
          phase: phaseToProto(p.phase),
          bytesDone: BigInt(p.bytesDone),
          bytesTotal: BigInt(p.bytesTotal),
          attempt: p.attempt,
          maxAttempts: p.maxAttempts,
          message: p.message,
          version: p.version,
        });
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      let finished: { outcome?: UpdateOutcome; error?: unknown } | undefined;
      const run = manager
        .start(
          {
            ...(req.version !== undefined ? { version: req.version } : {}),
            channel: req.channel,
            allowDowngrade: req.allowDowngrade,
            restart: req.restart,
            yes: req.yes,
          },
          onProgress,
          signal,
        )
        .then(
          (outcome) => (finished = { outcome }),
          (error: unknown) => (finished = { error }),
        )
        .finally(() => wake?.());
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (finished) break;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      await run;
      while (queue.length > 0) yield queue.shift()!;
      if (finished.error !== undefined) throw errors.map(finished.error);
      const outcome = finished.outcome!;
      const phase = outcome.outcome === "applied" ? UpdatePhase.APPLIED : outcome.outcome === "failed" ? UpdatePhase.FAILED : UpdatePhase.UNSPECIFIED;
      yield {
        phase,
        message: outcome.error?.message ?? (outcome.outcome === "applied" ? `v${outcome.toVersion} applied` : `already up to date (v${outcome.toVersion})`),
        version: outcome.toVersion,
        result: resultToProto(outcome),
      };
      if (outcome.error) {
        const e = outcome.error;
        throw errors.map(new UpdateError(e.retryable ? "unavailable" : "precondition", e.message, e.retryable, e.phase));
      }
    },

    async getUpdateStatus() {
      const s = await manager.status();
      return {
        ...(s.transaction ? { transaction: transactionToProto(s.transaction) } : {}),
        ...(s.marker ? { rollbackMarker: markerToProto(s.marker) } : {}),
        currentVersion: s.currentVersion,
        ...(s.previousVersion ? { previousVersion: s.previousVersion } : {}),
        ...(s.installDir ? { installDir: s.installDir } : {}),
        managed: s.managed,
        ...(s.unmanagedReason ? { unmanagedReason: s.unmanagedReason } : {}),
        resumePending: s.resumePending,
        inProgress: s.inProgress,
        ...(s.transactionError ? { transactionError: s.transactionError } : {}),
        ...(s.markerError ? { rollbackMarkerError: s.markerError } : {}),
        installedVersions: s.installedVersions,
        trustedRootOrigin: s.trustedRoot.origin,
        trustedRootPath: s.trustedRoot.path,
        ...(s.trustedRoot.refreshedAtMs !== undefined ? { trustedRootRefreshedAtMs: BigInt(s.trustedRoot.refreshedAtMs) } : {}),
        trustRefresh: s.trustRefresh,
        releaseSource: s.releaseSource,
      };
    },

    async rollbackUpdate(req) {
      try {
        const r = await manager.rollback({
          ...(req.targetVersion !== undefined ? { targetVersion: req.targetVersion } : {}),
          ...(req.reason !== undefined ? { reason: req.reason } : {}),
          restart: req.restart,
          restoreState: req.restoreState,
        });
        return { ...r };
      } catch (err) {
        throw errors.map(err);
      }
    },
  };
}

/** The `update` section of GetStatus. */
export async function updateStatusSection(manager: UpdateManager) {
  const s = await manager.status();
  const tx = s.transaction;
  return {
    managed: s.managed,
    currentVersion: s.currentVersion,
    previousVersion: s.previousVersion ?? "",
    transactionState: tx?.state ?? (s.transactionError ? "corrupt" : ""),
    transactionPhase: tx ? (tx.state === "failed" && tx.failedPhase ? `failed (in ${tx.failedPhase})` : tx.phase) : "",
    transactionVersion: tx?.version ?? "",
    lastError: tx?.lastError ?? s.transactionError ?? "",
    rollbackState: s.marker?.startupState ?? (s.markerError ? "corrupt" : ""),
  };
}
