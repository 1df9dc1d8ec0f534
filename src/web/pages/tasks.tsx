import { TaskState } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { tasks, unary } from "../api.js";
import { relative } from "../format.js";
import { useNow, usePoll } from "../hooks.js";
import { navigate, onLinkClick } from "../router.js";
import { payloadSummary } from "../task-payload.js";
import { Badge, Freshness, PageHeader, ProblemLine } from "../ui.js";
import { useState } from "preact/hooks";
import { STATE_TONE, stateName } from "../task-state.js";
import { SchedulesPanel } from "./schedules.js";
import { CreateTask } from "./task-create.js";
import { TaskDetails } from "./task-details.js";

const STATES = [TaskState.QUEUED, TaskState.RUNNING, TaskState.BLOCKED, TaskState.RETRY_WAIT, TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED];
const COUNT_KEY: Record<number, "queued" | "running" | "blocked" | "retryWait" | "done" | "failed" | "cancelled"> = {
  [TaskState.QUEUED]: "queued",
  [TaskState.RUNNING]: "running",
  [TaskState.BLOCKED]: "blocked",
  [TaskState.RETRY_WAIT]: "retryWait",
  [TaskState.DONE]: "done",
  [TaskState.FAILED]: "failed",
  [TaskState.CANCELLED]: "cancelled",
};

export function TasksPage({ id, create }: { id: string | undefined; create: boolean }) {
  const [filter, setFilter] = useState<TaskState[]>([]);
  const now = useNow(1000);
  const stats = usePoll((signal) => tasks.getQueueStats({}, unary(signal)), 2000, []);
  const list = usePoll((signal) => tasks.listTasks({ states: filter, limit: 200 }, unary(signal)), 2000, [filter.join()]);
  const counts = stats.data?.stats?.counts;
  const refresh = () => {
    stats.refresh();
    list.refresh();
  };
  const toggle = (s: TaskState) => setFilter((f) => (f.includes(s) ? f.filter((x) => x !== s) : [...f, s].sort()));

  return (
    <>
      <PageHeader title="Tasks">
        <Freshness at={list.at} now={now} />
        <a class="button primary" href="/console/tasks/new" onClick={onLinkClick}>
          New task
        </a>
      </PageHeader>
      <SchedulesPanel now={now} onChanged={refresh} />
      {/* biome-ignore lint/a11y/useSemanticElements: a row of toggle buttons, labelled as a group; a fieldset would draw a box and want a legend */}
      <div class="chips" role="group" aria-label="Show tasks in these states">
        <button type="button" class="chip" aria-pressed={filter.length === 0} onClick={() => setFilter([])}>
          all <span class="num">{stats.data?.stats?.total ?? "–"}</span>
        </button>
        {STATES.map((s) => (
          <button type="button" key={s} class={`chip ${STATE_TONE[s]}`} aria-pressed={filter.includes(s)} onClick={() => toggle(s)} data-state={stateName(s)}>
            {stateName(s)} <span class="num">{counts ? counts[COUNT_KEY[s]!] : "–"}</span>
          </button>
        ))}
      </div>
      <ProblemLine problem={list.problem ?? stats.problem} />
      <div class="split">
        <section class="panel task-list" aria-labelledby="task-list-title">
          <div class="panel-head">
            <h2 id="task-list-title">
              {filter.length ? filter.map(stateName).join(", ") : "All tasks"} <span class="muted num">({list.data?.total ?? "…"})</span>
            </h2>
          </div>
          {list.data && list.data.tasks.length === 0 && <p class="muted">No tasks{filter.length ? " in these states" : " yet"}.</p>}
          <ul class="rows">
            {list.data?.tasks.map((t) => (
              <li key={t.id}>
                <a
                  class={`row-link ${t.id === id ? "current" : ""}`}
                  href={`/console/tasks/${t.id}`}
                  onClick={onLinkClick}
                  aria-current={t.id === id ? "true" : undefined}
                  data-task={t.id}
                >
                  <Badge tone={STATE_TONE[t.state] ?? "muted"}>{stateName(t.state)}</Badge>
                  <span class="row-main">{payloadSummary(t.payload)}</span>
                  <span class="row-side muted">
                    {t.attempts} att. · {relative(t.updatedAtMs, now)}
                  </span>
                </a>
              </li>
            ))}
          </ul>
        </section>
        <div class="task-side">
          {create ? (
            <CreateTask
              onCreated={(taskId) => {
                refresh();
                navigate(`/console/tasks/${taskId}`);
              }}
            />
          ) : id ? (
            <TaskDetails key={id} id={id} onChanged={refresh} />
          ) : (
            <section class="panel">
              <p class="muted">Select a task to see its details, or create one with “New task”.</p>
            </section>
          )}
        </div>
      </div>
    </>
  );
}
