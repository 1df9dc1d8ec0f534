import { isTerminal, type TaskRecord } from "./model.js";
import { dueNow, nextDueTimes, runKey, type ScheduleRecord, type ScheduleRun } from "./schedule.js";
import type { ScheduleStore } from "./schedule-store.js";
import { TaskQueueFullError, TaskStoreWriteError, type TaskStore } from "./task-store.js";

export interface SchedulerOptions {
  now?: () => number;
  /** Longest sleep between looks at the schedules (picks up clock jumps); default 30 s. */
  maxSleepMs?: number;
  /** After a run could not create its task (full disk, full queue): retry after this long. */
  retryMs?: number;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Test hook: called after a run's task exists, before the schedule records it (crash tests). */
  afterCreate?: ((schedule: ScheduleRecord, dueAtMs: number) => Promise<void>) | undefined;
  /** Told about every run (metrics). */
  onRun?: (schedule: ScheduleRecord, run: ScheduleRun) => void;
}

/**
 * Creates the task of every schedule when it is due. Exactly once per due time: the task is
 * created first, with an idempotency key derived from the schedule and the due time, and only
 * then does the schedule record that due time; a crash between the two finds the task by its key
 * on the next look and does not create a second. After downtime across several due times, one
 * catch-up run stands for them all and the others are recorded as missed.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = true;
  private pass: Promise<void> = Promise.resolve();
  private readonly now: () => number;
  private readonly retryUntil = new Map<string, number>();

  constructor(
    private readonly schedules: ScheduleStore,
    private readonly tasks: TaskStore,
    private readonly options: SchedulerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.pass;
  }

  /** Looks at the schedules now (after a change to them, or a clock moved by a test). */
  wake(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
    this.timer.unref();
  }

  /** One look: runs what is due, then sleeps until the next due time (at most maxSleepMs). */
  async tick(): Promise<void> {
    if (this.running) return this.pass;
    this.running = true;
    this.pass = this.runDue().finally(() => {
      this.running = false;
      if (!this.stopped) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.tick(), this.sleepMs());
        this.timer.unref();
      }
    });
    return this.pass;
  }

  private sleepMs(): number {
    const now = this.now();
    let next = now + (this.options.maxSleepMs ?? 30_000);
    for (const s of this.schedules.list()) {
      const due = nextDueTimes(s, now, 1)[0];
      if (s.enabled && due !== undefined) next = Math.min(next, Math.max(due, this.retryUntil.get(s.id) ?? 0));
    }
    return Math.max(0, next - now);
  }

  private async runDue(): Promise<void> {
    if (this.schedules.closedBecause || this.tasks.closedBecause) return;
    const now = this.now();
    for (const s of this.schedules.list()) {
      if ((this.retryUntil.get(s.id) ?? 0) > now) continue;
      const due = dueNow(s, now);
      if (!due) continue;
      await this.run(s, due.dueAtMs, due.missed).catch((err: Error) =>
        this.options.log?.warn({ schedule: s.name, err: err.message }, "could not record a schedule's run; it is retried"),
      );
    }
  }

  /** Runs a schedule's template now, outside its due times (RunScheduleNow). */
  async runNow(id: string): Promise<ScheduleRun> {
    const s = this.schedules.get(id);
    const at = this.now();
    const run = await this.createRun(s, at, `${runKey(s.id, at)}:manual`, true);
    await this.schedules.update(s.id, (cur) => ({ ...cur, lastRun: run }));
    this.options.onRun?.(s, run);
    return run;
  }

  private async run(s: ScheduleRecord, dueAtMs: number, missed: number[]): Promise<void> {
    const run = await this.createRun(s, dueAtMs, runKey(s.id, dueAtMs), false);
    if (run.outcome === "failed_to_create") {
      // A full disk or queue: try this due time again shortly rather than lose it.
      this.retryUntil.set(s.id, this.now() + (this.options.retryMs ?? 30_000));
      this.options.log?.warn({ schedule: s.name, due: new Date(dueAtMs).toISOString(), err: run.error }, "a scheduled run could not create its task; retrying");
      await this.schedules.update(s.id, (cur) => ({ ...cur, lastRun: run }));
      this.options.onRun?.(s, run);
      return;
    }
    this.retryUntil.delete(s.id);
    if (missed.length > 0) {
      this.options.log?.warn(
        { schedule: s.name, missed: missed.length, from: new Date(missed[0]!).toISOString() },
        "due times passed while the server was down; ran once to catch up",
      );
    }
    await this.schedules.update(s.id, (cur) => ({
      ...cur,
      anchorMs: Math.max(cur.anchorMs, dueAtMs),
      lastRun: run,
      missedRuns: cur.missedRuns + missed.length,
      ...(missed.length > 0 ? { lastMissed: { count: missed.length, fromMs: missed[0]!, toMs: missed.at(-1)! } } : {}),
    }));
    this.options.onRun?.(s, run);
  }

  /** Creates the run's task (or skips it while the previous run still goes, under `skip`). */
  private async createRun(s: ScheduleRecord, dueAtMs: number, key: string, manual: boolean): Promise<ScheduleRun> {
    const at = this.now();
    const base = { dueAtMs, atMs: at, ...(manual ? { manual } : {}) };
    const previous: TaskRecord | undefined = s.lastRun?.taskId ? this.tasks.get(s.lastRun.taskId) : undefined;
    if (!manual && s.overlap === "skip" && previous && !isTerminal(previous.state)) {
      return { ...base, outcome: "skipped_overlap", taskId: previous.id };
    }
    try {
      const t = s.template;
      const { task } = await this.tasks.create({
        payload: t.payload,
        policy: { ...(t.policy as TaskRecord["policy"]) },
        policyExplicit: true,
        nextRunAtMs: null,
        idempotencyKey: key,
        labels: { ...t.labels, schedule: s.id },
        ...(t.priority ? { priority: t.priority } : {}),
      });
      await this.options.afterCreate?.(s, dueAtMs);
      return { ...base, outcome: "created", taskId: task.id };
    } catch (err) {
      if (err instanceof TaskStoreWriteError || err instanceof TaskQueueFullError) return { ...base, outcome: "failed_to_create", error: err.message };
      throw err;
    }
  }
}
