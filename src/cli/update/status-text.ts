/** The human text of `cara update --status`, and update phase names for the CLI. */
import { UpdateTransactionState, type GetUpdateStatusResponse, type UpdatePhase } from "../../../gen/carapace/update/v1/update_pb.js";
import type { EnumNames } from "../../wire/enum-names.js";
import { rollbackStateNames, transactionStateNames, updatePhaseNames } from "../../wire/update.js";
import { stripTerminalUnsafe } from "../terminal.js";

/** A value's name; "" when unset (0), "unknown" for a value this build does not know. */
const nameOf = (names: EnumNames<number>, value: number) => (value === 0 ? "" : (names.name(value) ?? "unknown"));
export const phaseName = (p: UpdatePhase) => nameOf(updatePhaseNames, p);

/**
 * What the update was doing when it failed in phase `p` ("failed while verifying"): a failure
 * is recorded with the phase being worked towards (a bad signature fails in `verified`).
 */
export function failedWhile(p: UpdatePhase): string {
  switch (phaseName(p)) {
    case "created":
      return "preparing (looking up the release)";
    case "downloading":
      return "downloading";
    case "downloaded":
    case "verified":
      return "verifying";
    case "applying":
      return "applying";
    case "applied":
      return "switching to the new version";
    default:
      return `in phase ${phaseName(p) || "unknown"}`;
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
  lines.push(...installLines(s));
  lines.push(`Trusted root:      ${trustedRootLine(s)}`);
  lines.push(...transactionLines(s));
  return `${lines.join("\n")}\n`;
}

/** Where cara is installed and which versions are there. */
function installLines(s: GetUpdateStatusResponse): string[] {
  if (!s.managed) return [`Install:           not managed: ${s.unmanagedReason ?? ""}`];
  const lines = [`Install:           ${s.installDir} (managed)`, `Installed:         ${s.installedVersions.map((v) => `v${v}`).join(", ") || "(none)"}`];
  if (s.previousVersion) lines.push(`Previous version:  v${s.previousVersion}`);
  return lines;
}

/** The transaction and rollback marker lines (also shown when the server is down). */
function transactionLines(s: GetUpdateStatusResponse): string[] {
  const lines: string[] = [];
  const tx = s.transaction;
  if (s.transactionError) lines.push(`Transaction:       UNREADABLE: ${s.transactionError}`);
  else if (tx) {
    const state = nameOf(transactionStateNames, tx.state);
    // A failed transaction's phase is `failed`: say what it was doing instead, once.
    const where =
      tx.state === UpdateTransactionState.FAILED ? (tx.failedPhase ? ` while ${failedWhile(tx.failedPhase)}` : "") : `, phase ${phaseName(tx.phase)}`;
    lines.push(`Transaction:       v${tx.version} ${state}${where}, attempt ${tx.attempt}/${tx.maxAttempts}`);
    // After the last attempt the error itself says it gave up; "not retryable" is for errors that never are.
    const gaveUp = tx.attempt >= tx.maxAttempts;
    const suffix = tx.state !== UpdateTransactionState.FAILED ? "" : tx.retryable ? " (retryable: `cara update` resumes it)" : gaveUp ? "" : " (not retryable)";
    if (tx.lastError) lines.push(`  Last error:      ${stripTerminalUnsafe(tx.lastError)}${suffix}`);
    if (tx.nextAttemptAtMs !== undefined && s.resumePending) lines.push(`  Next attempt:    ${new Date(Number(tx.nextAttemptAtMs)).toISOString()}`);
    if (s.resumePending) lines.push("  Resume pending:  yes (`cara update` resumes it)");
  } else lines.push("Transaction:       none");
  if (s.inProgress) lines.push("In progress:       yes (an update holds the lock now)");
  const m = s.rollbackMarker;
  if (s.rollbackMarkerError) lines.push(`Rollback marker:   UNREADABLE: ${s.rollbackMarkerError}`);
  else if (m) {
    lines.push(
      `Rollback marker:   ${nameOf(rollbackStateNames, m.state)} (v${m.fromVersion} -> v${m.toVersion}, applied ${new Date(Number(m.appliedAtMs)).toISOString()})`,
    );
    if (m.reason) lines.push(`  Reason:          ${stripTerminalUnsafe(m.reason)}`);
    if (m.backupPath) lines.push(`  Pre-update backup: ${m.backupPath}`);
  }
  return lines;
}

/**
 * `cara update --status` with no server: what the files under `updatesDir` and the install
 * directory say (the running version and the trusted root are the server's to report).
 */
export function formatLocalStatus(s: GetUpdateStatusResponse, updatesDir: string): string {
  const lines: string[] = [`Server:            not running (read ${updatesDir} here)`, ...installLines(s)];
  lines.push(...transactionLines(s));
  return `${lines.join("\n")}\n`;
}
