import { useRef, useState } from "preact/hooks";
import {
  BackupProblemKindSchema,
  type BackupEntry,
  type InspectBackupResponse,
  type RestoreBackupResponse,
} from "../../../gen/carapace/backup/v1/backup_pb.js";
import { backups, unary } from "../api.js";
import { DownloadCancelled, downloadBackup, type DownloadState } from "../backup-download.js";
import { uploadArchive } from "../backup-upload.js";
import { isCancel, report, type Problem } from "../errors.js";
import { bytes, dateTime, enumName, relative, tsMs } from "../format.js";
import { useNow, usePoll, useUnmountSignal } from "../hooks.js";
import { Badge, Facts, Freshness, Notice, PageHeader, ProblemLine, Section } from "../ui.js";

const SECTIONS = ["config", "tasks", "sessions", "memory", "cron", "usage"];

type Focus = { kind: "verify"; name: string } | { kind: "restore"; entry: BackupEntry } | undefined;

export function BackupsPage() {
  const list = usePoll((signal) => backups.listBackups({}, unary(signal)), 5000, []);
  const now = useNow(1000);
  const [focus, setFocus] = useState<Focus>();
  const panel = useRef<HTMLDivElement>(null);
  const open = (f: Focus) => {
    setFocus(f);
    // Bring the panel into view and the keyboard into it.
    requestAnimationFrame(() => panel.current?.querySelector<HTMLElement>("h2")?.focus());
  };

  return (
    <>
      <PageHeader title="Backups">
        <Freshness at={list.at} now={now} />
      </PageHeader>
      <ProblemLine problem={list.problem} />
      <div class="grid-2">
        <CreateAndDownload onDone={list.refresh} />
        <UploadArchive
          onUploaded={(name) => {
            list.refresh();
            open({ kind: "verify", name });
          }}
        />
      </div>
      <Section title={`Archives on the server${list.data ? ` (${list.data.backups.length})` : ""}`} id="archives">
        {list.data && (
          <p class="muted">
            In <code>{list.data.directory}</code>, newest first. Sizes are compressed; sections come from each archive's manifest.
          </p>
        )}
        {list.data?.backups.length === 0 && <p class="muted">No archives yet. Backup tasks, restores and updates write them here; uploads too.</p>}
        <ul class="rows backups">
          {list.data?.backups.map((b) => (
            <li key={b.name} class="backup-row" data-backup={b.name}>
              <div class="row-main">
                <strong class="break">{b.name}</strong>
                <span class="muted">
                  {" "}
                  {b.origin} · {dateTime(tsMs(b.createdAt))} ({relative(tsMs(b.createdAt), now)}) · {bytes(b.sizeBytes)}
                  {b.caraVersion ? ` · cara ${b.caraVersion}` : ""}
                </span>
                <div>
                  {b.error ? (
                    <Badge tone="fail">unreadable: {b.error}</Badge>
                  ) : (
                    b.sections.map((s) => (
                      <Badge key={s} tone="muted">
                        {s}
                      </Badge>
                    ))
                  )}
                </div>
              </div>
              <div class="actions">
                <button type="button" onClick={() => open({ kind: "verify", name: b.name })}>
                  Verify
                </button>
                <button type="button" disabled={!!b.error} onClick={() => open({ kind: "restore", entry: b })}>
                  Restore…
                </button>
              </div>
            </li>
          ))}
        </ul>
      </Section>
      <div ref={panel}>
        {focus?.kind === "verify" && <VerifyPanel key={focus.name} name={focus.name} onClose={() => setFocus(undefined)} />}
        {focus?.kind === "restore" && <RestorePanel key={focus.entry.name} entry={focus.entry} onDone={list.refresh} onClose={() => setFocus(undefined)} />}
      </div>
    </>
  );
}

function CreateAndDownload({ onDone }: { onDone: () => void }) {
  const [chosen, setChosen] = useState<string[]>([]);
  const [state, setState] = useState<DownloadState | undefined>();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | undefined>();
  const signal = useUnmountSignal();
  const start = async () => {
    setBusy(true);
    setProblem(undefined);
    setState(undefined);
    try {
      await downloadBackup(chosen, setState, signal);
      onDone();
    } catch (err) {
      if (err instanceof DownloadCancelled) setProblem({ text: "Cancelled: no file was chosen." });
      else if (!isCancel(err)) setProblem(err instanceof Error && !("code" in err) ? { text: err.message } : report(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section title="Create a backup" id="create-backup">
      <p class="muted">
        A consistent snapshot of the state, taken while the server runs, saved by this browser. The token and server secret are never included.
      </p>
      <fieldset class="inline-checks">
        <legend>Sections (none ticked = all present)</legend>
        {SECTIONS.map((s) => (
          <label key={s} class="check-label">
            <input
              type="checkbox"
              checked={chosen.includes(s)}
              onChange={(e) => setChosen((e.target as HTMLInputElement).checked ? [...chosen, s] : chosen.filter((x) => x !== s))}
            />
            {s}
          </label>
        ))}
      </fieldset>
      <div class="actions">
        <button type="button" class="primary" disabled={busy} onClick={start}>
          {busy ? "Backing up…" : "Create and download"}
        </button>
      </div>
      <div class="progress-area" role="status" aria-live="polite">
        {state && (
          <>
            <p>
              {state.phase === "snapshot" ? "Taking the snapshot…" : state.phase === "streaming" ? "Receiving" : "Saved"}{" "}
              <code class="break">{state.name}</code>:{" "}
              <span class="num" data-testid="download-bytes">
                {bytes(state.bytes)}
              </span>
              {state.sections.length > 0 && <> · sections {state.sections.join(", ")}</>}
            </p>
            {state.phase === "done" && (
              <p class="muted">
                {state.via === "file" ? "Written straight to the file you chose." : "Handed to the browser's downloads."} SHA-256{" "}
                <code class="break" data-testid="download-sha256">
                  {state.sha256}
                </code>
                . Check it with <code>cara backup verify {state.name}</code>.
              </p>
            )}
            {state.excluded.length > 0 && state.phase === "done" && (
              <details>
                <summary>Left out on purpose ({state.excluded.length})</summary>
                <ul>
                  {state.excluded.map((e) => (
                    <li key={e.path}>
                      <code>{e.path}</code>: {e.reason}
                    </li>
                  ))}
                </ul>
              </details>
            )}
          </>
        )}
      </div>
      <ProblemLine problem={problem} />
    </Section>
  );
}

function UploadArchive({ onUploaded }: { onUploaded: (name: string) => void }) {
  const [file, setFile] = useState<File | undefined>();
  const [sent, setSent] = useState(0);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | undefined>();
  const signal = useUnmountSignal();
  const upload = async () => {
    if (!file) {
      setProblem({ text: "Choose an archive file first." });
      return;
    }
    setBusy(true);
    setProblem(undefined);
    setSent(0);
    try {
      const res = await uploadArchive(file, setSent, signal);
      onUploaded(res.name);
    } catch (err) {
      if (!isCancel(err)) setProblem(report(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section title="Verify or restore an archive from this computer" id="upload-backup">
      <p class="muted">
        The archive is uploaded into the server's backups directory (as <code>upload-…tar.gz</code>) in 1 MiB pieces, then verified there: marker, manifest,
        every SHA-256 and the HMAC, as <code>cara backup verify</code> does. From the list you can then restore it.
      </p>
      <label>
        Archive
        <input type="file" accept=".gz,.tgz,application/gzip" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0])} />
      </label>
      <div class="actions">
        <button type="button" class="primary" disabled={busy || !file} onClick={upload}>
          {busy ? "Uploading…" : "Upload and verify"}
        </button>
      </div>
      <div class="progress-area" role="status">
        {file && (busy || sent > 0) && (
          <>
            <progress max={file.size || 1} value={sent} aria-label="Upload progress" />
            <span class="num">
              {" "}
              {bytes(sent)} of {bytes(file.size)}
            </span>
          </>
        )}
      </div>
      <ProblemLine problem={problem} />
    </Section>
  );
}

function Verification({ res }: { res: InspectBackupResponse }) {
  const m = res.manifest;
  const v = res.verification;
  return (
    <>
      {v?.ok ? (
        <Notice tone="ok" title="Verified: the archive is complete and was made by this deployment." />
      ) : (
        <Notice
          tone="fail"
          title={`Not valid: ${v?.problems.length ?? 0} problem${v?.problems.length === 1 ? "" : "s"}${v?.problemsTruncated ? " (more not shown)" : ""}`}
        >
          <ul class="problems">
            {v?.problems.map((p, i) => (
              <li key={i}>
                <strong>{enumName(BackupProblemKindSchema, p.kind)}</strong>
                {p.path && (
                  <>
                    {" "}
                    <code>{p.path}</code>
                  </>
                )}
                : {p.message}
              </li>
            ))}
          </ul>
        </Notice>
      )}
      {m && (
        <Facts
          rows={[
            ["Created", `${dateTime(tsMs(m.createdAt))} on ${m.host} by cara ${m.caraVersion}`],
            ["Sections", m.sections.map((s) => `${s.name} (${s.fileCount} files, ${bytes(s.bytes)})`).join(", ") || "none"],
            ["Contents", `${m.totalFiles} files, ${bytes(m.totalBytes)} uncompressed`],
            ["Archive", `${m.archiveBytes !== undefined ? bytes(m.archiveBytes) : "?"}, SHA-256 ${m.archiveSha256 ?? "?"}`],
            ["Deployment", m.foreign ? "another deployment (the HMAC does not match this server's secret)" : "this one"],
          ]}
        />
      )}
    </>
  );
}

function VerifyPanel({ name, onClose }: { name: string; onClose: () => void }) {
  const res = usePoll((signal) => backups.inspectStoredBackup({ backupName: name }, { signal, timeoutMs: 600_000 }), 3_600_000, [name]);
  return (
    <Section
      title={`Verify ${name}`}
      id="verify"
      actions={
        <button type="button" onClick={onClose}>
          Close
        </button>
      }
    >
      {res.data?.result ? <Verification res={res.data.result} /> : <ProblemLine problem={res.problem} idle="Reading the whole archive…" />}
    </Section>
  );
}

function DiffView({ res }: { res: RestoreBackupResponse }) {
  return (
    <>
      <p class="table-title" id="diff-title">
        What the restore would change (dry run: nothing was changed yet)
      </p>
      <div class="table-wrap">
        <table class="diff" aria-labelledby="diff-title">
          <thead>
            <tr>
              <th scope="col">Section</th>
              <th scope="col">Added</th>
              <th scope="col">Changed</th>
              <th scope="col">Removed</th>
              <th scope="col">Same</th>
            </tr>
          </thead>
          <tbody>
            {res.diffs.map((d) => (
              <tr key={d.section} data-section={d.section}>
                <th scope="row">
                  {d.section}
                  {d.addedCount + d.changedCount + d.removedCount > 0 && (
                    <details>
                      <summary>paths</summary>
                      <ul class="paths">
                        {d.added.map((p) => (
                          <li key={`a${p}`}>+ {p}</li>
                        ))}
                        {d.changed.map((p) => (
                          <li key={`c${p}`}>~ {p}</li>
                        ))}
                        {d.removed.map((p) => (
                          <li key={`r${p}`}>− {p}</li>
                        ))}
                        {d.truncated && <li>… (lists cut at 1000)</li>}
                      </ul>
                    </details>
                  )}
                </th>
                <td class="num">{d.addedCount}</td>
                <td class="num">{d.changedCount}</td>
                <td class="num">{d.removedCount}</td>
                <td class="num">{d.unchangedCount}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {res.tasks && <TaskChanges changes={res.tasks} />}
      {res.config && <ConfigChanges changes={res.config} />}
    </>
  );
}

/** One list of ids or key paths with its exact count (the list holds the first 20). */
function ChangeList({ sign, label, items, count }: { sign: string; label: string; items: string[]; count: number }) {
  if (count === 0) return null;
  return (
    <li>
      {label}: {count}
      <ul class="paths">
        {items.map((i) => (
          <li key={i}>
            {sign} {i}
          </li>
        ))}
        {count > items.length && <li>… and {count - items.length} more</li>}
      </ul>
    </li>
  );
}

/** The tasks a restore adds, removes and changes, by id, and how many are in each state before and after. */
function TaskChanges({ changes: t }: { changes: NonNullable<RestoreBackupResponse["tasks"]> }) {
  return (
    <div class="changes" data-changes="tasks">
      <p class="table-title">Tasks</p>
      {t.currentUnreadable && <p class="notice">The current queue could not be read: every task of the backup counts as added.</p>}
      <ul>
        <ChangeList sign="+" label="Added" items={t.added} count={t.addedCount} />
        <ChangeList sign="−" label="Removed" items={t.removed} count={t.removedCount} />
        <ChangeList sign="~" label="Changed" items={t.changed} count={t.changedCount} />
        <li>Unchanged: {t.unchangedCount}</li>
      </ul>
      {t.states.length > 0 && <p data-states>By state: {t.states.map((x) => `${x.state} ${x.before} → ${x.after}`).join(", ")}</p>}
    </div>
  );
}

/** The config keys a restore adds, removes and reverts (values are never sent). */
function ConfigChanges({ changes: c }: { changes: NonNullable<RestoreBackupResponse["config"]> }) {
  return (
    <div class="changes" data-changes="config">
      <p class="table-title">Config keys (values not shown)</p>
      {c.addedCount + c.removedCount + c.changedCount === 0 ? (
        <p>No key changes.</p>
      ) : (
        <ul>
          <ChangeList sign="+" label="Added" items={c.added} count={c.addedCount} />
          <ChangeList sign="−" label="Removed" items={c.removed} count={c.removedCount} />
          <ChangeList sign="~" label="Reverted to the backup's value" items={c.changed} count={c.changedCount} />
        </ul>
      )}
    </div>
  );
}

/** Restore: the dry-run difference first, then a typed confirmation; a pre-restore backup is taken. */
function RestorePanel({ entry, onDone, onClose }: { entry: BackupEntry; onDone: () => void; onClose: () => void }) {
  const [sections, setSections] = useState<string[]>(entry.sections);
  const [allowForeign, setAllowForeign] = useState(false);
  const [preview, setPreview] = useState<RestoreBackupResponse | undefined>();
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState<"preview" | "restore" | undefined>();
  const [done, setDone] = useState<RestoreBackupResponse | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const signal = useUnmountSignal();
  const options = { backupName: entry.name, sections: sections.length === entry.sections.length ? [] : sections, allowForeign };

  const change = (fn: () => void) => {
    fn();
    setPreview(undefined); // a changed choice needs a new preview
    setTyped("");
  };
  const runPreview = async () => {
    setBusy("preview");
    setProblem(undefined);
    try {
      const res = await backups.restoreStoredBackup({ ...options, dryRun: true }, { signal, timeoutMs: 600_000 });
      setPreview(res.result);
    } catch (err) {
      if (!isCancel(err)) setProblem(report(err));
    } finally {
      setBusy(undefined);
    }
  };
  const restore = async () => {
    setBusy("restore");
    setProblem(undefined);
    try {
      const res = await backups.restoreStoredBackup({ ...options, force: true }, { signal, timeoutMs: 600_000 });
      setDone(res.result);
      onDone();
    } catch (err) {
      if (!isCancel(err)) setProblem(report(err));
    } finally {
      setBusy(undefined);
    }
  };

  return (
    <Section
      title={`Restore ${entry.name}`}
      id="restore"
      actions={
        <button type="button" onClick={onClose}>
          Close
        </button>
      }
    >
      {done ? (
        <Notice tone="ok" title={`Restored ${done.restoredSections.join(", ")}.`} live>
          The previous state was saved first as <code class="break">{done.preRestoreBackupPath}</code>; restore that archive to undo.
        </Notice>
      ) : (
        <>
          <fieldset class="inline-checks">
            <legend>Sections to restore (each becomes exactly the backup's; the others are left alone)</legend>
            {entry.sections.map((s) => (
              <label key={s} class="check-label">
                <input
                  type="checkbox"
                  checked={sections.includes(s)}
                  onChange={(e) => change(() => setSections((e.target as HTMLInputElement).checked ? [...sections, s] : sections.filter((x) => x !== s)))}
                />
                {s}
              </label>
            ))}
          </fieldset>
          <label class="check-label">
            <input type="checkbox" checked={allowForeign} onChange={(e) => change(() => setAllowForeign((e.target as HTMLInputElement).checked))} />
            Allow a backup made by another deployment (its HMAC will not match; file hashes are still checked)
          </label>
          <div class="actions">
            <button type="button" class={preview ? "" : "primary"} disabled={!!busy || sections.length === 0} onClick={runPreview}>
              {busy === "preview" ? "Checking…" : preview ? "Preview again" : "Preview changes (dry run)"}
            </button>
          </div>
          {preview && (
            <>
              <DiffView res={preview} />
              <form
                class="confirm"
                onSubmit={(e) => {
                  e.preventDefault();
                  if (typed === entry.name) void restore();
                }}
              >
                <label for="confirm-name">
                  To restore, type the archive's name: <code>{entry.name}</code>
                </label>
                <input id="confirm-name" value={typed} autocomplete="off" spellcheck={false} onInput={(e) => setTyped((e.target as HTMLInputElement).value)} />
                <p class="muted">A pre-restore backup of the current state is written first. The task worker pauses during the swap.</p>
                <button type="submit" class="danger" disabled={typed !== entry.name || !!busy}>
                  {busy === "restore" ? "Restoring…" : "Restore now"}
                </button>
              </form>
            </>
          )}
        </>
      )}
      <ProblemLine problem={problem} />
    </Section>
  );
}
