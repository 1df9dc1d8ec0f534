import { Code } from "@connectrpc/connect";
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import {
  RollbackStateSchema,
  UpdateOutcome,
  UpdatePhase,
  UpdatePhaseSchema,
  UpdateTransactionStateSchema,
  type CheckForUpdateResponse,
  type RollbackUpdateResponse,
  type StartUpdateResponse,
} from "../../../gen/carapace/update/v1/update_pb.js";
import { unary, updates } from "../api.js";
import { isCancel, report, type Problem } from "../errors.js";
import { bytes, dateTime, enumName } from "../format.js";
import { useNow, usePoll, useUnmountSignal } from "../hooks.js";
import { Badge, Facts, Freshness, Notice, PageHeader, ProblemLine, Section } from "../ui.js";

const STEPS = [UpdatePhase.CREATED, UpdatePhase.DOWNLOADING, UpdatePhase.DOWNLOADED, UpdatePhase.VERIFIED, UpdatePhase.APPLYING, UpdatePhase.APPLIED];
const phaseName = (p: UpdatePhase) => enumName(UpdatePhaseSchema, p);

export function UpdatePage() {
  const status = usePoll((signal) => updates.getUpdateStatus({}, unary(signal)), 3000, []);
  const now = useNow(1000);
  const [channel, setChannel] = useState("stable");
  const [check, setCheck] = useState<CheckForUpdateResponse | undefined>();
  const [checkProblem, setCheckProblem] = useState<Problem | undefined>();
  const [checking, setChecking] = useState(false);
  const s = status.data;

  const runCheck = async () => {
    setChecking(true);
    setCheckProblem(undefined);
    setCheck(undefined);
    try {
      setCheck(await updates.checkForUpdate({ channel }, unary()));
    } catch (err) {
      const p = report(err);
      // Unavailable is the release source being unreachable (offline, DNS, 5xx): say so plainly.
      const hint = p.code === Code.Unavailable ? " The release source did not answer: this machine may be offline. Nothing was changed; try again later." : "";
      setCheckProblem({ ...p, text: `${p.text}.${hint}`.replace(/\.\./, ".") });
    } finally {
      setChecking(false);
    }
  };

  const tx = s?.transaction;
  const marker = s?.rollbackMarker;
  return (
    <>
      <PageHeader title="Update">
        <Freshness at={status.at} now={now} />
      </PageHeader>
      <ProblemLine problem={status.problem} />
      <div class="grid-2">
        <Section title="This installation" id="installation">
          {s ? (
            <Facts
              rows={[
                ["Running", <strong data-testid="current-version">{s.currentVersion}</strong>],
                ["Channel", channel],
                ["Install", s.managed ? `managed, in ${s.installDir}` : `not managed: ${s.unmanagedReason ?? "self-update does not apply"}`],
                ["Installed", s.installedVersions.length ? s.installedVersions.join(", ") : "—"],
                ["Previous", s.previousVersion ?? "—"],
                ["Trusted root", `${s.trustedRootOrigin}${s.trustRefresh ? " (refreshed through TUF before verifying)" : ""}`],
              ]}
            />
          ) : (
            <p class="muted">Loading…</p>
          )}
        </Section>
        <Section title="Check for a new version" id="check">
          <form
            class="toolbar"
            onSubmit={(e) => {
              e.preventDefault();
              void runCheck();
            }}
          >
            <label>
              Channel
              <select value={channel} onChange={(e) => setChannel((e.target as HTMLSelectElement).value)}>
                <option value="stable">stable</option>
                <option value="beta">beta (pre-releases too)</option>
              </select>
            </label>
            <button type="submit" class="primary" disabled={checking}>
              {checking ? "Checking…" : "Check now"}
            </button>
          </form>
          <div role="status" class="progress-area">
            {check && (
              <Facts
                rows={[
                  ["Current", check.currentVersion],
                  ["Latest", `${check.latestVersion}${check.prerelease ? " (pre-release)" : ""}`],
                  [
                    "Update",
                    check.updateAvailable
                      ? `available: v${check.currentVersion} → v${check.latestVersion}${check.downgrade ? " (a downgrade)" : ""}`
                      : "none: this is the latest",
                  ],
                  ...(check.releaseNotesUrl
                    ? ([
                        [
                          "Notes",
                          <a href={check.releaseNotesUrl} target="_blank" rel="noreferrer noopener">
                            {check.releaseNotesUrl}
                          </a>,
                        ],
                      ] as [string, preact.ComponentChildren][])
                    : []),
                ]}
              />
            )}
            {checkProblem && (
              <Notice tone="fail" title="Could not check for updates" live>
                <span data-testid="check-error">{checkProblem.text}</span>
              </Notice>
            )}
          </div>
          {s?.managed && check?.updateAvailable && <StartUpdate version={check.latestVersion} channel={channel} onEnd={status.refresh} />}
          {s && !s.managed && <p class="muted">Installing an update from here needs a managed install (see “This installation”); checking works everywhere.</p>}
        </Section>
      </div>
      <div class="grid-2">
        <Section title="Update transaction" id="transaction">
          {s?.transactionError && (
            <Notice tone="fail" title="The transaction file cannot be read">
              {s.transactionError}
            </Notice>
          )}
          {tx ? (
            <Facts
              rows={[
                ["State", <Badge tone={tx.lastError ? "fail" : "info"}>{enumName(UpdateTransactionStateSchema, tx.state)}</Badge>],
                ["Phase", phaseName(tx.phase) + (tx.failedPhase ? ` (failed while ${phaseName(tx.failedPhase)})` : "")],
                ["Version", `${tx.fromVersion ? `v${tx.fromVersion} → ` : ""}v${tx.version}`],
                ["Attempt", `${tx.attempt} of ${tx.maxAttempts}${s?.resumePending ? ", will resume" : ""}${s?.inProgress ? ", running now" : ""}`],
                ["Updated", dateTime(tx.updatedAtMs)],
                ["Last error", tx.lastError ?? "—"],
              ]}
            />
          ) : (
            !s?.transactionError && <p class="muted">No update transaction.</p>
          )}
        </Section>
        <Section title="Rollback" id="rollback">
          {s?.rollbackMarkerError && (
            <Notice tone="fail" title="The rollback marker cannot be read">
              {s.rollbackMarkerError}
            </Notice>
          )}
          {marker ? (
            <Facts
              rows={[
                [
                  "Marker",
                  <Badge tone={marker.state === 5 ? "fail" : marker.state === 4 ? "warn" : "info"}>{enumName(RollbackStateSchema, marker.state)}</Badge>,
                ],
                ["Versions", `v${marker.fromVersion} → v${marker.toVersion}`],
                ["Applied", dateTime(marker.appliedAtMs)],
                ["Reason", marker.reason ?? "—"],
                ["Pre-update backup", marker.backupPath ?? "—"],
              ]}
            />
          ) : (
            !s?.rollbackMarkerError && <p class="muted">No rollback marker: no update is on probation.</p>
          )}
          {s?.managed && <Rollback previous={s.previousVersion} onDone={status.refresh} />}
        </Section>
      </div>
    </>
  );
}

function StartUpdate({ version, channel, onEnd }: { version: string; channel: string; onEnd: () => void }) {
  const [restart, setRestart] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [progress, setProgress] = useState<StartUpdateResponse | undefined>();
  const [lines, setLines] = useState<string[]>([]);
  // The download figures of the last message that had them (later phases send none).
  const [transfer, setTransfer] = useState({ done: 0, total: 0, what: "" });
  const [problem, setProblem] = useState<Problem | undefined>();
  const [running, setRunning] = useState(false);
  const signal = useUnmountSignal();
  const log = useRef<HTMLPreElement>(null);
  // Keep the newest step in view.
  useLayoutEffect(() => {
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [lines]);
  const start = async () => {
    setRunning(true);
    setConfirming(false);
    setProblem(undefined);
    setLines([]);
    setTransfer({ done: 0, total: 0, what: "" });
    try {
      for await (const msg of updates.startUpdate({ version, channel, restart, yes: true }, { signal })) {
        setProgress(msg);
        if (msg.phase === UpdatePhase.DOWNLOADING && msg.bytesTotal > 0n)
          setTransfer({ done: Number(msg.bytesDone), total: Number(msg.bytesTotal), what: msg.message.replace(/^downloading /, "") });
        // One line per step (download progress repeats the same message).
        if (msg.message) setLines((l) => (l[l.length - 1] === msg.message ? l : [...l.slice(-49), msg.message]));
      }
    } catch (err) {
      if (!isCancel(err)) setProblem(report(err));
    } finally {
      setRunning(false);
      onEnd();
    }
  };
  const result = progress?.result;
  const at = progress ? STEPS.indexOf(progress.phase) : -1;
  return (
    <div class="start-update">
      {!running && !result && (
        <>
          <label class="check-label">
            <input type="checkbox" checked={restart} onChange={(e) => setRestart((e.target as HTMLInputElement).checked)} />
            Restart on the new version once applied
          </label>
          {confirming ? (
            <div class="actions">
              <button type="button" class="danger" onClick={start}>
                Install v{version} now
              </button>
              <button type="button" onClick={() => setConfirming(false)}>
                Not now
              </button>
            </div>
          ) : (
            <button type="button" class="primary" onClick={() => setConfirming(true)}>
              Update to v{version}…
            </button>
          )}
        </>
      )}
      {progress && (
        <div role="status" aria-live="polite">
          <ol class="steps">
            {STEPS.map((p, i) => (
              <li key={p} class={i < at ? "done" : i === at ? "current" : ""}>
                {phaseName(p)}
              </li>
            ))}
          </ol>
          <progress max={transfer.total || 1} value={transfer.total ? transfer.done : 0} aria-label="Download progress" />
          <span class="num">
            {" "}
            {transfer.what ? `${transfer.what}: ` : ""}
            {bytes(transfer.done)}
            {transfer.total ? ` of ${bytes(transfer.total)}` : ""}
            {progress.maxAttempts ? ` · attempt ${progress.attempt} of ${progress.maxAttempts}` : ""}
          </span>
          <pre class="update-log" ref={log}>
            {lines.join("\n")}
          </pre>
        </div>
      )}
      {result && (
        <Notice
          tone={result.outcome === UpdateOutcome.FAILED ? "fail" : "ok"}
          title={
            result.outcome === UpdateOutcome.APPLIED
              ? `v${result.toVersion} applied`
              : result.outcome === UpdateOutcome.ALREADY_UP_TO_DATE
                ? "Already up to date"
                : "Update failed"
          }
          live
        >
          {result.error ||
            (result.restarting
              ? "The server restarts on the new version now; this page reconnects."
              : result.restartNeeded
                ? "Restart the server to run the new version."
                : "")}
        </Notice>
      )}
      <ProblemLine problem={problem} />
    </div>
  );
}

function Rollback({ previous, onDone }: { previous: string | undefined; onDone: () => void }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [restoreState, setRestoreState] = useState(false);
  const [restart, setRestart] = useState(false);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<RollbackUpdateResponse | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  if (!previous) return <p class="muted">No previous version is installed to roll back to.</p>;
  const run = async () => {
    setBusy(true);
    setProblem(undefined);
    try {
      setDone(await updates.rollbackUpdate({ ...(reason.trim() ? { reason: reason.trim() } : {}), restoreState, restart }, { timeoutMs: 600_000 }));
      onDone();
    } catch (err) {
      setProblem(report(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="rollback">
      {done ? (
        <Notice tone="ok" title={`Switched back to v${done.toVersion}`} live>
          {done.restarting ? "The server restarts on it now." : "Restart the server to run it."}
        </Notice>
      ) : open ? (
        <form
          class="form"
          onSubmit={(e) => {
            e.preventDefault();
            void run();
          }}
        >
          <label>
            Reason <span class="muted">(recorded in the marker)</span>
            <input value={reason} maxLength={1024} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          </label>
          <label class="check-label">
            <input type="checkbox" checked={restoreState} onChange={(e) => setRestoreState((e.target as HTMLInputElement).checked)} />
            Also restore the state from the pre-update backup
          </label>
          <label class="check-label">
            <input type="checkbox" checked={restart} onChange={(e) => setRestart((e.target as HTMLInputElement).checked)} />
            Restart on v{previous} now
          </label>
          <div class="actions">
            <button type="submit" class="danger" disabled={busy}>
              {busy ? "Rolling back…" : `Roll back to v${previous}`}
            </button>
            <button type="button" onClick={() => setOpen(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <button type="button" onClick={() => setOpen(true)}>
          Roll back to v{previous}…
        </button>
      )}
      <ProblemLine problem={problem} />
    </div>
  );
}
