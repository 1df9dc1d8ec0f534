import { splitCredentials } from "./http-client.js";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import semver from "semver";
import type { Logger } from "../ops/logger.js";
import { DownloadError, downloadFile } from "./download.js";
import { runFailure, UpdateError } from "./errors.js";
import { LAUNCHER_PROTOCOL, launcherProtocolOf } from "./launcher.js";
import { runningAsExecutable } from "../executable-form.js";
import {
  currentVersion,
  ensureExecutableLayout,
  ensureLayout,
  executableLauncherInfo,
  stageExecutable,
  writeExecutableLauncher,
  writeLauncher,
  installedVersions,
  previousVersion,
  switchCurrent,
  unpackedFrom,
  unpackRelease,
  type InstallInfo,
  type ReleaseForm,
} from "./install-layout.js";
import { ReleaseSource, ReleaseSourceError, type Release, type ReleaseAsset } from "./releases.js";
import { loadMarker, writeMarker, type RollbackMarkerFile } from "./rollback-marker.js";
import { APPLY_CONFIRMATION_TTL_MS, type UpdateSettings } from "./settings.js";
import {
  loadTransaction,
  persistTransaction,
  removeIfPresent,
  resumePending,
  retryDelayMs,
  stagedPaths,
  TransactionCorruptError,
  type TxPhase,
  type UpdateTransaction,
} from "./transaction.js";
import { UpdateBusyError, UpdateLock } from "./update-lock.js";
import { artifactFor, releaseAssetsOf, verifyStagedRelease } from "./verify-staged-release.js";
import { refreshFailureNote, resolveTrustedRoot, trustedRootLocation, type ResolvedTrustedRoot, type TrustedRootOrigin } from "./trust-root.js";
import { sha256File } from "./sigstore-bundle.js";
import { compareTarget, InvalidUpdateInput, isPrerelease, normalizeVersion, parseChannel, type Channel } from "./release-versions.js";

export interface CheckRequest {
  channel?: string;
  version?: string;
  allowDowngrade?: boolean;
}

export interface CheckResult {
  currentVersion: string;
  latestVersion: string;
  updateAvailable: boolean;
  releaseNotesUrl: string;
  publishedAt?: Date;
  prerelease: boolean;
  downgrade: boolean;
  channel: Channel;
  managed: boolean;
}

export interface StartRequest {
  version?: string;
  channel?: string;
  allowDowngrade?: boolean;
  restart?: boolean;
  yes: boolean;
}

export interface Progress {
  phase: TxPhase;
  bytesDone: number;
  bytesTotal: number;
  attempt: number;
  maxAttempts: number;
  message: string;
  version: string;
}

export interface UpdateOutcome {
  outcome: "applied" | "already_up_to_date" | "failed";
  fromVersion: string;
  toVersion: string;
  resumed: boolean;
  sha256: string;
  bundleVerified: boolean;
  checksumVerified: boolean;
  signingIdentity: string;
  installPath: string;
  preUpdateBackupPath?: string;
  restartNeeded: boolean;
  restarting: boolean;
  error?: UpdateError;
}

export interface UpdateStatusReport {
  transaction?: UpdateTransaction;
  transactionError?: string;
  marker?: RollbackMarkerFile;
  markerError?: string;
  currentVersion: string;
  previousVersion?: string;
  installDir?: string;
  managed: boolean;
  unmanagedReason?: string;
  resumePending: boolean;
  inProgress: boolean;
  installedVersions: string[];
  trustedRoot: { origin: TrustedRootOrigin; path: string; refreshedAtMs?: number };
  trustRefresh: boolean;
  /** The release source's URL, without credentials. */
  releaseSource: string;
}

export interface RollbackRequest {
  targetVersion?: string;
  reason?: string;
  restart?: boolean;
  restoreState?: boolean;
}

export interface RollbackResult {
  fromVersion: string;
  toVersion: string;
  restartNeeded: boolean;
  restarting: boolean;
  restoredBackupPath?: string;
}

export interface UpdateManagerOptions {
  updatesDir: string;
  settings: UpdateSettings;
  /** Version of the running code. */
  runningVersion: string;
  install: InstallInfo;
  logger: Logger;
  /** Takes the automatic pre-update backup; returns the archive path. */
  backup?: (version: string) => Promise<string>;
  /** Restores state from an archive (RollbackUpdate restore_state). */
  restore?: (archive: string) => Promise<void>;
  /** Drains and restarts the server on the current version (after the answer is sent). */
  requestRestart?: () => void;
  now?: () => number;
  /**
   * The release form of this install (default: what this process runs as): a tarball install
   * downloads `carapace-<v>.tar.gz` and unpacks it, an executable install downloads this host's
   * `cara-<arch>-<os>` and stages it as `versions/<v>/cara`.
   */
  form?: ReleaseForm;
  /** The running platform executable (default process.execPath): the executable form's launcher is refreshed from it. */
  executablePath?: string;
}

type Mode = "explicit" | "automatic";

interface RunContext {
  tx: UpdateTransaction;
  release?: Release;
  mode: Mode;
  resumed: boolean;
  progress: (p: Omit<Progress, "attempt" | "maxAttempts" | "version">) => void;
  signal?: AbortSignal;
  outcome: Partial<UpdateOutcome>;
}

const RELEASE_NOTES_FALLBACK = "";

/**
 * The self-updater: release discovery, the durable transaction (download → verify → backup →
 * apply), retries with backoff, status and rollback. Domain code: the Update service adapts it.
 */
export class UpdateManager {
  readonly lock: UpdateLock;
  private readonly source: ReleaseSource;
  private readonly now: () => number;
  private readonly log: Logger;
  readonly form: ReleaseForm;

  /** How long a client should wait before rerunning after a passing failure: the first retry delay. */
  get retryHintMs(): number {
    return this.o.settings.retryDelaysMs[0] ?? 5_000;
  }

  constructor(private readonly o: UpdateManagerOptions) {
    this.lock = new UpdateLock(o.updatesDir);
    this.source = new ReleaseSource({ baseUrl: o.settings.releasesUrl, userAgent: `cara/${o.runningVersion}` });
    this.now = o.now ?? Date.now;
    this.log = o.logger;
    this.form = o.form ?? (runningAsExecutable() ? "executable" : "tarball");
  }

  private get managed(): boolean {
    return this.o.install.managed;
  }

  private notManaged(): UpdateError {
    const why = this.o.install.managed ? "" : this.o.install.reason;
    return new UpdateError("precondition", `self-update does not apply to this installation: ${why}`, false);
  }

  /** Newest release on a channel (or a pinned version) compared with the running version. */
  /** When check() last ran in this process (metrics: a silent update check shows as old). */
  lastCheckAtMs: number | undefined;

  async check(req: CheckRequest): Promise<CheckResult> {
    this.lastCheckAtMs = this.now();
    const channel = parseInput(() => parseChannel(req.channel || this.o.settings.channel), "channel");
    const pinned = req.version ? parseInput(() => normalizeVersion(req.version!), "version") : undefined;
    const release = await this.fetchRelease(pinned, channel);
    const latest = parseInput(() => normalizeVersion(release.version));
    const cmp = compareTarget(this.o.runningVersion, latest, req.allowDowngrade ?? false);
    return {
      currentVersion: this.o.runningVersion,
      latestVersion: latest,
      updateAvailable: cmp.available,
      releaseNotesUrl: release.htmlUrl || RELEASE_NOTES_FALLBACK,
      ...(release.publishedAt ? { publishedAt: release.publishedAt } : {}),
      prerelease: isPrerelease(latest),
      downgrade: cmp.downgrade,
      channel,
      managed: this.managed,
    };
  }

  private async fetchRelease(version: string | undefined, channel: Channel): Promise<Release> {
    let release: Release;
    try {
      release = version ? await this.source.byVersion(version) : await this.source.newest(channel);
    } catch (err) {
      throw releaseError(err);
    }
    if (version && semverValid(release.version) !== version) {
      throw new UpdateError("precondition", `release source answered ${release.tag} when asked for v${version}; refusing it (check update.releasesUrl)`, false);
    }
    return release;
  }

  /**
   * Creates or resumes the transaction and runs it to the end (with retries). Errors thrown
   * before a transaction runs are UpdateErrors; a failed run resolves with outcome "failed".
   */
  async start(req: StartRequest, onProgress: (p: Progress) => void = () => {}, signal?: AbortSignal): Promise<UpdateOutcome> {
    const channel = parseInput(() => parseChannel(req.channel || this.o.settings.channel), "channel");
    const pinned = req.version ? parseInput(() => normalizeVersion(req.version!), "version") : undefined;
    if (!req.yes) throw new UpdateError("invalid", "update not confirmed: pass --yes", false, undefined, "yes");
    if (!this.o.install.managed) throw this.notManaged();
    const restart = req.restart || this.o.settings.restart;
    return this.withLock(async () => {
      const existing = await this.loadTx();
      let tx: UpdateTransaction;
      let release: Release | undefined;
      let resumed = false;
      if (existing && resumePending(existing) && (!pinned || pinned === existing.version)) {
        tx = existing;
        resumed = true;
        tx.applyConfirmedUntilMs = this.now() + APPLY_CONFIRMATION_TTL_MS;
        tx.updatedAtMs = this.now();
        await this.persist(tx);
        this.log.info({ version: tx.version, attempt: tx.attempt, id: tx.id }, "resuming the update transaction");
      } else {
        release = await this.fetchRelease(pinned, channel);
        const target = parseInput(() => normalizeVersion(release!.version));
        const cmp = compareTarget(this.o.runningVersion, target, req.allowDowngrade ?? false);
        if (cmp.same) return this.upToDate(target);
        if (cmp.downgrade && !req.allowDowngrade) {
          throw new UpdateError("precondition", `v${target} is older than the running v${this.o.runningVersion}; pass --allow-downgrade`, false);
        }
        const artifact = artifactFor(target, this.form);
        requireAssets(release, artifact, this.form);
        tx = this.newTransaction(target, artifact);
        await this.discardStaged(tx); // files staged by an earlier transaction are not trusted
        await this.persist(tx);
      }
      return this.runWithRetries(
        { tx, ...(release ? { release } : {}), mode: "explicit", resumed, progress: () => {}, ...(signal ? { signal } : {}), outcome: {} },
        onProgress,
        restart,
      );
    });
  }

  /**
   * At server start: resumes an interrupted transaction if one is pending and the operator's
   * confirmation is still fresh (else it is marked failed, waiting for a new `cara update`).
   */
  async resumeAtStart(signal: AbortSignal): Promise<UpdateOutcome | undefined> {
    if (!this.o.settings.autoResume || !this.o.install.managed) return undefined;
    let tx: UpdateTransaction | undefined;
    try {
      tx = await loadTransaction(this.o.updatesDir);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "cannot resume the update transaction");
      return undefined;
    }
    if (!tx || !resumePending(tx)) return undefined;
    try {
      return await this.withLock(async () => {
        const current = await this.loadTx();
        if (!current || !resumePending(current)) return undefined;
        this.log.info({ version: current.version, phase: current.phase, attempt: current.attempt }, "resuming an interrupted update");
        return this.runWithRetries({ tx: current, mode: "automatic", resumed: true, progress: () => {}, signal, outcome: {} }, () => {}, false);
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not resume the update transaction");
      return undefined;
    }
  }

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.o.updatesDir, { recursive: true, mode: 0o700 });
    try {
      return await this.lock.run(fn);
    } catch (err) {
      if (err instanceof UpdateBusyError) throw new UpdateError("precondition", err.message, false);
      throw err;
    }
  }

  private async loadTx(): Promise<UpdateTransaction | undefined> {
    try {
      return await loadTransaction(this.o.updatesDir);
    } catch (err) {
      if (err instanceof TransactionCorruptError) throw new UpdateError("precondition", err.message, false);
      throw err;
    }
  }

  private newTransaction(version: string, assetName: string): UpdateTransaction {
    const now = this.now();
    return {
      id: randomUUID(),
      version,
      assetName,
      state: "in_progress",
      attempt: 0,
      maxAttempts: this.o.settings.maxAttempts,
      startedAtMs: now,
      updatedAtMs: now,
      stagedPath: null,
      bundlePath: null,
      sha256: null,
      lastError: null,
      phase: "created",
      retryable: true,
      applyConfirmedUntilMs: now + APPLY_CONFIRMATION_TTL_MS,
      fromVersion: this.o.runningVersion,
    };
  }

  private async persist(tx: UpdateTransaction): Promise<void> {
    tx.updatedAtMs = Math.max(this.now(), tx.startedAtMs);
    try {
      await persistTransaction(this.o.updatesDir, tx);
    } catch (err) {
      throw runFailure(
        `failed to persist update transaction: ${(err as Error).message}`,
        true,
        tx.phase === "failed" ? (tx.failedPhase ?? "created") : tx.phase,
      );
    }
  }

  private async transition(ctx: RunContext, phase: TxPhase, message: string, bytes?: { done: number; total: number }): Promise<void> {
    ctx.tx.phase = phase;
    ctx.tx.state = "in_progress";
    await this.persist(ctx.tx);
    ctx.progress({ phase, message, bytesDone: bytes?.done ?? 0, bytesTotal: bytes?.total ?? 0 });
    await testPause(phase);
  }

  private upToDate(version: string): UpdateOutcome {
    return {
      outcome: "already_up_to_date",
      fromVersion: this.o.runningVersion,
      toVersion: version,
      resumed: false,
      sha256: "",
      bundleVerified: false,
      checksumVerified: false,
      signingIdentity: "",
      installPath: "",
      restartNeeded: false,
      restarting: false,
    };
  }

  private failed(ctx: RunContext, error: UpdateError): UpdateOutcome {
    return { ...this.baseOutcome(ctx), outcome: "failed", restartNeeded: false, restarting: false, error };
  }

  /** Records a failure that ends the transaction (the next StartUpdate starts a fresh one). */
  private async stop(ctx: RunContext, message: string, phase: TxPhase, kind: UpdateError["kind"] = "precondition"): Promise<UpdateOutcome> {
    const { tx } = ctx;
    tx.state = "failed";
    if (tx.phase !== "failed") tx.failedPhase = phase;
    tx.phase = "failed";
    tx.lastError = message;
    tx.retryable = false;
    delete tx.nextAttemptAtMs;
    await this.persist(tx).catch((err: Error) => this.log.error({ err: err.message }, "could not record the update failure"));
    this.log.warn({ version: tx.version, phase, err: message }, "update stopped");
    return this.failed(ctx, new UpdateError(kind, message, false, phase));
  }

  private async runWithRetries(ctx: RunContext, onProgress: (p: Progress) => void, restart: boolean): Promise<UpdateOutcome> {
    const { tx } = ctx;
    ctx.progress = (p) => onProgress({ ...p, attempt: tx.attempt, maxAttempts: tx.maxAttempts, version: tx.version });
    const resumeFrom: TxPhase = tx.phase === "failed" ? (tx.failedPhase && tx.failedPhase !== "failed" ? tx.failedPhase : "created") : tx.phase;
    if (ctx.resumed) {
      // Work a crash may already have finished, or that must not be redone.
      const marker = await loadMarker(this.o.updatesDir).catch(() => undefined);
      if (
        marker?.startupState === "rolled_back" &&
        marker.toVersion === tx.version &&
        marker.installDir === (this.o.install.managed ? this.o.install.installDir : "")
      ) {
        return this.stop(
          ctx,
          `v${tx.version} was rolled back (${marker.reason ?? "by hand"}); not applying it again — run \`cara update --version ${tx.version}\` to retry it deliberately`,
          resumeFrom,
        );
      }
      if (
        this.o.install.managed &&
        (await currentVersion(this.o.install.installDir)) === tx.version &&
        tx.sha256 &&
        (await unpackedFrom(this.o.install.installDir, tx.version)) === tx.sha256
      ) {
        tx.state = "applied";
        tx.phase = "applied";
        tx.retryable = false;
        tx.lastError = null;
        delete tx.failedPhase;
        await this.persist(tx);
        this.log.info({ version: tx.version }, "the interrupted update had already switched to its version; marked applied");
        return {
          ...this.baseOutcome(ctx),
          outcome: "applied",
          bundleVerified: true,
          checksumVerified: true,
          restartNeeded: this.o.runningVersion !== tx.version,
          restarting: false,
        };
      }
      if (ctx.mode === "automatic" && (tx.applyConfirmedUntilMs ?? 0) < this.now()) {
        return this.stop(
          ctx,
          `stale update transaction ${tx.id} requires fresh operator confirmation before applying; run \`cara update\` to start it again`,
          resumeFrom,
        );
      }
    }
    for (;;) {
      if (tx.attempt >= tx.maxAttempts) {
        return this.stop(
          ctx,
          `update transaction retry budget exhausted (${tx.attempt}/${tx.maxAttempts}); the next \`cara update\` starts a fresh transaction`,
          resumeFrom,
        );
      }
      tx.attempt += 1;
      tx.state = "in_progress";
      tx.retryable = true;
      delete tx.nextAttemptAtMs;
      if (tx.phase === "failed") tx.phase = tx.failedPhase && tx.failedPhase !== "failed" ? tx.failedPhase : "created";
      delete tx.failedPhase;
      let failure: UpdateError;
      try {
        await this.persist(tx);
        await this.runOnce(ctx);
        tx.state = "applied";
        tx.phase = "applied";
        tx.retryable = false;
        tx.lastError = null;
        await this.persist(tx).catch((err: Error) =>
          this.log.error({ err: err.message }, "update applied but the transaction could not be marked applied (a rerun detects it)"),
        );
        const restarting = restart && this.o.requestRestart !== undefined;
        const outcome = { ...this.baseOutcome(ctx), outcome: "applied" as const, restartNeeded: !restarting, restarting };
        this.log.info({ from: outcome.fromVersion, to: tx.version, sha256: tx.sha256, restarting }, "update applied");
        if (restarting) setTimeout(() => this.o.requestRestart?.(), 200).unref();
        return outcome;
      } catch (err) {
        failure = err instanceof UpdateError ? err.withPhase(tx.phase) : runFailure((err as Error).message, true, tx.phase);
      }
      const phase = failure.phase ?? tx.phase;
      if (ctx.signal?.aborted) {
        // Stopped (shutdown, client gone): not the transaction's fault. Keep it resumable and
        // do not count the attempt.
        tx.attempt -= 1;
        tx.state = "failed";
        tx.phase = "failed";
        tx.failedPhase = phase;
        tx.lastError = `interrupted in ${phase}: ${failure.message}`;
        tx.retryable = true;
        await this.persist(tx).catch((err: Error) => this.log.error({ err: err.message }, "could not record the interruption"));
        return this.failed(
          ctx,
          new UpdateError(
            "unavailable",
            `update interrupted in ${phase} (server stopping or client gone); \`cara update\` or the next server start resumes it`,
            true,
            phase,
          ),
        );
      }
      let retryable = failure.retryable;
      let message = failure.message;
      if (retryable && tx.attempt >= tx.maxAttempts) {
        retryable = false;
        message = `gave up after ${tx.attempt} attempts (last: ${message})`;
      }
      tx.state = "failed";
      tx.phase = "failed";
      tx.failedPhase = phase;
      tx.lastError = message;
      tx.retryable = retryable;
      const delay = retryable ? retryDelayMs(tx.attempt, this.o.settings.retryDelaysMs) : 0;
      if (retryable) tx.nextAttemptAtMs = this.now() + delay;
      await this.persist(tx).catch((err: Error) => this.log.error({ err: err.message }, "could not record the update failure"));
      this.log.warn({ version: tx.version, phase, attempt: tx.attempt, retryable, err: message }, "update attempt failed");
      if (!retryable) {
        if (phase === "verified") await this.discardStaged(tx);
        return this.failed(ctx, new UpdateError(failure.kind, message, false, phase));
      }
      ctx.progress({ phase, message: `retrying in ${Math.round(delay / 1000)} s: ${message}`, bytesDone: 0, bytesTotal: 0 });
      try {
        await sleep(delay, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
      } catch {
        delete tx.nextAttemptAtMs;
        await this.persist(tx).catch(() => undefined);
        return this.failed(
          ctx,
          new UpdateError("unavailable", `${message} (interrupted while waiting to retry; \`cara update\` or the next server start resumes it)`, true, phase),
        );
      }
    }
  }

  private baseOutcome(ctx: RunContext): Omit<UpdateOutcome, "outcome" | "restartNeeded" | "restarting"> {
    const { tx } = ctx;
    const installDir = this.o.install.managed ? this.o.install.installDir : "";
    return {
      fromVersion: tx.fromVersion ?? this.o.runningVersion,
      toVersion: tx.version,
      resumed: ctx.resumed,
      sha256: tx.sha256 ?? "",
      bundleVerified: ctx.outcome.bundleVerified ?? false,
      checksumVerified: ctx.outcome.checksumVerified ?? false,
      signingIdentity: ctx.outcome.signingIdentity ?? "",
      installPath: ctx.outcome.installPath ?? (installDir ? join(installDir, "versions", tx.version) : ""),
      ...(ctx.outcome.preUpdateBackupPath ? { preUpdateBackupPath: ctx.outcome.preUpdateBackupPath } : {}),
    };
  }

  /** One pass over the phases, skipping work already proven by what is on disk. */
  private async runOnce(ctx: RunContext): Promise<void> {
    const { tx } = ctx;
    // A transaction stages one form's artifact; applying it as the other form would install
    // a tarball as an executable (or the reverse).
    const expected = artifactFor(tx.version, this.form);
    if (tx.assetName !== expected)
      throw runFailure(
        `the update transaction stages ${tx.assetName}, but this ${this.form} install needs ${expected}; run \`cara update --reset-transaction\`, then \`cara update\``,
        false,
        tx.phase,
      );
    const assets = releaseAssetsOf(tx.assetName);
    const staged = stagedPaths(this.o.updatesDir, tx.assetName);
    const sumsPath = join(this.o.updatesDir, `SHA256SUMS-${tx.version}.txt`);
    const files = [
      { name: assets.bundle, path: staged.bundle },
      { name: assets.sums, path: sumsPath },
      { name: assets.sumsBundle, path: `${sumsPath}.bundle` },
    ];

    // 1. Download (skipped when the staged artifact still has the recorded SHA-256).
    let artifactProven = false;
    if (tx.sha256 && existsSync(staged.staged)) {
      const actual = await sha256File(staged.staged).catch(() => undefined);
      artifactProven = actual === tx.sha256;
    }
    const missing = files.filter((f) => !existsSync(f.path));
    if (!artifactProven || missing.length > 0) {
      await this.transition(ctx, "downloading", `downloading ${assets.artifact}`);
      ctx.release ??= await this.fetchRelease(tx.version, "beta").catch((err: UpdateError) => {
        throw runFailure(err.message, err.retryable, "downloading");
      });
      requireAssets(ctx.release, tx.assetName, this.form);
      if (!artifactProven) {
        const asset = findAsset(ctx.release, assets.artifact)!;
        const result = await this.download(asset, staged.staged, ctx);
        tx.sha256 = result.sha256;
      }
      for (const f of missing) await this.download(findAsset(ctx.release, f.name)!, f.path, ctx);
      tx.stagedPath = staged.staged;
      tx.bundlePath = staged.bundle;
      await this.transition(ctx, "downloaded", `downloaded ${assets.artifact} (sha256 ${tx.sha256})`);
    } else {
      tx.stagedPath = staged.staged;
      tx.bundlePath = staged.bundle;
      ctx.progress({
        phase: "downloaded",
        message: `${assets.artifact} is already staged with the recorded SHA-256; not downloading again`,
        bytesDone: 0,
        bytesTotal: 0,
      });
    }

    // 2. Verify (always, it is cheap): artifact bundle, SHA256SUMS bundle, checksum cross-check,
    // against the trusted root refreshed through TUF first when that is on (./trust-root.ts).
    if (this.o.settings.tuf?.refresh)
      ctx.progress({ phase: tx.phase, message: "refreshing the Sigstore trusted root through TUF", bytesDone: 0, bytesTotal: 0 });
    const root = await this.trustedRoot();
    ctx.progress({ phase: tx.phase, message: `verifying the Sigstore bundle (${root.origin} trusted root)`, bytesDone: 0, bytesTotal: 0 });
    const signed = await verifyStagedRelease(
      { version: tx.version, assetName: tx.assetName, sha256: tx.sha256!, bundle: staged.bundle, sums: sumsPath, sumsBundle: `${sumsPath}.bundle` },
      this.o.settings,
      root.source,
    ).catch((err: UpdateError) => {
      throw runFailure(`${err.message}${refreshFailureNote(root)}`, err.retryable, "verified");
    });
    ctx.outcome.bundleVerified = true;
    ctx.outcome.checksumVerified = true;
    ctx.outcome.signingIdentity = signed.identity;
    await this.transition(ctx, "verified", `verified: signed by ${signed.identity}; SHA256SUMS.txt matches`);

    // 3. Apply: confirmation, pre-update backup, unpack, marker, switch.
    if (ctx.mode === "automatic" && (tx.applyConfirmedUntilMs ?? 0) < this.now()) {
      throw runFailure(
        `stale update transaction ${tx.id} requires fresh operator confirmation before applying; run \`cara update\` to start it again`,
        false,
        "applying",
      );
    }
    if (!this.o.install.managed) throw this.notManaged();
    const installDir = this.o.install.installDir;
    await this.transition(ctx, "applying", "taking the pre-update backup");
    if (this.o.backup) {
      try {
        ctx.outcome.preUpdateBackupPath = await this.o.backup(tx.version);
      } catch (err) {
        throw runFailure(`pre-update backup failed: ${(err as Error).message}`, true, "applying");
      }
    }
    const executable = this.form === "executable";
    const into = join(installDir, "versions", tx.version);
    ctx.progress({
      phase: "applying",
      message: executable ? `installing ${tx.assetName} into ${into}` : `unpacking into ${into}`,
      bytesDone: 0,
      bytesTotal: 0,
    });
    try {
      const unpacked = executable
        ? await stageExecutable(staged.staged, installDir, tx.version, tx.sha256!)
        : await unpackRelease(staged.staged, installDir, tx.version, tx.sha256!);
      ctx.outcome.installPath = unpacked.path;
      const from = (await currentVersion(installDir)) ?? this.o.runningVersion;
      if (from !== tx.version) {
        await writeMarker(this.o.updatesDir, {
          startupState: "pending",
          fromVersion: from,
          toVersion: tx.version,
          installDir,
          appliedAtMs: this.now(),
          ...(ctx.outcome.preUpdateBackupPath ? { backupPath: ctx.outcome.preUpdateBackupPath } : {}),
        });
      }
      if (executable) await ensureExecutableLayout(installDir, tx.version, { replaceUnknown: false });
      else await ensureLayout(installDir);
      await switchCurrent(installDir, tx.version);
      await testPause("switched");
    } catch (err) {
      throw runFailure(`apply failed: ${(err as Error).message}`, false, "applying");
    }
  }

  private async download(asset: ReleaseAsset, dest: string, ctx: RunContext) {
    try {
      let last = 0;
      const result = await downloadFile({
        url: asset.url,
        dest,
        ...(asset.size > 0 ? { expectedSize: asset.size } : {}),
        userAgent: `cara/${this.o.runningVersion}`,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        onProgress: (done, total) => {
          const t = performance.now();
          if (t - last < 100 && done !== total) return;
          last = t;
          ctx.progress({ phase: "downloading", message: `downloading ${asset.name}`, bytesDone: done, bytesTotal: total ?? 0 });
        },
      });
      if (result.resumedFrom > 0) this.log.info({ asset: asset.name, resumedFrom: result.resumedFrom }, "resumed a partial download");
      return result;
    } catch (err) {
      const retryable = err instanceof DownloadError ? err.retryable : true;
      throw runFailure((err as Error).message, retryable, "downloading");
    }
  }

  /** The trusted root for this verification, refreshed through TUF first when configured; a refresh failure is logged, not fatal. */
  private async trustedRoot(): Promise<ResolvedTrustedRoot> {
    let resolved: ResolvedTrustedRoot;
    try {
      resolved = await resolveTrustedRoot(this.o.settings, this.o.updatesDir, { refresh: true });
    } catch (err) {
      throw runFailure((err as Error).message, false, "verified");
    }
    const r = resolved.refresh;
    if (r?.ok === true && r.changed) this.log.info({ path: resolved.source.path }, "refreshed the Sigstore trusted root through TUF");
    if (r?.ok === false)
      this.log.warn(
        { reason: r.reason, using: resolved.origin },
        `could not refresh the Sigstore trusted root through TUF; verifying with the ${resolved.origin} root`,
      );
    return resolved;
  }

  /** After a verification failure the staged files are not trusted: remove them so a fresh run downloads again. */
  private async discardStaged(tx: UpdateTransaction): Promise<void> {
    const staged = stagedPaths(this.o.updatesDir, tx.assetName);
    const sums = join(this.o.updatesDir, `SHA256SUMS-${tx.version}.txt`);
    for (const p of [staged.staged, staged.bundle, sums, `${sums}.bundle`]) await removeIfPresent(p, this.o.updatesDir).catch(() => undefined);
  }

  async status(): Promise<UpdateStatusReport> {
    const report: UpdateStatusReport = {
      releaseSource: splitCredentials(new URL(this.o.settings.releasesUrl)).url.href,
      currentVersion: this.o.runningVersion,
      managed: this.managed,
      resumePending: false,
      inProgress: await this.lock.held(),
      installedVersions: [],
      trustedRoot: await trustedRootLocation(this.o.settings, this.o.updatesDir),
      trustRefresh: this.o.settings.tuf?.refresh === true,
    };
    try {
      const tx = await loadTransaction(this.o.updatesDir);
      if (tx) {
        report.transaction = tx;
        report.resumePending = resumePending(tx);
      }
    } catch (err) {
      report.transactionError = (err as Error).message;
    }
    try {
      const marker = await loadMarker(this.o.updatesDir);
      if (marker) report.marker = marker;
    } catch (err) {
      report.markerError = (err as Error).message;
    }
    if (this.o.install.managed) {
      const dir = this.o.install.installDir;
      report.installDir = dir;
      report.installedVersions = await installedVersions(dir);
      const prev = await previousVersion(dir);
      if (prev) report.previousVersion = prev;
    } else {
      report.unmanagedReason = this.o.install.reason;
    }
    return report;
  }

  /** Whether this version runs on probation: started by the launcher after an update, not yet ready. */
  async onProbation(): Promise<boolean> {
    if (!this.o.install.managed) return false;
    const marker = await loadMarker(this.o.updatesDir).catch(() => undefined);
    return marker?.startupState === "started" && marker.toVersion === this.o.runningVersion && marker.installDir === this.o.install.installDir;
  }

  /** Marks the rollback marker cleared once this version is ready (the launcher will not roll back). */
  async markHealthy(): Promise<void> {
    // The marker first: it ends the probation, which refreshing the launcher (a ~100 MB copy in
    // the executable form) must not delay.
    const marker = await loadMarker(this.o.updatesDir).catch(() => undefined);
    if (marker?.startupState === "started" && marker.toVersion === this.o.runningVersion) {
      marker.startupState = "cleared";
      marker.clearedAtMs = this.now();
      await writeMarker(this.o.updatesDir, marker);
      this.log.info({ version: this.o.runningVersion }, "update confirmed healthy; rollback marker cleared");
    }
    if (!this.o.install.managed) return;
    // A launcher fix ships with the version that brings it: refresh it once this version is good.
    // Only upgrade it: a rolled-back older version must not replace a newer launcher.
    const installDir = this.o.install.installDir;
    if (this.form === "executable") {
      // The launcher is a copy of an executable: this one, now proven to start and become ready.
      if (((await executableLauncherInfo(installDir))?.protocol ?? 0) < LAUNCHER_PROTOCOL)
        await writeExecutableLauncher(installDir, this.o.executablePath ?? process.execPath, {
          protocol: LAUNCHER_PROTOCOL,
          version: this.o.runningVersion,
        }).then(
          () => this.log.info({ version: this.o.runningVersion, protocol: LAUNCHER_PROTOCOL }, "refreshed the launcher from this executable"),
          (err: Error) => this.log.warn({ err: err.message }, "could not refresh the launcher"),
        );
    } else {
      const current = await readFile(join(installDir, "bin", "cara"), "utf8").catch(() => "");
      if (launcherProtocolOf(current) < LAUNCHER_PROTOCOL)
        await writeLauncher(installDir).catch((err: Error) => this.log.warn({ err: err.message }, "could not refresh the launcher"));
    }
  }

  async rollback(req: RollbackRequest): Promise<RollbackResult> {
    if (!this.o.install.managed) throw this.notManaged();
    if (req.reason !== undefined && req.reason.length > 1024)
      throw new UpdateError("invalid", "reason is longer than 1024 characters", false, undefined, "reason");
    const installDir = this.o.install.installDir;
    return this.withLock(async () => {
      let backup: string | undefined;
      if (req.restoreState) {
        // Every precondition before anything changes.
        const marker = await loadMarker(this.o.updatesDir).catch(() => undefined);
        const from = await currentVersion(installDir);
        const target = req.targetVersion ? parseInput(() => normalizeVersion(req.targetVersion!), "target_version") : await previousVersion(installDir);
        backup = marker?.backupPath;
        if (!backup || !this.o.restore || !existsSync(backup))
          throw new UpdateError("precondition", "no pre-update backup recorded; restore one with `cara restore`", false);
        if (marker!.fromVersion !== target || marker!.toVersion !== from) {
          throw new UpdateError(
            "precondition",
            `the recorded pre-update backup was taken when v${marker!.fromVersion} was replaced by v${marker!.toVersion}, not for v${from} -> v${target ?? "?"}; roll back without --restore-state and restore a backup with \`cara restore\``,
            false,
          );
        }
      }
      const markerBefore = await loadMarker(this.o.updatesDir).catch(() => undefined);
      const result = await rollbackInstall(installDir, this.o.updatesDir, req.targetVersion, req.reason, this.now());
      if (backup) {
        try {
          await this.o.restore!(backup);
        } catch (err) {
          await switchCurrent(installDir, result.from).catch(() => undefined);
          if (markerBefore) await writeMarker(this.o.updatesDir, markerBefore).catch(() => undefined);
          throw new UpdateError(
            "precondition",
            `restoring ${backup} failed: ${(err as Error).message}; switched current back to v${result.from}, nothing else changed`,
            false,
          );
        }
      }
      const restarting = (req.restart ?? false) && this.o.requestRestart !== undefined;
      if (restarting) setTimeout(() => this.o.requestRestart?.(), 200).unref();
      this.log.warn({ from: result.from, to: result.to, reason: req.reason, restored: backup }, "rolled back the installed version");
      return { fromVersion: result.from, toVersion: result.to, restartNeeded: !restarting, restarting, ...(backup ? { restoredBackupPath: backup } : {}) };
    });
  }
}

/**
 * Switches `<install>/current` back to `target` (default: `previous`) and records it in the
 * rollback marker. Used by RollbackUpdate and by `cara update --rollback` while the server is down.
 */
export async function rollbackInstall(
  installDir: string,
  updatesDir: string,
  target: string | undefined,
  reason: string | undefined,
  now = Date.now(),
): Promise<{ from: string; to: string; marker?: RollbackMarkerFile }> {
  const wanted = target ? parseInput(() => normalizeVersion(target), "target_version") : await previousVersion(installDir);
  const from = await currentVersion(installDir);
  if (!wanted) throw new UpdateError("precondition", "no previous version to roll back to", false);
  const marker = await loadMarker(updatesDir).catch(() => undefined);
  const installed = await installedVersions(installDir);
  if (
    !target &&
    marker?.startupState === "rolled_back" &&
    marker.toVersion === wanted &&
    marker.rolledBackAtMs !== undefined &&
    !marker.reason?.startsWith("rolled back by hand")
  ) {
    throw new UpdateError(
      "precondition",
      `the previous version v${wanted} was rolled back automatically (it never became ready); name the version to switch to with --version (installed: ${installed.map((v) => `v${v}`).join(", ")})`,
      false,
    );
  }
  if (!installed.includes(wanted)) {
    throw new UpdateError("not_found", `version v${wanted} is not installed in ${join(installDir, "versions")}`, false);
  }
  if (from === wanted) throw new UpdateError("precondition", `v${wanted} is already current`, false);
  await switchCurrent(installDir, wanted);
  await mkdir(updatesDir, { recursive: true, mode: 0o700 });
  const samePair = marker !== undefined && marker.fromVersion === wanted && marker.toVersion === from;
  const next: RollbackMarkerFile = {
    ...(marker ?? {}),
    backupPath: undefined,
    ...(samePair && marker?.backupPath ? { backupPath: marker.backupPath } : {}),
    startupState: "rolled_back",
    fromVersion: wanted,
    toVersion: from ?? "unknown",
    installDir,
    appliedAtMs: marker?.appliedAtMs ?? now,
    rolledBackAtMs: now,
    reason: reason ? `rolled back by hand: ${reason}` : "rolled back by hand",
  };
  await writeMarker(updatesDir, next);
  return { from: from ?? "unknown", to: wanted, marker: next };
}

/**
 * Crash tests only: with CARA_TEST_UPDATE_PAUSE_AFTER=<phase|switched> the run stops for good
 * right after that point is on disk, so a test can kill -9 the server exactly there. Inert
 * unless that variable is set.
 */
async function testPause(point: string): Promise<void> {
  if (process.env.CARA_TEST_UPDATE_PAUSE_AFTER === point) await new Promise(() => {});
}

const semverValid = (v: string) => semver.valid(v.replace(/^v/, ""));

function parseInput<T>(fn: () => T, field?: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidUpdateInput) throw new UpdateError("invalid", err.message, false, undefined, field);
    throw err;
  }
}

function findAsset(release: Release, name: string): ReleaseAsset | undefined {
  return release.assets.find((a) => a.name === name);
}

/** A release must carry the artifact, its bundle, SHA256SUMS.txt and its bundle (fail closed). */
function requireAssets(release: Release, artifact: string, form: ReleaseForm): void {
  const names = releaseAssetsOf(artifact);
  for (const name of [names.artifact, names.bundle, names.sums, names.sumsBundle]) {
    if (!findAsset(release, name)) {
      const available = release.assets.map((a) => a.name).join(", ") || "none";
      const what = form === "executable" && name === artifact ? ", the platform executable this install runs on" : "";
      throw new UpdateError(
        "not_found",
        `release ${release.tag} has no asset '${name}'${what} (available: ${available}); nothing was downloaded or applied`,
        false,
        "downloading",
      );
    }
  }
}

function releaseError(err: unknown): UpdateError {
  if (err instanceof ReleaseSourceError) {
    const kind = err.kind === "not_found" ? "not_found" : err.retryable ? "unavailable" : "precondition";
    return new UpdateError(kind, err.message, err.retryable);
  }
  if (err instanceof UpdateError) return err;
  return new UpdateError("unavailable", `failed to fetch release info: ${(err as Error).message}`, true);
}
