import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useState } from "preact/hooks";
import { BlockedReasonSchema, TaskState, type Task } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { tasks, unary } from "../api.js";
import { isCancel, report, type Problem } from "../errors.js";
import { dateTime, duration, enumName, relative } from "../format.js";
import { useNow } from "../hooks.js";
import { payloadJson } from "../task-payload.js";
import { PolicyInputs } from "../policy-inputs.js";
import { POLICY_FIELDS, policyError, type PolicyKey } from "../task-payload.js";
import { Badge, Facts, ProblemLine, Section } from "../ui.js";
import { STATE_TONE, stateName } from "../task-state.js";

const TERMINAL = new Set([TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED]);

/** Whether `a` is an earlier version of the task than `b` (by update time, then attempts). */
function isOlder(a: Task, b: Task): boolean {
  return a.updatedAtMs < b.updatedAtMs || (a.updatedAtMs === b.updatedAtMs && a.attempts < b.attempts);
}

/** A task, kept current by WatchTask (re-watched after an action brings a finished task back). */
export function TaskDetails({ id, onChanged }: { id: string; onChanged: () => void }) {
  const [task, setTask] = useState<Task | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const [missing, setMissing] = useState(false);
  const [watching, setWatching] = useState(false);
  const [generation, setGeneration] = useState(0);
  const [busy, setBusy] = useState<string | undefined>();
  const [reason, setReason] = useState("");
  const [editing, setEditing] = useState(false);
  const now = useNow(1000);

  useEffect(() => {
    const stop = new AbortController();
    void (async () => {
      for (let attempt = 0; !stop.signal.aborted; attempt++) {
        try {
          setWatching(true);
          let last: Task | undefined;
          for await (const res of tasks.watchTask({ id }, { signal: stop.signal })) {
            attempt = 0;
            last = res.task;
            setTask(res.task);
            setProblem(undefined);
            onChanged();
          }
          // The stream ends after a terminal state; it is watched again if an action revives it.
          if (!last || TERMINAL.has(last.state)) return;
        } catch (err) {
          if (stop.signal.aborted || isCancel(err)) return;
          if (err instanceof ConnectError && err.code === Code.NotFound) {
            setMissing(true);
            return;
          }
          setProblem(report(err));
        } finally {
          setWatching(false);
        }
        await new Promise((r) => setTimeout(r, Math.min(10_000, 1000 * 2 ** Math.min(attempt, 4))));
      }
    })();
    return () => stop.abort();
  }, [id, generation]);

  const act = async (name: string, call: () => Promise<{ task?: Task }>) => {
    setBusy(name);
    setProblem(undefined);
    try {
      const res = await call();
      const fresh = res.task;
      // The watch stream may already have delivered later states (the worker claims a resumed
      // task at once); an older response must not overwrite them.
      if (fresh) setTask((prev) => (prev && isOlder(fresh, prev) ? prev : fresh));
      setReason("");
      onChanged();
      if (res.task && !TERMINAL.has(res.task.state) && !watching) setGeneration((g) => g + 1);
      return true;
    } catch (err) {
      setProblem(report(err));
      return false;
    } finally {
      setBusy(undefined);
    }
  };

  if (missing) {
    return (
      <Section title="Task not found">
        <p>
          No task <code>{id}</code>: it may have been removed by retention or evicted.
        </p>
      </Section>
    );
  }
  if (!task) {
    return (
      <Section title="Task">
        <ProblemLine problem={problem} idle="Loading…" />
      </Section>
    );
  }
  const s = task.state;
  const reasonArg = reason.trim() ? { reason: reason.trim() } : {};
  const canCancel = !TERMINAL.has(s);
  const canRetry = s === TaskState.FAILED || s === TaskState.BLOCKED || s === TaskState.CANCELLED || s === TaskState.RETRY_WAIT;
  const canResume = s === TaskState.BLOCKED;
  const canEdit = s !== TaskState.RUNNING && s !== TaskState.DONE;
  const p = task.policy;
  return (
    <Section
      title="Task"
      id="task-details"
      actions={
        <span class="muted" role="status">
          {watching ? "● live" : TERMINAL.has(s) ? "finished" : ""}
        </span>
      }
    >
      <p class="task-state">
        <Badge tone={STATE_TONE[s] ?? "muted"}>
          <span data-testid="task-state">{stateName(s)}</span>
        </Badge>{" "}
        <code class="break">{task.id}</code>
      </p>
      <Facts
        rows={[
          ["Attempts", `${task.attempts} of ${p?.maxAttempts ?? "?"}`],
          ["Created", dateTime(task.createdAtMs)],
          ["Updated", `${dateTime(task.updatedAtMs)} (${relative(task.updatedAtMs, now)})`],
          [
            "Next run",
            task.nextRunAtMs !== undefined
              ? `${dateTime(task.nextRunAtMs)} (${relative(task.nextRunAtMs, now)})`
              : s === TaskState.QUEUED
                ? "as soon as a worker is free"
                : "—",
          ],
          ["Finished", task.finishedAtMs !== undefined ? dateTime(task.finishedAtMs) : "—"],
          ["Priority", String(task.priority)],
          ...(s === TaskState.BLOCKED ? ([["Blocked", enumName(BlockedReasonSchema, task.blockedReason)]] as [string, string][]) : []),
          ["Last error", task.lastError ? <span class="break">{task.lastError}</span> : "—"],
          ...(task.note ? ([["Note", <span class="break">{task.note}</span>]] as [string, preact.ComponentChildren][]) : []),
          ...(task.result ? ([["Result", <span class="break">{task.result}</span>]] as [string, preact.ComponentChildren][]) : []),
          ...(task.lease ? ([["Lease", `${task.lease.owner}, expires ${relative(task.lease.expiresAtMs, now)}`]] as [string, string][]) : []),
          [
            "Policy",
            p
              ? `${p.maxAttempts} attempts, ${duration(Number(p.maxTotalRuntimeMs) / 1000)} in total, ${p.maxTurns} turns, ${duration(p.maxRunTimeoutSeconds)} per run${task.policyExplicit ? "" : " (not enforced: legacy task)"}`
              : "—",
          ],
          [
            "Labels",
            Object.keys(task.labels).length
              ? Object.entries(task.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(", ")
              : "—",
          ],
        ]}
      />
      <h3>Payload</h3>
      <pre class="wrap">{JSON.stringify(payloadJson(task.payload), null, 2)}</pre>
      <div class="task-actions">
        <label class="grow">
          Reason <span class="muted">(optional: the last error for cancel, retry and resume; a note for a policy edit)</span>
          <input value={reason} maxLength={1024} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
        </label>
        <div class="actions">
          <button type="button" disabled={!canCancel || !!busy} onClick={() => act("cancel", () => tasks.cancelTask({ id, ...reasonArg }, unary()))}>
            {busy === "cancel" ? "Cancelling…" : "Cancel"}
          </button>
          <button type="button" disabled={!canRetry || !!busy} onClick={() => act("retry", () => tasks.retryTask({ id, ...reasonArg }, unary()))}>
            Retry
          </button>
          <button type="button" disabled={!canResume || !!busy} onClick={() => act("resume", () => tasks.resumeTask({ id, ...reasonArg }, unary()))}>
            Resume
          </button>
          <button type="button" disabled={!canEdit || !!busy} aria-expanded={editing} onClick={() => setEditing(!editing)}>
            Edit policy…
          </button>
        </div>
      </div>
      {editing && canEdit && (
        <PolicyEditor
          task={task}
          busy={busy === "policy"}
          onSave={(overrides) => act("policy", () => tasks.updateTask({ id, policy: overrides, ...reasonArg }, unary())).then((ok) => ok && setEditing(false))}
        />
      )}
      <ProblemLine problem={problem} />
    </Section>
  );
}

function PolicyEditor({ task, busy, onSave }: { task: Task; busy: boolean; onSave: (o: Record<string, number | bigint>) => void }) {
  const current = (k: PolicyKey) => String(task.policy?.[k] ?? "");
  const [values, setValues] = useState<Record<PolicyKey, string>>({
    maxAttempts: current("maxAttempts"),
    maxTotalRuntimeMs: current("maxTotalRuntimeMs"),
    maxTurns: current("maxTurns"),
    maxRunTimeoutSeconds: current("maxRunTimeoutSeconds"),
  });
  const errors = Object.fromEntries(POLICY_FIELDS.map((f) => [f.key, policyError(f.key, values[f.key])])) as Record<PolicyKey, string | undefined>;
  const changed = POLICY_FIELDS.filter((f) => values[f.key].trim() && values[f.key].trim() !== current(f.key));
  return (
    <form
      class="form policy-editor"
      onSubmit={(e) => {
        e.preventDefault();
        if (changed.length === 0 || Object.values(errors).some(Boolean)) return;
        onSave(Object.fromEntries(changed.map((f) => [f.key, f.key === "maxTotalRuntimeMs" ? BigInt(values[f.key]) : Number(values[f.key])])));
      }}
    >
      <PolicyInputs values={values} errors={errors} onInput={(key, value) => setValues({ ...values, [key]: value })} />
      <div class="actions">
        <button type="submit" class="primary" disabled={busy || changed.length === 0 || Object.values(errors).some(Boolean)}>
          {busy ? "Saving…" : "Save policy"}
        </button>
      </div>
    </form>
  );
}
