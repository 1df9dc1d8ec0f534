import { randomUUID } from "node:crypto";
import { isDue, MAX_RESULT_CHARS, storableText, type BlockedReasonName, type TaskRecord } from "./model.js";
import type { TaskStore } from "./task-store.js";

/** What an executor decided about one attempt. */
export type Outcome =
  | { kind: "done"; result?: string; runId?: string; turns?: number }
  | { kind: "retry"; error: string; delayMs?: number }
  | { kind: "blocked"; reason: string; category: BlockedReasonName }
  | { kind: "failed"; error: string };

export interface ExecutionContext {
  task: TaskRecord;
  /** Aborted on timeout, on CancelTask, and on shutdown: stop the work when it fires. */
  signal: AbortSignal;
  timeoutMs: number;
}

export type Executor = (ctx: ExecutionContext) => Promise<Outcome>;

export interface BackoffOptions {
  baseMs: number;
  factor: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, factor: 2, capMs: 300_000 };

/** Exponential backoff with full jitter: uniform in [0, min(cap, base * factor^(attempt-1))]. */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.capMs, options.baseMs * options.factor ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

export interface WorkerOptions {
  concurrency?: number;
  backoff?: BackoffOptions;
  /** Time past an attempt's deadline before its lease expires and the task is rescued. */
  leaseGraceMs?: number;
  /** How often due tasks are looked for when nothing wakes the worker. */
  pollMs?: number;
  now?: () => number;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Told about every finished attempt (metrics): payload kind, outcome kind, run time. */
  onAttempt?: (kind: string, outcome: Outcome["kind"], ms: number) => void;
}

export interface Lease {
  owner: string;
  acquiredAtMs: number;
  heartbeatAtMs: number;
  expiresAtMs: number;
}

interface Running {
  task: TaskRecord;
  attempt: number;
  controller: AbortController;
  lease: Lease;
  started: number;
  abortReason?: "timeout" | "cancel" | "shutdown";
}

class AttemptAborted extends Error {}

/**
 * Runs due tasks with bounded concurrency. Each claimed attempt holds a lease that ends at its
 * deadline plus a grace period; the worker heartbeats it while the attempt runs. The attempt's
 * AbortSignal fires at the deadline (or on cancel / shutdown); an executor that ignores it is
 * abandoned when the lease expires: the task is rescued to retry_wait and its slot freed.
 */
export class Worker {
  readonly id = `worker-${process.pid}-${randomUUID().slice(0, 8)}`;
  readonly concurrency: number;
  leasesRescued = 0;
  private readonly running = new Map<string, Running>();
  private readonly backoff: BackoffOptions;
  private readonly graceMs: number;
  private readonly pollMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private rescueTimer: NodeJS.Timeout | undefined;
  private wakeScheduled = false;
  private stopped = true;
  private ticking = false;
  private tickAgain = false;
  private readonly settled = new Set<Promise<void>>();
  /** A change showed a task due now: the next tick claims without asking the store first. */
  private dueSeen = false;
  private readonly onChange = (rec: TaskRecord) => {
    // Only a task due now is work for the next tick; one due later is found by the poll when its
    // time comes. (Asking the store, hasClaimable, walks every task: once per create it made
    // creates cost O(tasks stored) on every server of a shared queue.)
    if (isDue(rec, this.now())) {
      this.dueSeen = true;
      this.wake();
    }
    // A cancel written by anyone (this server's CancelTask, or another server on a shared
    // store) aborts the attempt running here.
    if (rec.state === "cancelled") this.abort(rec.id);
  };

  constructor(
    private readonly store: TaskStore,
    private readonly executors: Readonly<Record<string, Executor>>,
    private readonly options: WorkerOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 4;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.graceMs = options.leaseGraceMs ?? 5_000;
    this.pollMs = options.pollMs ?? 500;
    this.now = options.now ?? Date.now;
  }

  get alive(): boolean {
    return !this.stopped;
  }

  get busy(): number {
    return this.running.size;
  }

  lease(id: string): Lease | undefined {
    return this.running.get(id)?.lease;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.store.events.on("change", this.onChange);
    this.timer = setInterval(() => void this.tick(), this.pollMs);
    this.rescueTimer = setInterval(() => void this.heartbeatAndRescue(), Math.min(1000, this.pollMs));
    this.wake();
  }

  /** Stops claiming; waits up to `drainMs` for running attempts, then aborts the rest. */
  async stop(drainMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.store.events.off("change", this.onChange);
    clearInterval(this.timer);
    clearInterval(this.rescueTimer);
    const all = () => Promise.all([...this.settled]);
    const deadline = new Promise((r) => setTimeout(r, drainMs).unref());
    await Promise.race([all(), deadline]);
    for (const run of this.running.values()) {
      run.abortReason = "shutdown";
      run.controller.abort(new AttemptAborted("interrupted by shutdown"));
    }
    await Promise.race([all(), new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  /** Aborts the running attempt of a task (after CancelTask made it `cancelled`). */
  abort(id: string): boolean {
    const run = this.running.get(id);
    if (!run) return false;
    if (run.abortReason !== "cancel") {
      run.abortReason = "cancel";
      run.controller.abort(new AttemptAborted("cancelled by operator"));
    }
    return true;
  }

  /** Looks for due tasks on the next turn of the event loop. */
  wake(): void {
    if (this.wakeScheduled || this.stopped) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      void this.tick();
    });
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.ticking) {
      // A wake-up during a claim (a slot freed, a task created) is not lost: it ticks again
      // when this claim is done, not at the next poll.
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    this.tickAgain = false;
    try {
      const free = this.concurrency - this.running.size;
      if (free <= 0) return;
      // The store's reads are current (a shared store refreshes them on its change notices):
      // ask it to claim only when they show work, so an idle worker costs no store round trip.
      const now = this.now();
      const mine = new Set(this.running.keys());
      const dueSeen = this.dueSeen;
      this.dueSeen = false;
      if (!dueSeen && !this.store.hasClaimable(now, mine)) return;
      let claimed: TaskRecord[];
      try {
        claimed = await this.store.claimDue(free, now, mine);
      } catch (err) {
        this.options.log?.warn({ err: (err as Error).message }, "could not claim tasks");
        return;
      }
      for (const task of claimed) {
        const run = this.begin(task);
        if (this.stopped) {
          // Claimed while stop() ran: hand the attempt straight back (retry_wait, due now).
          run.abortReason = "shutdown";
          run.controller.abort(new AttemptAborted("interrupted by shutdown"));
        }
      }
    } finally {
      this.ticking = false;
      if (this.tickAgain) this.wake();
    }
  }

  /** Runs a claimed attempt under its lease. */
  private begin(task: TaskRecord): Running {
    const timeoutMs = attemptTimeoutMs(task);
    const now = this.now();
    const run: Running = {
      task,
      attempt: task.attempts,
      controller: new AbortController(),
      started: now,
      lease: { owner: this.id, acquiredAtMs: now, heartbeatAtMs: now, expiresAtMs: now + timeoutMs + this.graceMs },
    };
    this.running.set(task.id, run);
    const p = this.execute(run, timeoutMs).finally(() => this.settled.delete(p));
    this.settled.add(p);
    return run;
  }

  private async execute(run: Running, timeoutMs: number): Promise<void> {
    const { task } = run;
    const timer = setTimeout(() => {
      run.abortReason = "timeout";
      run.controller.abort(new AttemptAborted(`attempt timed out after ${Math.round(timeoutMs / 1000)}s`));
    }, timeoutMs);
    let outcome: Outcome;
    try {
      const violation = policyViolation(task, this.now());
      if (violation) outcome = { kind: "failed", error: violation };
      else {
        const kind = (task.payload as { kind?: unknown }).kind;
        const executor = typeof kind === "string" ? this.executors[kind] : undefined;
        outcome = executor
          ? await executor({ task, signal: run.controller.signal, timeoutMs })
          : {
              kind: "failed",
              error: `task ${task.id} has an unknown payload kind '${String(kind)}' (likely written by a newer cara); update or cancel the task`,
            };
      }
    } catch (err) {
      outcome = { kind: "retry", error: (err as Error).message || String(err) };
    } finally {
      clearTimeout(timer);
    }
    if (run.abortReason === "timeout") outcome = { kind: "retry", error: `attempt timed out after ${Math.round(timeoutMs / 1000)}s` };
    if (run.abortReason === "shutdown") outcome = { kind: "retry", error: "interrupted by shutdown", delayMs: 0 };
    if (this.running.get(task.id) !== run) {
      this.options.log?.warn({ taskId: task.id, attempt: run.attempt }, "ignored the result of an abandoned attempt (its lease had expired)");
      return;
    }
    // The slot is free from here: the stored state is still `running`, so nothing re-claims it
    // before the outcome is recorded.
    this.running.delete(task.id);
    try {
      await this.finish(run, outcome);
    } catch (err) {
      this.options.log?.warn({ taskId: task.id, err: (err as Error).message }, "could not record the attempt's outcome; it will be retried");
    } finally {
      this.wake();
    }
  }

  private async finish(run: Running, given: Outcome): Promise<void> {
    const outcome = storableOutcome(given);
    const elapsed = this.now() - run.started;
    await this.store.update(run.task.id, (cur) => {
      // A late result (cancelled meanwhile, or already rescued) is ignored.
      if (cur.state !== "running" || cur.attempts !== run.attempt) return cur;
      const now = this.now();
      const base: TaskRecord = { ...cur, updatedAtMs: now, runtimeUsedMs: (cur.runtimeUsedMs ?? 0) + elapsed };
      delete base.blockedReason;
      switch (outcome.kind) {
        case "done": {
          const next: TaskRecord = { ...base, state: "done", lastError: null, nextRunAtMs: null, finishedAtMs: now };
          if (outcome.result !== undefined) next.result = outcome.result;
          if (outcome.runId) next.runIds = [...new Set([...(cur.runIds ?? []), outcome.runId])];
          if (outcome.turns) next.turnsUsed = (cur.turnsUsed ?? 0) + outcome.turns;
          return next;
        }
        case "retry":
          return this.retryOrFail(base, outcome.error, outcome.delayMs, now);
        case "blocked":
          return { ...base, state: "blocked", lastError: outcome.reason, blockedReason: outcome.category, nextRunAtMs: null };
        case "failed":
          return { ...base, state: "failed", lastError: outcome.error, nextRunAtMs: null, finishedAtMs: now };
      }
    });
    this.options.log?.info({ taskId: run.task.id, attempt: run.attempt, outcome: outcome.kind, ms: elapsed }, "task attempt finished");
    const kind = (run.task.payload as { kind?: unknown }).kind;
    this.options.onAttempt?.(typeof kind === "string" && kind in this.executors ? kind : "unknown", outcome.kind, elapsed);
  }

  private retryOrFail(base: TaskRecord, error: string, delayMs: number | undefined, now: number): TaskRecord {
    if (base.attempts >= base.policy.maxAttempts) {
      return { ...base, state: "failed", lastError: `${error} (retry limit reached: ${base.policy.maxAttempts})`, nextRunAtMs: null, finishedAtMs: now };
    }
    return { ...base, state: "retry_wait", lastError: error, nextRunAtMs: now + (delayMs ?? backoffDelay(base.attempts, this.backoff)) };
  }

  private async heartbeatAndRescue(): Promise<void> {
    const now = this.now();
    for (const run of [...this.running.values()]) {
      if (now <= run.lease.expiresAtMs) {
        run.lease.heartbeatAtMs = now;
        continue;
      }
      // The attempt outlived its deadline and the grace period: abandon it.
      this.running.delete(run.task.id);
      this.leasesRescued++;
      run.controller.abort(new AttemptAborted("lease expired"));
      this.options.log?.warn({ taskId: run.task.id, attempt: run.attempt }, "lease expired: rescued a hung attempt to retry_wait");
      await this.store
        .update(run.task.id, (cur) => {
          if (cur.state !== "running" || cur.attempts !== run.attempt) return cur;
          return this.retryOrFail(
            { ...cur, updatedAtMs: now },
            "lease expired: the attempt did not finish by its deadline and did not stop when aborted",
            undefined,
            now,
          );
        })
        .catch((err: Error) => this.options.log?.warn({ taskId: run.task.id, err: err.message }, "could not record a lease rescue"));
      this.wake();
    }
  }
}

/** The per-attempt deadline: the agentTurn's timeoutSeconds (capped by policy), else the policy's. */
export function attemptTimeoutMs(task: TaskRecord): number {
  const payload = task.payload as { kind?: string; timeoutSeconds?: number };
  const cap = task.policy.maxRunTimeoutSeconds;
  const requested = payload.kind === "agentTurn" && payload.timeoutSeconds ? payload.timeoutSeconds : cap;
  return Math.max(1, Math.min(requested, cap)) * 1000;
}

/** The original Rust cara's policy checks, applied to explicit-policy tasks before each attempt. */
export function policyViolation(task: TaskRecord, now: number): string | undefined {
  if (!task.policyExplicit) return undefined;
  const p = task.policy;
  for (const key of ["maxAttempts", "maxTotalRuntimeMs", "maxTurns", "maxRunTimeoutSeconds"] as const) {
    if (p[key] === 0) return `objective policy violation: ${key} must be greater than 0`;
  }
  if (task.attempts > p.maxAttempts) return `objective policy violation: attempts ${task.attempts} exceeded maxAttempts ${p.maxAttempts}`;
  const age = now - task.createdAtMs;
  if (age > p.maxTotalRuntimeMs) return `objective policy violation: task age ${age}ms exceeded maxTotalRuntimeMs ${p.maxTotalRuntimeMs}`;
  const payload = task.payload as { kind?: string; timeoutSeconds?: number };
  if (payload.kind === "agentTurn" && payload.timeoutSeconds && payload.timeoutSeconds > p.maxRunTimeoutSeconds) {
    return `objective policy violation: timeoutSeconds ${payload.timeoutSeconds} exceeds maxRunTimeoutSeconds ${p.maxRunTimeoutSeconds}`;
  }
  return undefined;
}

/** The outcome with its text made storable by every store (storableText), the reply cut to MAX_RESULT_CHARS. */
function storableOutcome(outcome: Outcome): Outcome {
  switch (outcome.kind) {
    case "done":
      return {
        ...outcome,
        // Cut first, then made storable: the cut may split a surrogate pair.
        ...(outcome.result !== undefined ? { result: storableText(outcome.result.slice(0, MAX_RESULT_CHARS)) } : {}),
        ...(outcome.runId !== undefined ? { runId: storableText(outcome.runId) } : {}),
      };
    case "retry":
    case "failed":
      return { ...outcome, error: storableText(outcome.error) };
    case "blocked":
      return { ...outcome, reason: storableText(outcome.reason) };
  }
}
