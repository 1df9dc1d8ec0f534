import { createInterface } from "node:readline/promises";
import { Code } from "@connectrpc/connect";
import { Command, Option } from "clipanion";
import {
  CheckForUpdateResponseSchema,
  GetUpdateStatusResponseSchema,
  RollbackMarkerSchema,
  UpdateTransactionSchema,
  RollbackUpdateResponseSchema,
  UpdateResultSchema,
  UpdateOutcome,
  UpdatePhase,
  UpdateService,
  type UpdateResult,
} from "../../../gen/carapace/update/v1/update_pb.js";
import { statePaths } from "../../state/paths.js";
import { PACKAGE_ROOT } from "../../package-info.js";
import { retryDelayMsOf } from "../../wire/error-details.js";
import { ClientCommand } from "../base.js";
import { messageToCliJson } from "../json.js";
import { errorFacts } from "../json-error.js";
import { bytes } from "../output.js";
import { describeError, isConnectionRefused, isServerError, rpcClient } from "../rpc.js";
import { CliFailure, CliUsageError, isLoopbackHost, parseTimeout } from "../target.js";
import { CLEAR_LINE, progress } from "../progress.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { failedWhile, formatLocalStatus, formatStatus, phaseName } from "./status-text.js";

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
      are retried (3 attempts, about 5 s then 15 s apart; update.maxAttempts, update.retryDelaysMs), authenticity
      failures stop and apply nothing. Ctrl-C leaves the transaction resumable: \`cara update\` goes on from there.
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
  override timeout = Option.String("--timeout", "30m", { description: "Give up after this long (default 30m)" });

  async run(): Promise<number> {
    const modes = [this.check, this.status, this.rollback, this.resetTransaction].filter(Boolean).length;
    if (modes > 1) throw new CliUsageError("--check, --status, --rollback and --reset-transaction are separate modes: pick one");
    if (this.resetTransaction) return this.runReset();
    const target = await this.target();
    const timeoutMs = parseTimeout(this.timeout);
    // A check waits on the release source (15 s to connect, 15 s for the body, on the server):
    // the server's first answer may take longer than the usual 30 s.
    const client = await rpcClient(UpdateService, target, timeoutMs, { answerMs: Math.min(timeoutMs, 60_000) });
    try {
      if (this.check) return await this.runCheck(client);
      if (this.status) return await this.runStatus(client);
      if (this.rollback) return await this.runRollback(client);
      return await this.runInstall(client);
    } catch (err) {
      if (err instanceof CliFailure || err instanceof CliUsageError) throw err;
      if (this.rollback && isConnectionRefused(err) && isLoopbackHost(target.host)) return this.runLocalRollback();
      if (this.status && isConnectionRefused(err) && isLoopbackHost(target.host)) return this.runLocalStatus(target.display);
      // The server's own words when it answered (ErrorInfo), except a refused token (described
      // with what to do about it); otherwise what went wrong reaching it.
      const fromServer = isServerError(err) && err.code !== Code.Unauthenticated;
      const message = fromServer ? err.rawMessage : describeError(err, target, timeoutMs, "update");
      if (this.check && !this.json) {
        this.context.stderr.write(`Failed to check for updates: ${message}\n`);
        if (fromServer && retryDelayMsOf(err) !== undefined) this.context.stderr.write("This may be a temporary issue; retry in a moment.\n");
        return 1;
      }
      throw new CliFailure(message, errorFacts(err));
    }
  }

  /**
   * Asks the release source (through the server); when that takes over a second, says where it
   * is looking, so that a slow or unreachable source does not look like a hung command.
   */
  private async checkRelease(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>) {
    const slow = setTimeout(() => {
      void client.getUpdateStatus({}).then(
        (s) => !this.json && this.context.stderr.write(`checking ${s.releaseSource}...\n`),
        () => undefined,
      );
    }, 1000);
    try {
      return await client.checkForUpdate({
        channel: this.channel ?? "",
        ...(this.version !== undefined ? { version: this.version } : {}),
        allowDowngrade: this.allowDowngrade,
      });
    } finally {
      clearTimeout(slow);
    }
  }

  private async runCheck(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const r = await this.checkRelease(client);
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
    const { detectInstall } = await import("../../update/install-layout.js");
    const { rollbackInstall } = await import("../../update/manager.js");
    const { lockOwner } = await import("../../state/lock.js");
    const { UpdateLock } = await import("../../update/update-lock.js");
    const install = await detectInstall(PACKAGE_ROOT);
    if (!install.managed) throw new CliFailure(`the server is not running and self-update does not apply here: ${install.reason}`);
    const paths = statePaths(this.resolveStateDir(this.stateDir));
    const owner = await lockOwner(paths.root);
    if (owner !== undefined)
      throw new CliFailure(`a server (pid ${owner}) holds ${paths.root} but did not answer on this port; pass its --port, or stop it first`);
    const r = await new UpdateLock(paths.updatesDir)
      .run(() => rollbackInstall(install.installDir, paths.updatesDir, this.version, this.reason))
      .catch((err: Error) => {
        throw new CliFailure(err.message);
      });
    if (this.json) this.printJson({ fromVersion: r.from, toVersion: r.to, restartNeeded: true, restarting: false, offline: true });
    else
      this.context.stdout.write(
        `The server is not running; rolled back the install in ${install.installDir}: current is now v${r.to} (was v${r.from}).\nStart cara to run v${r.to}.\n`,
      );
    return 0;
  }

  /** The server is down: the transaction, the rollback marker and the install, read here. */
  private async runLocalStatus(down: string): Promise<number> {
    const { create } = await import("@bufbuild/protobuf");
    const { loadTransaction, resumePending } = await import("../../update/transaction.js");
    const { loadMarker } = await import("../../update/rollback-marker.js");
    const { detectInstall, installedVersions, previousVersion } = await import("../../update/install-layout.js");
    const { UpdateLock } = await import("../../update/update-lock.js");
    const { markerToProto, transactionToProto } = await import("../../update/service.js");
    const updatesDir = statePaths(this.resolveStateDir(this.stateDir)).updatesDir;
    const s = create(GetUpdateStatusResponseSchema, {});
    try {
      const tx = await loadTransaction(updatesDir);
      if (tx) {
        s.transaction = create(UpdateTransactionSchema, transactionToProto(tx));
        s.resumePending = resumePending(tx);
      }
    } catch (err) {
      s.transactionError = (err as Error).message;
    }
    try {
      const marker = await loadMarker(updatesDir);
      if (marker) s.rollbackMarker = create(RollbackMarkerSchema, markerToProto(marker));
    } catch (err) {
      s.rollbackMarkerError = (err as Error).message;
    }
    s.inProgress = await new UpdateLock(updatesDir).held();
    const install = await detectInstall(PACKAGE_ROOT);
    s.managed = install.managed;
    if (install.managed) {
      s.installDir = install.installDir;
      s.installedVersions = await installedVersions(install.installDir);
      const prev = await previousVersion(install.installDir);
      if (prev) s.previousVersion = prev;
    } else s.unmanagedReason = install.reason;
    if (this.json) {
      const {
        currentVersion: _running,
        trustedRootOrigin: _origin,
        trustedRootPath: _path,
        trustRefresh: _refresh,
        ...local
      } = messageToCliJson(GetUpdateStatusResponseSchema, s) as Record<string, unknown>;
      this.printJson({ serverRunning: false, updatesDir, ...local });
    } else {
      this.context.stderr.write(`(no server answers at ${down}: reading the update state here)\n`);
      this.context.stdout.write(formatLocalStatus(s, updatesDir));
    }
    return 0;
  }

  private async runReset(): Promise<number> {
    const { resetTransaction } = await import("../../update/transaction.js");
    const { UpdateLock, UpdateBusyError } = await import("../../update/update-lock.js");
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
    else
      this.context.stdout.write(
        aside
          ? `Moved the update transaction aside to ${aside}; the next \`cara update\` starts fresh.\n`
          : "There is no update transaction; nothing to reset.\n",
      );
    return 0;
  }

  private async runInstall(client: Awaited<ReturnType<typeof rpcClient<typeof UpdateService>>>): Promise<number> {
    const out = this.context.stdout;
    const status = await client.getUpdateStatus({});
    if (!status.managed) throw new CliFailure(`self-update does not apply to this installation: ${status.unmanagedReason ?? "not a managed install"}`);
    const resuming =
      status.resumePending && status.transaction && (this.version === undefined || this.version.replace(/^v/, "") === status.transaction.version);
    let from = status.currentVersion;
    let to: string;
    if (resuming) {
      to = status.transaction!.version;
      if (!this.json) out.write(`Resuming the interrupted update to v${to} (attempt ${status.transaction!.attempt + 1}/${status.transaction!.maxAttempts}).\n`);
    } else {
      const check = await this.checkRelease(client);
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
    // On a terminal: the download as a progress line that ends with one summary line, then each
    // phase line drawn over the previous one.
    const download = progress(this.context.stderr, { label: "Downloading", enabled: tty });
    let downloading = false;
    let phaseLine = false;
    const stop = this.interruption();
    try {
      for await (const msg of client.startUpdate(
        { version: to, channel: this.channel ?? "", allowDowngrade: this.allowDowngrade, restart: this.restart, yes: true },
        { signal: stop.signal },
      )) {
        if (msg.result) result = msg.result;
        if (this.json) continue;
        const bytesShown = msg.bytesTotal > 0n && msg.phase === UpdatePhase.DOWNLOADING;
        if (tty && bytesShown) {
          if (phaseLine) this.context.stderr.write("\n");
          phaseLine = false;
          downloading = true;
          download.update(Number(msg.bytesDone), Number(msg.bytesTotal));
          continue;
        }
        if (tty && downloading) {
          downloading = false;
          download.finish((n, seconds) => `Downloaded ${bytes(n)} in ${seconds} s`);
        }
        const line = bytesShown
          ? `[${phaseName(msg.phase)}] ${stripTerminalUnsafe(msg.message)} ${bytes(Number(msg.bytesDone))} / ${bytes(Number(msg.bytesTotal))} (${Math.floor((Number(msg.bytesDone) * 100) / Number(msg.bytesTotal))}%)`
          : `[${phaseName(msg.phase)}] ${stripTerminalUnsafe(msg.message)}`;
        if (tty) {
          this.context.stderr.write(`${CLEAR_LINE}${line}`);
          phaseLine = true;
        } else if (msg.phase !== UpdatePhase.DOWNLOADING || msg.bytesTotal === 0n || line !== lastLine) {
          if (!line.includes("%)")) this.context.stderr.write(`${line}\n`);
        }
        lastLine = line;
      }
      download.clear();
      if (phaseLine) this.context.stderr.write("\n");
    } catch (err) {
      download.clear();
      if (phaseLine) this.context.stderr.write("\n");
      if (stop.signal.aborted && !result) {
        // The server stops the run when its client goes away and keeps the transaction resumable.
        this.context.stderr.write(
          `Interrupted: the update to v${to} stops where it is and its transaction stays resumable (nothing is switched before it is verified and applied). Run \`cara update\` to resume it; \`cara update --status\` shows where it stopped.\n`,
        );
        return 130;
      }
      if (!result) throw err;
    } finally {
      stop.dispose();
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
      err.write(`Update failed while ${failedWhile(r.failedPhase)}: ${stripTerminalUnsafe(r.error)}\n`);
      const beforeApply = r.failedPhase !== UpdatePhase.APPLYING && r.failedPhase !== UpdatePhase.APPLIED;
      err.write(
        r.retryable
          ? "This failure is retryable; rerun `cara update` to resume.\n"
          : beforeApply
            ? "Nothing was applied; resolve the cause, then run `cara update` again (it starts a fresh transaction).\n"
            : "Check which version is current with `cara update --status`; the next `cara update` starts a fresh transaction.\n",
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
