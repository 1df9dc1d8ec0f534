import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import type { HealthCheck, StoreHealth } from "../ops/checks.js";
import type { Logger } from "../ops/logger.js";
import type { CaraConfig } from "../state/config.js";
import { agentTurnExecutor, RecentEvents, systemEventExecutor } from "./executors.js";
import { queueStatsValue, tasksService } from "./service.js";
import { FileTaskStore } from "./store.js";
import { DEFAULT_RETENTION_MS, type TaskStore, type TasksDatabase } from "./task-store.js";
import { TaskDatabaseError } from "./postgres/errors.js";
import { redactUrl } from "./postgres/redact.js";
import { databaseCheck } from "./postgres/database-check.js";
import { summarizeSchedule, type ScheduleRecord, type ScheduleRun } from "./schedule.js";
import { ScheduleStore } from "./schedule-store.js";
import { Scheduler } from "./scheduler.js";
import { DEFAULT_BACKOFF, Worker, type Executor, type WorkerOptions } from "./worker.js";
import { formatCount } from "../format-count.js";

export interface TasksRuntime {
  store: TaskStore;
  worker: Worker;
  schedules: ScheduleStore;
  scheduler: Scheduler;
  /** The schedules' clock (the real one, unless a test set CARA_TEST_CLOCK_START). */
  now: () => number;
  /** Starts the worker and the scheduler (once the server serves). */
  start(): void;
  /** Stops writers and closes the stores for a restore that replaces their files. */
  pause(reason: string): Promise<void>;
  /** Loads the stores again (after the restore, or its rollback) and restarts the writers. */
  resume(startWriters: boolean): Promise<void>;
  events: RecentEvents;
  service(shutdown: AbortSignal): ServiceImpl<typeof TasksService>;
  storeHealth: StoreHealth;
  check: HealthCheck;
  /** The `database` check: present with the PostgreSQL store only. */
  databaseCheck?: HealthCheck;
  /** The whole-table reads and writes of backup and restore: present with the PostgreSQL store only. */
  database?: TasksDatabase;
  statusSection: () => unknown;
  /** Stops the worker (waiting up to drainMs for running attempts) and closes the store. */
  close(drainMs: number): Promise<void>;
}

/**
 * The schedules' clock. Test hook, inert unless set: CARA_TEST_CLOCK_START (an ISO time) makes it
 * start there and run at the real pace, so end-to-end tests reach a due time in a second.
 */
function schedulerClock(env: NodeJS.ProcessEnv): () => number {
  const start = env.CARA_TEST_CLOCK_START ? Date.parse(env.CARA_TEST_CLOCK_START) : Number.NaN;
  if (!Number.isFinite(start)) return Date.now;
  const offset = start - Date.now();
  return () => Date.now() + offset;
}

/**
 * Test hook for crash tests, inert unless CARA_TEST_PAUSE_AT is `schedule:created`: after a
 * run's task is durable and before the schedule records the run, write
 * `CARA_TEST_PAUSED_AT schedule:created` to stderr and wait (to be killed there).
 */
function testPauseAfterCreate(env: NodeJS.ProcessEnv): (() => Promise<void>) | undefined {
  if (env.CARA_TEST_PAUSE_AT !== "schedule:created") return undefined;
  return async () => {
    process.stderr.write("CARA_TEST_PAUSED_AT schedule:created\n");
    await new Promise((resolve) => setTimeout(resolve, 60_000));
  };
}

/**
 * Opens the task store (failing closed on corrupt state), builds the executors and the worker
 * from config. The worker is started by the caller once the server is ready to serve.
 */
export async function startTasks(options: {
  dir: string;
  config: CaraConfig;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  extraExecutors?: Record<string, Executor>;
  /** Metrics hooks: each finished attempt, each journal write + fsync. */
  onAttempt?: WorkerOptions["onAttempt"];
  onSync?: (ms: number) => void;
  onScheduleRun?: (schedule: ScheduleRecord, run: ScheduleRun) => void;
}): Promise<TasksRuntime> {
  const { config, env, logger } = options;
  const cfg = config.tasks ?? {};
  const common = {
    ...(cfg.capacity !== undefined ? { capacity: cfg.capacity } : {}),
    retentionMs: cfg.retentionDays !== undefined ? cfg.retentionDays * 86_400_000 : DEFAULT_RETENTION_MS,
    warn: (message: string) => logger.warn(message),
  };
  let store: TaskStore;
  let dbCheck: HealthCheck | undefined;
  let database: TasksDatabase | undefined;
  if (cfg.store === "postgres") {
    const url = env.CARAPACE_DATABASE_URL || cfg.postgres?.url;
    if (!url)
      throw new TaskDatabaseError(
        'config tasks.store is "postgres" but no database URL is set: set CARAPACE_DATABASE_URL or tasks.postgres.url in config.json, then start again',
      );
    const source = env.CARAPACE_DATABASE_URL ? "CARAPACE_DATABASE_URL" : "config tasks.postgres.url";
    if (!/^postgres(ql)?:\/\/./.test(url))
      throw new TaskDatabaseError(`${source} is not a PostgreSQL URL (postgres://user:password@host:port/database); fix it, then start again`);
    // The URL itself is never logged (redactUrl hides its password where a message names it).
    const { PgTaskStore } = await import("./postgres/pg-store.js");
    const opened = await PgTaskStore.open({
      url,
      ...common,
      ...(cfg.leaseGraceMs !== undefined ? { leaseGraceMs: cfg.leaseGraceMs } : {}),
      ...(cfg.postgres?.poolSize !== undefined ? { poolSize: cfg.postgres.poolSize } : {}),
    });
    store = opened;
    dbCheck = databaseCheck(() => opened.probe());
    database = opened;
    logger.info({ database: redactUrl(url) }, "tasks are stored in PostgreSQL");
  } else {
    if (env.CARAPACE_DATABASE_URL) logger.warn('CARAPACE_DATABASE_URL is set but config tasks.store is not "postgres": tasks stay in the state directory');
    store = await FileTaskStore.open({ dir: options.dir, ...common, ...(options.onSync ? { onSync: options.onSync } : {}) });
  }
  const schedules = await ScheduleStore.open(options.dir);
  if (store.recoveredOnOpen > 0)
    logger.warn({ count: store.recoveredOnOpen }, "tasks that were running when the server stopped are due again (recovered after restart)");
  const events = new RecentEvents();
  const apiKey = env.CARAPACE_AGENT_API_KEY;
  const executors: Record<string, Executor> = {
    systemEvent: systemEventExecutor(events, (task, text) => logger.info({ taskId: task.id, event: text }, "system event")),
    agentTurn: agentTurnExecutor(() => ({
      ...(config.agent?.baseUrl ? { baseUrl: config.agent.baseUrl } : {}),
      ...(config.agent?.model ? { model: config.agent.model } : {}),
      ...(apiKey ? { apiKey } : {}),
    })),
    ...options.extraExecutors,
  };
  const worker = new Worker(store, executors, {
    concurrency: cfg.concurrency ?? 4,
    backoff: { ...DEFAULT_BACKOFF, ...cfg.backoff },
    ...(cfg.leaseGraceMs !== undefined ? { leaseGraceMs: cfg.leaseGraceMs } : {}),
    log: logger,
    ...(options.onAttempt ? { onAttempt: options.onAttempt } : {}),
  });
  const now = schedulerClock(env);
  const scheduler = new Scheduler(schedules, store, {
    now,
    log: logger,
    afterCreate: testPauseAfterCreate(env),
    ...(options.onScheduleRun ? { onRun: options.onScheduleRun } : {}),
  });
  const retentionTimer = setInterval(() => void store.sweepRetention().catch(() => undefined), 3_600_000);
  retentionTimer.unref();
  let closed = false;
  return {
    store,
    worker,
    schedules,
    scheduler,
    start() {
      worker.start();
      scheduler.start();
    },
    async pause(reason) {
      await scheduler.stop();
      await worker.stop(5_000);
      await schedules.suspend(reason);
      await store.suspend(reason);
    },
    async resume(startWriters) {
      await store.reopen();
      await schedules.reopen();
      if (startWriters) {
        worker.start();
        scheduler.start();
      }
    },
    events,
    service: (shutdown) => tasksService({ store, worker, shutdown }),
    now,
    storeHealth: {
      name: "tasks",
      loaded: () => (store.closedBecause !== undefined ? { ok: false, message: store.closedBecause } : { ok: true, message: formatCount(store.size, "task") }),
    },
    ...(dbCheck ? { databaseCheck: dbCheck } : {}),
    ...(database ? { database } : {}),
    check: {
      name: "tasks",
      run() {
        if (store.closedBecause !== undefined) return { status: "fail", message: store.closedBecause };
        if (store.writeError) return { status: "fail", message: store.writeError };
        if (!worker.alive) return { status: "warn", message: "the task worker is not running" };
        const failing = schedules.list().filter((sc) => summarizeSchedule(sc, (id) => store.get(id)?.state, Date.now()).lastRunFailed);
        if (failing.length > 0) {
          return {
            status: "warn",
            message: `the last run of schedule ${failing.map((sc) => `'${sc.name}'`).join(", ")} failed; see cara schedule get <name> and its task`,
          };
        }
        const counts = store.counts();
        return {
          status: "ok",
          message: `${formatCount(store.size, "task")} (${counts.queued} queued, ${counts.running} running, ${counts.blocked} blocked); worker ${worker.busy}/${worker.concurrency} busy`,
        };
      },
    },
    statusSection: () => {
      const v = queueStatsValue(store, worker, Date.now());
      return {
        storeLoaded: store.closedBecause === undefined,
        workerAlive: v.workerAlive,
        countsByState: v.counts,
        total: v.total,
        capacity: v.capacity,
        oldestQueuedAgeMs: BigInt(v.oldestQueuedAgeMs ?? 0),
        workerSlotsBusy: v.workerSlotsBusy,
        workerSlotsTotal: v.workerSlotsTotal,
        leasesRescued: BigInt(v.leasesRescued),
        recentEvents: events.list().map((e) => ({ time: timestampFromMs(e.timeMs), text: e.text, taskId: e.taskId })),
        schedules: schedules.list().map((sc) => {
          const v = summarizeSchedule(sc, (id) => store.get(id)?.state, Date.now());
          return {
            name: v.name,
            rule: v.rule,
            enabled: v.enabled,
            ...(v.nextDueMs !== undefined ? { nextDue: timestampFromMs(v.nextDueMs) } : {}),
            lastOutcome: v.lastOutcome,
            lastRunFailed: v.lastRunFailed,
          };
        }),
      };
    },
    async close(drainMs: number) {
      if (closed) return;
      clearInterval(retentionTimer);
      await scheduler.stop();
      await worker.stop(drainMs);
      closed = true;
      await store.close();
    },
  };
}
