// The Overview's first-response tools: "Run doctor" (the checklist `cara doctor` prints, run by
// the server on its state dir) and "Download bug report" (what `cara bugreport` writes).
import { useState } from "preact/hooks";
import { DoctorStepStatus, type BugreportSummary, type RunDoctorResponse } from "../../../gen/carapace/ops/v1/ops_pb.js";
import { ops } from "../api.js";
import { isCancel, report, type Problem } from "../errors.js";
import { bytes } from "../format.js";
import { useUnmountSignal } from "../hooks.js";
import { Badge, Notice, ProblemLine, Section, type Tone } from "../ui.js";

const STEP_TONE: Record<number, [Tone, string]> = {
  [DoctorStepStatus.OK]: ["ok", "ok"],
  [DoctorStepStatus.WARN]: ["warn", "warn"],
  [DoctorStepStatus.FAIL]: ["fail", "fail"],
  [DoctorStepStatus.SKIP]: ["muted", "skip"],
};

/** The verdict line, as `cara doctor` ends. */
function verdictText(r: RunDoctorResponse): [Tone, string] {
  const count = (s: DoctorStepStatus) => r.steps.filter((x) => x.status === s).length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  const fails = count(DoctorStepStatus.FAIL);
  const warns = count(DoctorStepStatus.WARN);
  if (r.verdict === DoctorStepStatus.FAIL) return ["fail", `FAIL (${plural(fails, "step")} failing${warns ? `, ${plural(warns, "warning")}` : ""})`];
  if (r.verdict === DoctorStepStatus.WARN) return ["warn", `WARN (${plural(warns, "warning")}, nothing failing)`];
  return ["ok", `OK (all ${r.steps.length} steps ok)`];
}

export function DoctorPanel() {
  const signal = useUnmountSignal();
  const [result, setResult] = useState<RunDoctorResponse>();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem>();
  const run = async () => {
    setBusy(true);
    setProblem(undefined);
    try {
      // Verifying the newest backup reads the whole archive: allow more than a status call.
      setResult(await ops.runDoctor({}, { signal, timeoutMs: 120_000 }));
    } catch (err) {
      if (!isCancel(err)) setProblem(report(err));
    } finally {
      setBusy(false);
    }
  };
  const verdict = result && verdictText(result);
  return (
    <Section
      title="Doctor"
      id="doctor"
      actions={
        <button type="button" class="primary" onClick={run} disabled={busy}>
          {busy ? "Running…" : "Run doctor"}
        </button>
      }
    >
      <p class="muted">
        The first-response checklist (<code>cara doctor</code>): server, token, configuration, the first failing component in the logs, stores, update, backups.
        Each step says what to do next.
      </p>
      <ProblemLine problem={problem} />
      {result && verdict && (
        <>
          <ul class="checks doctor-steps">
            {result.steps.map((s) => {
              const [tone, word] = STEP_TONE[s.status] ?? ["muted", "?"];
              return (
                <li class="check" key={s.id} data-step={s.id}>
                  <Badge tone={tone}>{word}</Badge>
                  <span class="check-name">{s.title}</span>
                  <span class="check-message">
                    {s.summary}
                    {s.details.length > 0 && (
                      <ul class="doctor-details">
                        {s.details.map((d) => (
                          <li key={d}>{d}</li>
                        ))}
                      </ul>
                    )}
                    {s.next && <span class="doctor-next">→ {s.next}</span>}
                  </span>
                </li>
              );
            })}
          </ul>
          <div class="verdict" data-testid="doctor-verdict">
            <Badge tone={verdict[0]}>{verdict[1]}</Badge>
          </div>
          {result.restore && (
            <Notice tone="fail" title={`To restore the newest verified backup (${result.restore.ageDays} days old):`}>
              <code data-testid="restore-command">{result.restore.command}</code>
            </Notice>
          )}
        </>
      )}
    </Section>
  );
}

/** Streams CreateBugreport into a browser download (the report is small: at most 16 MiB). */
async function downloadBugreport(includePayloads: boolean, signal: AbortSignal): Promise<BugreportSummary> {
  let summary: BugreportSummary | undefined;
  const parts: Blob[] = [];
  let received = 0;
  for await (const msg of ops.createBugreport({ includePayloads }, { signal, timeoutMs: 120_000 })) {
    if (msg.event.case === "summary") summary = msg.event.value;
    else if (msg.event.case === "chunk") {
      parts.push(new Blob([msg.event.value as Uint8Array<ArrayBuffer>]));
      received += msg.event.value.length;
    }
  }
  if (!summary) throw new Error("the bug report stream ended without its summary");
  if (BigInt(received) !== summary.sizeBytes) throw new Error(`received ${received} bytes but the server sent ${summary.sizeBytes}; the file is incomplete`);
  const url = URL.createObjectURL(new Blob(parts, { type: "application/gzip" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = summary.fileName;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download holds its own reference once started.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return summary;
}

export function BugreportPanel() {
  const signal = useUnmountSignal();
  const [includePayloads, setIncludePayloads] = useState(false);
  const [summary, setSummary] = useState<BugreportSummary>();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem>();
  const download = async () => {
    setBusy(true);
    setProblem(undefined);
    setSummary(undefined);
    try {
      setSummary(await downloadBugreport(includePayloads, signal));
    } catch (err) {
      if (!isCancel(err)) setProblem(err instanceof Error && !("code" in err) ? { text: err.message } : report(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section
      title="Bug report"
      id="bugreport"
      actions={
        <button type="button" onClick={download} disabled={busy}>
          {busy ? "Packing…" : "Download bug report"}
        </button>
      }
    >
      <p class="muted">
        What an issue needs in one .tar.gz (<code>cara bugreport</code>): the doctor report, status, recent logs, the configuration and versions, with every
        secret redacted.
      </p>
      <label class="check-label">
        <input type="checkbox" checked={includePayloads} onChange={(e) => setIncludePayloads((e.target as HTMLInputElement).checked)} />
        Include task payloads (redacted)
      </label>
      <ProblemLine problem={problem} />
      {summary && (
        <div data-testid="bugreport-summary">
          <p role="status">
            Downloaded <code>{summary.fileName}</code> ({bytes(summary.sizeBytes)}).
          </p>
          <h3>Contains</h3>
          <ul class="plain-list">
            {summary.contains.map((f) => (
              <li key={f.name}>
                <code>{f.name}</code> {f.what}
              </li>
            ))}
          </ul>
          <h3>Left out</h3>
          <ul class="plain-list">
            {summary.leftOut.map((l) => (
              <li key={l}>{l}</li>
            ))}
          </ul>
        </div>
      )}
    </Section>
  );
}
