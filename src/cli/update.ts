import { createInterface } from "node:readline/promises";
import { Code } from "@connectrpc/connect";
import { Command, Option } from "clipanion";
import {
  CheckForUpdateResponseSchema,
  GetUpdateStatusResponseSchema,
  RollbackUpdateResponseSchema,
  UpdateResultSchema,
  UpdateOutcome,
  UpdatePhase,
  UpdateService,
  UpdateTransactionState,
  type GetUpdateStatusResponse,
  type UpdateResult,
} from "../../gen/carapace/update/v1/update_pb.js";
import { statePaths } from "../state/paths.js";
import { VERSION, PACKAGE_ROOT } from "../version.js";
import { CaraCommand, ClientCommand } from "./base.js";
import { humanBytes } from "./backup.js";
import { messageToCliJson } from "./json.js";
import { retryDelayMsOf } from "../wire/error-details.js";
import type { EnumNames } from "../wire/enum-names.js";
import { rollbackStateNames, transactionStateNames, updatePhaseNames } from "../wire/update.js";
import { describeError, isServerError, rpcClient } from "./rpc.js";
import { CliFailure, CliUsageError, isLoopbackHost, parseTimeout, resolveTarget } from "./target.js";
import { stripTerminalUnsafe } from "./terminal.js";

/** A value's name; "" when unset (0), "unknown" for a value this build does not know. */
const nameOf = (names: EnumNames<number>, value: number) => (value === 0 ? "" : (names.name(value) ?? "unknown"));
const phaseName = (p: UpdatePhase) => nameOf(updatePhaseNames, p);

function isConnectionRefused(err: unknown): boolean {
  if (isServerError(err)) return false;
  let e: unknown = err;
  for (let i = 0; i < 5 && e; i++) {
    if ((e as { code?: unknown }).code === "ECONNREFUSED" || String((e as Error).message ?? "").includes("ECONNREFUSED")) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export class UpdateCommand extends ClientCommand {
  static override paths = [["update"]];
  static override usage = Command.Usage({
    category: "Update",
    description: "Check for, install, inspect or roll back a signed release of cara",
    details: `
      Self-update from signed releases, fail-closed: an artifact is applied only after its Sigstore bundle
      verifies against the Sigstore trusted root with the exact certificate identity (the release workflow
      github.com/<owner>/<repo>/.github/workflows/release.yml at tag v<version>) and issuer,
      with a transparency-log entry, and its SHA-256 matches the (also signed) SHA256SUMS.txt. Nothing can
      switch verification off; forks configure \`update.identity\`, \`update.issuer\`, \`update.trustedRoot\`.
      The trusted root is refreshed through TUF before verifying (kept in \`<state>/updates/tuf/\`); offline,
      the last refreshed one or the one pinned with cara is used (\`update.trustRefresh: false\` stops fetching).

      The update runs as a durable transaction (\`<state>/updates/transaction.json\`): interrupted runs resume
      (a verified download is not fetched again, a partial one continues with HTTP Range), transient failures
      are retried with backoff (about 5 s, 15 s, 45 s; 3 attempts), authenticity failures stop and apply nothing.
      Before applying, the server takes a backup (\`<state>/backups/pre-update-*.tar.gz\`). The new version is
      unpacked beside the old one (\`<install>/versions/<v>\`) and \`<install>/current\` is switched atomically;
      a version that crashes or is not ready in time (update.readyTimeoutMs) is rolled back by the launcher.

      Self-update needs a managed install (\`cara install --dir DIR\`); a git checkout or npm install says how
      to update instead. Modes: (default) install, --check, --status, --rollback, --reset-transaction.
    `,
    examples: [
      ["Is there a newer release?", "cara update --check"],
      ["Install the newest stable release, asking first", "cara update"],
      ["Install a pinned version without a prompt and restart on it", "cara update --version 0.9.1 --yes --restart"],
      ["What is the update state (transaction, rollback marker, installed versions)?", "cara update --status"],
      ["Switch back to the previous version (also works while the server is down)", "cara update --rollback --reason 'v0.9.1 breaks channels'"],
      ["Forget a corrupt or unwanted transaction", "cara update --reset-transaction"],
    ],
  });

  check = Option.Boolean("--check", false, { description: "Only check: print the current and newest version" });
  status = Option.Boolean("--status", false, { description: "Show the transaction, rollback marker and installed versions" });
  rollback = Option.Boolean("--rollback", false, { description: "Switch back to the previous (or --version) installed version" });
  resetTransaction = Option.Boolean("--reset-transaction", false, { description: "Move transaction.json aside so the next update starts fresh (local)" });
  version = Option.String("--version", { description: "Target version (install, check or rollback), e.g. 0.9.1" });
  channel = Option.String("--channel", { description: "stable (default) or beta (includes pre-releases)" });
  yes = Option.Boolean("--yes,-y", false, { description: "Do not ask for confirmation" });
  restart = Option.Boolean("--restart", false, { description: "Restart the server on the new version once applied" });
  allowDowngrade = Option.Boolean("--allow-downgrade", false, { description: "Allow a target older than the running version" });
  reason = Option.String("--reason", { description: "Rollback: a note recorded in the rollback marker and the log" });
  restoreState = Option.Boolean("--restore-state", false, { description: "Rollback: also restore the state from the pre-update backup" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  timeout = Option.String("--timeout", "30m", { description: "Give up after this long (default 30m)" });

  async run(): Promise<number> {
    const modes = [this.check, this.status, this.rollback, this.resetTransaction].filter(Boolean).length;
    if (modes > 1) throw new CliUsageError("--check, --status, --rollback and --reset-transaction are separate modes: pick one");
    if (this.resetTransaction) return this.runReset();
    const target = await this.target();
    const timeoutMs = parseTimeout(this.timeout);
    const client = await rpcClient(UpdateService, target, timeoutMs);
    try {
      if (this.check) return await this.runCheck(client);
      if (this.status) return await this.runStatus(client);
      if (this.rollback) return await this.runRollback(client);
      return await this.runInstall(client);
    } catch (err) {
      if (err instanceof CliFailure || err instanceof CliUsageError) throw err;
      if (this.rollback && isConnectionRefused(err) && isLoopbackHost(target.host)) return this.runLocalRollback();
      // The server's own words when it answered (ErrorInfo), except a refused token (described
      // with what to do about it); otherwise what went wrong reaching it.
      const fromServer = isServerError(err) && err.code !== Code.Unauthenticated;
      const message = fromServer ? err.rawMessage : describeError(err, target, timeoutMs);
      if (this.check) {
        this.context.stderr.write(`Failed to check for updates: ${message}\n`);
        if (fromServer && retryDelayMsOf(err) !== undefined) this.context.stderr.write("This may be a temporary issue; retry in a moment.\n");
        return 1;
      }
      throw new CliFailure(message);
    }
  }

  private async runCheck(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const r = await client.checkForUpdate({ channel: this.channel ?? "", ...(this.version !== undefined ? { version: this.version } : {}), allowDowngrade: this.allowDowngrade });
    if (this.json) {
      this.printJson(messageToCliJson(CheckForUpdateResponseSchema, r));
      return 0;
    }
    const out = this.context.stdout;
    out.write(`Current version: v${r.currentVersion}\n`);
    out.write(`Latest version:  v${stripTerminalUnsafe(r.latestVersion)}${r.prerelease ? " (pre-release)" : ""}\n`);
    if (r.updateAvailable) {
      out.write(`Update available: v${r.currentVersion} -> v${stripTerminalUnsafe(r.latestVersion)}${r.downgrade ? " (downgrade)" : ""}\n`);
      out.write(r.managed ? "Run `cara update` to install\n" : "Self-update does not apply to this installation (see `cara update --status`)\n");
    } else if (r.downgrade) {
      out.write(`v${stripTerminalUnsafe(r.latestVersion)} is older than the running v${r.currentVersion} (pass --allow-downgrade to install it)\n`);
    } else {
      out.write(`Already up to date (v${r.currentVersion})\n`);
    }
    return 0;
  }

  private async runStatus(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const s = await client.getUpdateStatus({});
    if (this.json) {
      this.printJson(messageToCliJson(GetUpdateStatusResponseSchema, s));
      return 0;
    }
    this.context.stdout.write(formatStatus(s));
    return 0;
  }

  private async runRollback(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const r = await client.rollbackUpdate({
      ...(this.version !== undefined ? { targetVersion: this.version } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      restart: this.restart,
      restoreState: this.restoreState,
    });
    if (this.json) {
      this.printJson(messageToCliJson(RollbackUpdateResponseSchema, r));
      return 0;
    }
    this.context.stdout.write(`Rolled back: current is now v${r.toVersion} (was v${r.fromVersion}).\n`);
    if (r.restoredBackupPath) this.context.stdout.write(`State restored from ${r.restoredBackupPath}.\n`);
    this.context.stdout.write(r.restarting ? `The server is restarting on v${r.toVersion}.\n` : `Restart cara to run v${r.toVersion}.\n`);
    return 0;
  }

  /** The server is down: act on the local install directory. */
  private async runLocalRollback(): Promise<number> {
    if (this.restoreState) throw new CliFailure("--restore-state needs the server running (or run `cara restore FILE --offline` after rolling back)");
    const { detectInstall } = await import("../update/install.js");
    const { rollbackInstall } = await import("../update/manager.js");
    const { lockOwner } = await import("../state/lock.js");
    const { UpdateLock } = await import("../update/update-lock.js");
    const install = await detectInstall(PACKAGE_ROOT);
    if (!install.managed) throw new CliFailure(`the server is not running and self-update does not apply here: ${install.reason}`);
    const paths = statePaths(this.resolveStateDir(this.stateDir));
    const owner = await lockOwner(paths.root);
    if (owner !== undefined) throw new CliFailure(`a server (pid ${owner}) holds ${paths.root} but did not answer on this port; pass its --port, or stop it first`);
    const r = await new UpdateLock(paths.updatesDir).run(() => rollbackInstall(install.installDir, paths.updatesDir, this.version, this.reason)).catch((err: Error) => {
      throw new CliFailure(err.message);
    });
    if (this.json) this.printJson({ fromVersion: r.from, toVersion: r.to, restartNeeded: true, restarting: false, offline: true });
    else this.context.stdout.write(`The server is not running; rolled back the install in ${install.installDir}: current is now v${r.to} (was v${r.from}).\nStart cara to run v${r.to}.\n`);
    return 0;
  }

  private async runReset(): Promise<number> {
    const { resetTransaction } = await import("../update/transaction.js");
    const { UpdateLock, UpdateBusyError } = await import("../update/update-lock.js");
    const updatesDir = statePaths(this.resolveStateDir(this.stateDir)).updatesDir;
    let aside: string | undefined;
    try {
      aside = await new UpdateLock(updatesDir).run(() => resetTransaction(updatesDir));
    } catch (err) {
      if (err instanceof UpdateBusyError) throw new CliFailure(`${err.message}; wait for it to finish (cara update --status)`);
      if ((err as NodeJS.ErrnoException).code === "ENOENT") aside = undefined;
      else throw err;
    }
    if (this.json) this.printJson({ reset: aside !== undefined, ...(aside ? { movedTo: aside } : {}) });
    else this.context.stdout.write(aside ? `Moved the update transaction aside to ${aside}; the next \`cara update\` starts fresh.\n` : "There is no update transaction; nothing to reset.\n");
    return 0;
  }

  private async runInstall(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const out = this.context.stdout;
    const status = await client.getUpdateStatus({});
    if (!status.managed) throw new CliFailure(`self-update does not apply to this installation: ${status.unmanagedReason ?? "not a managed install"}`);
    const resuming = status.resumePending && status.transaction && (this.version === undefined || this.version.replace(/^v/, "") === status.transaction.version);
    let from = status.currentVersion;
    let to: string;
    if (resuming) {
      to = status.transaction!.version;
      if (!this.json) out.write(`Resuming the interrupted update to v${to} (attempt ${status.transaction!.attempt + 1}/${status.transaction!.maxAttempts}).\n`);
    } else {
      const check = await client.checkForUpdate({ channel: this.channel ?? "", ...(this.version !== undefined ? { version: this.version } : {}), allowDowngrade: this.allowDowngrade });
      from = check.currentVersion;
      to = check.latestVersion;
      if (!check.updateAvailable) {
        if (check.downgrade) throw new CliFailure(`v${to} is older than the running v${from}; pass --allow-downgrade`);
        if (this.json) this.printJson({ outcome: "already_up_to_date", fromVersion: from, toVersion: to });
        else out.write(`Already up to date (v${from})\n`);
        return 0;
      }
    }
    if (!this.yes) {
      const tty = (this.context.stdin as { isTTY?: boolean }).isTTY === true && !this.json;
      if (!tty) throw new CliUsageError("update not confirmed: pass --yes (there is no terminal to ask)");
      const rl = createInterface({ input: this.context.stdin, output: this.context.stderr });
      const answer = await rl.question(`Update cara from v${from} to v${to}${this.restart ? " and restart the server" : ""}? [y/N] `);
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) {
        this.context.stderr.write("Not updating.\n");
        return 1;
      }
    }
    if (!this.json && !resuming) out.write(`Updating from v${from} to v${to}...\n`);
    const tty = (this.context.stderr as { isTTY?: boolean }).isTTY === true && !this.json;
    let result: UpdateResult | undefined;
    let lastLine = "";
    try {
      for await (const msg of client.startUpdate({ version: to, channel: this.channel ?? "", allowDowngrade: this.allowDowngrade, restart: this.restart, yes: true })) {
        if (msg.result) result = msg.result;
        if (this.json) continue;
        const line = msg.bytesTotal > 0n && msg.phase === UpdatePhase.DOWNLOADING
          ? `[${phaseName(msg.phase)}] ${stripTerminalUnsafe(msg.message)} ${humanBytes(Number(msg.bytesDone))} / ${humanBytes(Number(msg.bytesTotal))} (${Math.floor((Number(msg.bytesDone) * 100) / Number(msg.bytesTotal))}%)`
          : `[${phaseName(msg.phase)}] ${stripTerminalUnsafe(msg.message)}`;
        if (tty) this.context.stderr.write(`\r\u001b[2K${line}`);
        else if (msg.phase !== UpdatePhase.DOWNLOADING || msg.bytesTotal === 0n || line !== lastLine) {
          if (!line.includes("%)")) this.context.stderr.write(`${line}\n`);
        }
        lastLine = line;
      }
      if (tty) this.context.stderr.write("\n");
    } catch (err) {
      if (tty) this.context.stderr.write("\n");
      if (!result) throw err;
    }
    if (!result) throw new CliFailure("the server ended the update without a result; see `cara update --status`");
    if (this.json) {
      this.printJson(messageToCliJson(UpdateResultSchema, result));
      return result.outcome === UpdateOutcome.FAILED ? 1 : 0;
    }
    return this.printResult(result);
  }

  private printResult(r: UpdateResult): number {
    const out = this.context.stdout;
    if (r.outcome === UpdateOutcome.ALREADY_UP_TO_DATE) {
      out.write(`Already up to date (v${r.toVersion})\n`);
      return 0;
    }
    if (r.outcome === UpdateOutcome.FAILED) {
      const err = this.context.stderr;
      err.write(`Update failed (phase: ${phaseName(r.failedPhase)}): ${stripTerminalUnsafe(r.error)}\n`);
      const beforeApply = r.failedPhase !== UpdatePhase.APPLYING && r.failedPhase !== UpdatePhase.APPLIED;
      err.write(
        r.retryable
          ? "This failure is retryable; rerun `cara update` to resume.\n"
          : beforeApply
            ? "This failure is non-retryable and nothing was applied; resolve the cause before retrying (the next `cara update` starts a fresh transaction).\n"
            : "This failure is non-retryable; check which version is current with `cara update --status` (the next `cara update` starts a fresh transaction).\n",
      );
      return 1;
    }
    if (r.resumed) out.write("Resumed pending update transaction.\n");
    out.write("Update applied successfully.\n");
    out.write(`  Installed: ${r.installPath}\n`);
    out.write(`  SHA-256: ${r.sha256}\n`);
    out.write(`  Sigstore bundle verification: ${r.bundleVerified ? "passed" : "not done"}\n`);
    out.write(`  Checksum verification: ${r.checksumVerified ? "passed" : "not available"}\n`);
    out.write(`  Signing identity: ${stripTerminalUnsafe(r.signingIdentity)}\n`);
    if (r.preUpdateBackupPath) out.write(`  Pre-update backup: ${r.preUpdateBackupPath}\n`);
    out.write(r.restarting ? `The server is restarting on v${r.toVersion}.\n` : `Restart cara to use v${r.toVersion}.\n`);
    return 0;
  }
}

function trustedRootLine(s: GetUpdateStatusResponse): string {
  const refresh = s.trustRefresh ? "TUF refresh before each verification" : "TUF refresh off";
  switch (s.trustedRootOrigin) {
    case "configured":
      return `${s.trustedRootPath} (update.trustedRoot; never refreshed)`;
    case "refreshed":
      return `${s.trustedRootPath} (fetched through TUF${s.trustedRootRefreshedAtMs !== undefined ? ` ${new Date(Number(s.trustedRootRefreshedAtMs)).toISOString()}` : ""}; ${refresh})`;
    default:
      return `${s.trustedRootPath} (pinned with cara; ${refresh})`;
  }
}

export function formatStatus(s: GetUpdateStatusResponse): string {
  const lines: string[] = [];
  lines.push(`Running version:   v${s.currentVersion}`);
  if (s.managed) {
    lines.push(`Install:           ${s.installDir} (managed)`);
    lines.push(`Installed:         ${s.installedVersions.map((v) => `v${v}`).join(", ") || "(none)"}`);
    if (s.previousVersion) lines.push(`Previous version:  v${s.previousVersion}`);
  } else {
    lines.push(`Install:           not managed: ${s.unmanagedReason ?? ""}`);
  }
  lines.push(`Trusted root:      ${trustedRootLine(s)}`);
  const tx = s.transaction;
  if (s.transactionError) lines.push(`Transaction:       UNREADABLE: ${s.transactionError}`);
  else if (tx) {
    const state = nameOf(transactionStateNames, tx.state);
    lines.push(`Transaction:       v${tx.version} ${state}, phase ${phaseName(tx.phase)}${tx.state === UpdateTransactionState.FAILED && tx.failedPhase ? ` (failed in ${phaseName(tx.failedPhase)})` : ""}, attempt ${tx.attempt}/${tx.maxAttempts}`);
    if (tx.lastError) lines.push(`  Last error:      ${stripTerminalUnsafe(tx.lastError)}${tx.state === UpdateTransactionState.FAILED ? (tx.retryable ? " (retryable)" : " (non-retryable)") : ""}`);
    if (tx.nextAttemptAtMs !== undefined && s.resumePending) lines.push(`  Next attempt:    ${new Date(Number(tx.nextAttemptAtMs)).toISOString()}`);
    if (s.resumePending) lines.push("  Resume pending:  yes (`cara update` resumes it)");
  } else lines.push("Transaction:       none");
  if (s.inProgress) lines.push("In progress:       yes (an update holds the lock now)");
  const m = s.rollbackMarker;
  if (s.rollbackMarkerError) lines.push(`Rollback marker:   UNREADABLE: ${s.rollbackMarkerError}`);
  else if (m) {
    lines.push(`Rollback marker:   ${nameOf(rollbackStateNames, m.state)} (v${m.fromVersion} -> v${m.toVersion}, applied ${new Date(Number(m.appliedAtMs)).toISOString()})`);
    if (m.reason) lines.push(`  Reason:          ${stripTerminalUnsafe(m.reason)}`);
    if (m.backupPath) lines.push(`  Pre-update backup: ${m.backupPath}`);
  }
  return `${lines.join("\n")}\n`;
}

export class UpdateVerifyCommand extends CaraCommand {
  static override paths = [["update", "verify"]];
  static override usage = Command.Usage({
    category: "Update",
    description: "Verify a release artifact's Sigstore bundle offline (validate before rollout)",
    details: `
      Checks that the bundle is a valid Sigstore signature over the artifact (or over \`sha256:<hex>\`), made by
      a certificate from the trusted root with exactly the given identity and OIDC issuer, with a verified
      transparency-log entry. Uses the trusted root pinned with cara unless --trusted-root is given (\`cara
      update --status\` names the root the server verifies with, e.g. one refreshed through TUF); needs no
      network. Flags follow \`cosign verify-blob\`. An identity regexp is always anchored (^...$).
      Exit 0 when verified, 1 when not (with the reason), 2 for usage errors.
    `,
    examples: [
      [
        "Verify a downloaded release",
        "cara update verify carapace-0.9.1.tar.gz --bundle carapace-0.9.1.tar.gz.bundle --certificate-identity https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/v0.9.1 --certificate-oidc-issuer https://token.actions.githubusercontent.com",
      ],
      ["Verify by digest, any v* tag of the workflow", "cara update verify sha256:acc4... --bundle SHA256SUMS.txt.bundle --certificate-identity-regexp 'https://github\\.com/OWNER/REPO/\\.github/workflows/release\\.yml@refs/tags/v.*' --certificate-oidc-issuer https://token.actions.githubusercontent.com"],
    ],
  });

  artifact = Option.String({ name: "artifact|sha256:<hex>" });
  bundle = Option.String("--bundle", { required: true, description: "The Sigstore bundle (.bundle / .sigstore.json)" });
  identity = Option.String("--certificate-identity", { description: "Exact certificate identity (SAN URI)" });
  identityRegexp = Option.String("--certificate-identity-regexp", { description: "Identity pattern (anchored)" });
  issuer = Option.String("--certificate-oidc-issuer", { required: true, description: "Exact OIDC issuer, e.g. https://token.actions.githubusercontent.com" });
  trustedRoot = Option.String("--trusted-root", { description: "A Sigstore trusted_root.json (default: the one pinned with cara)" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    if ((this.identity === undefined) === (this.identityRegexp === undefined)) {
      throw new CliUsageError("pass exactly one of --certificate-identity and --certificate-identity-regexp");
    }
    if (this.identityRegexp !== undefined) {
      try {
        new RegExp(this.identityRegexp);
      } catch (err) {
        throw new CliUsageError(`--certificate-identity-regexp is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    const { loadTrustedRoot, parseDigestArgument, sha256File, verifyBundle } = await import("../update/verify.js");
    const { readFile } = await import("node:fs/promises");
    let digest = parseDigestArgument(this.artifact);
    if (digest === undefined) {
      if (this.artifact.startsWith("sha256:")) throw new CliUsageError(`'${this.artifact}' is not sha256:<64 hex digits>`);
      digest = await sha256File(this.resolvePath(this.artifact)).catch((err: Error) => {
        throw new CliFailure(`cannot read artifact ${this.artifact}: ${err.message}`);
      });
    }
    const bundle = await readFile(this.resolvePath(this.bundle)).catch((err: Error) => {
      throw new CliFailure(`cannot read bundle ${this.bundle}: ${err.message}`);
    });
    const root = await loadTrustedRoot(this.trustedRoot === undefined ? undefined : this.resolvePath(this.trustedRoot)).catch((err: Error) => {
      throw new CliFailure(err.message);
    });
    const identity = this.identity !== undefined ? { exact: this.identity } : { regexp: this.identityRegexp! };
    try {
      const v = await verifyBundle({ bundle, digest, identity, issuer: this.issuer, trustedRoot: root });
      if (this.json) this.printJson({ verified: true, ...v, trustedRoot: root.path });
      else {
        const out = this.context.stdout;
        out.write("Verified OK\n");
        out.write(`  Artifact SHA-256:  ${v.digest}\n`);
        out.write(`  Identity:          ${v.identity}\n`);
        out.write(`  Issuer:            ${v.issuer}\n`);
        if (v.logIndex !== undefined) out.write(`  Transparency log:  index ${v.logIndex}${v.integratedTime ? ` at ${v.integratedTime}` : ""}\n`);
        out.write(`  Trusted root:      ${root.path}\n`);
      }
      return 0;
    } catch (err) {
      if (this.json) this.printJson({ verified: false, error: (err as Error).message, digest });
      else this.context.stderr.write(`Verification failed: ${(err as Error).message}\n`);
      return 1;
    }
  }
}

export class InstallCommand extends CaraCommand {
  static override paths = [["install"]];
  static override usage = Command.Usage({
    category: "Update",
    description: "Create a managed install (the production layout that `cara update` can update)",
    details: `
      Downloads a release, verifies it exactly like \`cara update\` (Sigstore bundle with the pinned trusted root,
      exact identity and issuer, SHA256SUMS.txt) and unpacks it into DIR:
        DIR/versions/<version>/   the release
        DIR/current               symlink to the version that runs
        DIR/bin/cara              the launcher: put DIR/bin on PATH and run \`cara start\`
      Running it again with another --version adds that version and makes it current.
      Release source, identity, issuer and trusted root come from the \`update\` section of
      <state>/config.json (--state-dir), or the flags below.
    `,
    examples: [
      ["Install the newest stable release into /opt/carapace", "cara install --dir /opt/carapace"],
      ["Install a pinned version", "cara install --dir /opt/carapace --version 0.9.1"],
    ],
  });

  dir = Option.String("--dir", { required: true, description: "Install directory (created if missing)" });
  version = Option.String("--version", { description: "Version to install (default: the newest on the channel)" });
  channel = Option.String("--channel", { description: "stable (default) or beta" });
  releasesUrl = Option.String("--releases-url", { description: "Releases API base (default: config update.releasesUrl or the project's GitHub repo)" });
  trustedRoot = Option.String("--trusted-root", { description: "Sigstore trusted_root.json (default: config update.trustedRoot or the pinned one)" });
  stateDir = Option.String("--state-dir", { description: "State dir whose config.json `update` section to use" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    const { loadConfig } = await import("../state/config.js");
    const { resolveUpdateSettings } = await import("../update/settings.js");
    const { installRelease } = await import("../update/installer.js");
    const config = await loadConfig(statePaths(this.resolveStateDir(this.stateDir)).config);
    const settings = resolveUpdateSettings(config);
    if (this.releasesUrl !== undefined) settings.releasesUrl = this.releasesUrl.replace(/\/+$/, "");
    if (this.trustedRoot !== undefined) settings.trustedRootPath = this.resolvePath(this.trustedRoot);
    const tty = (this.context.stderr as { isTTY?: boolean }).isTTY === true && !this.json;
    try {
      const r = await installRelease({
        installDir: this.resolvePath(this.dir),
        ...(this.version !== undefined ? { version: this.version } : {}),
        ...(this.channel !== undefined ? { channel: this.channel } : {}),
        settings,
        userAgent: `cara/${VERSION}`,
        onProgress: (message, done, total) => {
          if (!tty) return;
          this.context.stderr.write(`\r\u001b[2K${message}${done !== undefined ? ` ${humanBytes(done)}${total ? ` / ${humanBytes(total)}` : ""}` : ""}`);
        },
      });
      if (tty) this.context.stderr.write("\n");
      if (this.json) this.printJson(r);
      else {
        const out = this.context.stdout;
        out.write(`Installed cara v${r.version} into ${r.installDir}${r.previous ? ` (was v${r.previous})` : ""}.\n`);
        out.write(`  Version dir:       ${r.installPath}\n`);
        out.write(`  SHA-256:           ${r.sha256}\n`);
        out.write(`  Signing identity:  ${r.signingIdentity}\n`);
        out.write(`  Trusted root:      ${r.trustedRoot}${r.trustRefreshError !== undefined ? ` (TUF refresh failed: ${r.trustRefreshError})` : ""}\n`);
        out.write(`  Launcher:          ${r.launcher}\n`);
        out.write(`Start it with: ${r.launcher} start   (add ${r.installDir}/bin to PATH)\n`);
      }
      return 0;
    } catch (err) {
      if (tty) this.context.stderr.write("\n");
      throw new CliFailure(`install failed: ${(err as Error).message}`);
    }
  }
}
