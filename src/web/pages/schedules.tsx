// The schedules on the Tasks page: each one's rule, zone, state, next due time and last run (with
// a link to its task), and the actions pause/resume and run now. Creating and editing a schedule
// is `cara schedule` (the README's Schedules section).
import { useState } from "preact/hooks";
import { ScheduleRunOutcome, type Schedule, type ScheduleRun } from "../../../gen/carapace/tasks/v1/schedules_pb.js";
import { schedules, unary } from "../api.js";
import { report, type Problem } from "../errors.js";
import { dateTime, relative } from "../format.js";
import { usePoll } from "../hooks.js";
import { navigate, onLinkClick } from "../router.js";
import { payloadSummary } from "../task-payload.js";
import { STATE_TONE, stateName } from "../task-state.js";
import { Badge, ProblemLine, Section, type Tone } from "../ui.js";
import { ruleText, scheduleRunOutcomeNames } from "../../wire/schedules.js";

function LastRun({ run, now }: { run: ScheduleRun | undefined; now: number }) {
  if (!run) return <span class="muted">no run yet</span>;
  const outcome = scheduleRunOutcomeNames.name(run.outcome) ?? "unknown";
  const tone: Tone = run.outcome === ScheduleRunOutcome.CREATED ? "info" : run.outcome === ScheduleRunOutcome.SKIPPED_OVERLAP ? "warn" : "fail";
  return (
    <span class="schedule-last" data-testid="schedule-last-run">
      <span title={dateTime(run.atMs)}>{relative(run.atMs, now)}</span> <Badge tone={tone}>{outcome}</Badge>
      {run.manual && <span class="muted"> (run now)</span>}
      {run.taskId && (
        <>
          {" "}
          <a href={`/console/tasks/${run.taskId}`} onClick={onLinkClick} data-testid="schedule-last-task">
            task {run.taskId.slice(0, 8)}
          </a>{" "}
          {run.taskState !== undefined ? (
            <Badge tone={STATE_TONE[run.taskState] ?? "muted"}>{stateName(run.taskState)}</Badge>
          ) : (
            <span class="muted">(removed)</span>
          )}
        </>
      )}
      {run.error && <span class="muted"> {run.error}</span>}
    </span>
  );
}

function ScheduleRow({
  s,
  now,
  busy,
  act,
}: {
  s: Schedule;
  now: number;
  busy: string | undefined;
  act: (key: string, call: () => Promise<string | undefined>) => void;
}) {
  const next = s.nextDueMs[0];
  const key = (verb: string) => `${verb}:${s.id}`;
  return (
    <li class="schedule-row" data-schedule={s.name}>
      <div class="schedule-head">
        <strong class="schedule-name">{s.name}</strong>
        <Badge tone={s.enabled ? "ok" : "muted"}>{s.enabled ? "enabled" : "paused"}</Badge>
        <span class="code" data-testid="schedule-rule">
          {ruleText(s)}
        </span>
        <span class="muted row-main">{payloadSummary(s.template?.payload)}</span>
      </div>
      <div class="schedule-facts">
        <span data-testid="schedule-next">
          Next due:{" "}
          {next !== undefined ? (
            <span title={dateTime(next)}>{`${dateTime(next)} (${relative(next, now)})`}</span>
          ) : (
            <span class="muted">{s.enabled ? "none" : "paused"}</span>
          )}
        </span>
        <span>
          Last run: <LastRun run={s.lastRun} now={now} />
        </span>
        {s.missedRuns > 0 && <span class="muted">{s.missedRuns} missed while the server was down</span>}
      </div>
      <div class="actions">
        {s.enabled ? (
          <button type="button" disabled={!!busy} onClick={() => act(key("pause"), () => schedules.pauseSchedule({ id: s.id }, unary()).then(() => undefined))}>
            {busy === key("pause") ? "Pausing…" : "Pause"}
          </button>
        ) : (
          <button
            type="button"
            disabled={!!busy}
            onClick={() => act(key("resume"), () => schedules.resumeSchedule({ id: s.id }, unary()).then(() => undefined))}
          >
            {busy === key("resume") ? "Resuming…" : "Resume"}
          </button>
        )}
        <button
          type="button"
          disabled={!!busy}
          onClick={() => act(key("run"), async () => (await schedules.runScheduleNow({ id: s.id }, unary())).run?.taskId || undefined)}
        >
          {busy === key("run") ? "Running…" : "Run now"}
        </button>
      </div>
    </li>
  );
}

/** The schedules, polled; `onChanged` after an action (a run now adds a task). */
export function SchedulesPanel({ now, onChanged }: { now: number; onChanged: () => void }) {
  const list = usePoll((signal) => schedules.listSchedules({}, unary(signal)), 5000, []);
  const [busy, setBusy] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const act = async (key: string, call: () => Promise<string | undefined>) => {
    setBusy(key);
    setProblem(undefined);
    try {
      const taskId = await call();
      list.refresh();
      onChanged();
      // A run now opens the task it created.
      if (taskId) navigate(`/console/tasks/${taskId}`);
    } catch (err) {
      setProblem(report(err));
    } finally {
      setBusy(undefined);
    }
  };
  const items = list.data?.schedules;
  return (
    <Section title="Schedules" id="schedules">
      {items && items.length === 0 && (
        <p class="muted">
          No schedules. Create one with <code>cara schedule create</code>, e.g.{" "}
          <code>--name nightly-backup --cron '0 3 * * *' --payload '{'{"kind":"backup","keep":7}'}'</code>.
        </p>
      )}
      <ul class="rows">
        {items?.map((s) => (
          <ScheduleRow key={s.id} s={s} now={now} busy={busy} act={(k, c) => void act(k, c)} />
        ))}
      </ul>
      <ProblemLine problem={problem ?? list.problem} />
    </Section>
  );
}
