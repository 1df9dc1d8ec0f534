/**
 * The numbers operators alert on, for Prometheus: RPCs, tasks, logs, backups, updates, health
 * and the process, named and labelled by Prometheus conventions (`cara_` prefix, base units,
 * `_total` counters, bounded label sets: never a task id or payload text).
 *
 * Built on prom-client (the Prometheus client for Node that most Node services use; it renders
 * both the text format and OpenMetrics, and its default collectors give RSS, file descriptors,
 * event-loop lag and GC). Domain code knows nothing about it: it calls the plain hooks below,
 * and the values that status also shows (task counts, last backup, update state, checks) are
 * read at scrape time from the same objects `cara status` reads, cached for a second so that a
 * scrape costs little.
 */
import client from "prom-client";

export interface MetricSources {
  /** Tasks per state, the oldest queued task's age, worker and store figures (as status shows them). */
  tasks(): {
    counts: Record<string, number>;
    oldestQueuedAgeMs: number | undefined;
    leasesRescued: number;
    workerBusy: number;
    workerSlots: number;
    storeBytes: number;
  };
  /** The last successful backup (status' backup section). */
  lastBackup(): Promise<{ atMs: number; bytes?: number } | undefined>;
  /** The update transaction and rollback marker (status' update section). */
  update(): Promise<{ state: string; phase: string; updatedAtMs?: number; rolledBackAtMs?: number; lastCheckAtMs?: number }>;
  /** Every health check's verdict. */
  checks(): Promise<{ name: string; status: "ok" | "warn" | "fail" }[]>;
  /** Records logged by level, open FollowLogs streams, and records dropped for slow followers (since start). */
  logs(): { byLevel: Readonly<Record<string, number>>; followers: number; dropped: number };
  version: string;
  /** Every schedule's last run (name, time, whether it failed). */
  schedules(): { name: string; lastRunAtMs?: number; lastRunFailed: boolean }[];
  /** The payload kinds the worker runs (a bounded label set). */
  taskKinds: readonly string[];
}

const TASK_STATES = ["queued", "running", "blocked", "retry_wait", "done", "failed", "cancelled"] as const;
const CHECK_STATUSES = ["ok", "warn", "fail"] as const;
/** The transaction's states (src/update/transaction.ts), plus none and an unreadable (corrupt) file. */
const UPDATE_STATES = ["none", "in_progress", "applied", "failed", "corrupt"] as const;

/** Seconds buckets for RPCs and task attempts: 1 ms to 5 minutes. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export class ServerMetrics {
  private readonly text = new client.Registry();
  private readonly open = new client.Registry<client.OpenMetricsContentType>();
  private readonly rpcRequests;
  private readonly rpcDuration;
  private readonly rpcInFlight;
  private readonly authFailures;
  private readonly rateLimited;
  private readonly attempts;
  private readonly attemptDuration;
  private readonly fsync;
  private readonly operations;
  private readonly operationFailures;
  private readonly operationDuration;

  constructor(sources: MetricSources) {
    this.open.setContentType(client.openMetricsContentType);
    const registers = [this.text, this.open] as client.Registry[];
    // In-memory figures are read at scrape time (cached for a second); the ones that touch the
    // disk (health checks, the update transaction, the last backup) are refreshed in the
    // background every few seconds, so a scrape never waits for I/O.
    const cached = <T>(ttlMs: number, read: () => T) => {
      let at = -Infinity;
      let value: T | undefined;
      return () => {
        if (value === undefined || performance.now() - at > ttlMs) {
          value = read();
          at = performance.now();
        }
        return value;
      };
    };
    const tasks = cached(1_000, () => sources.tasks());
    const checks = this.background(() => sources.checks(), [] as Awaited<ReturnType<MetricSources["checks"]>>);
    const update = this.background(() => sources.update(), { state: "none", phase: "" } as Awaited<ReturnType<MetricSources["update"]>>);
    const lastBackup = this.background(() => sources.lastBackup(), undefined as Awaited<ReturnType<MetricSources["lastBackup"]>>);

    new client.Gauge({ name: "cara_build_info", help: "The running cara version (always 1).", labelNames: ["version"], registers }).set(
      { version: sources.version },
      1,
    );

    this.rpcRequests = new client.Counter({
      name: "cara_rpc_requests_total",
      help: "RPCs answered, by service, method, protocol and status code.",
      labelNames: ["service", "method", "protocol", "code"],
      registers,
    });
    this.rpcDuration = new client.Histogram({
      name: "cara_rpc_duration_seconds",
      help: "Time to answer a unary RPC.",
      labelNames: ["service", "method"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.rpcInFlight = new client.Gauge({ name: "cara_rpc_in_flight", help: "RPCs being answered now (streams included).", registers });
    this.authFailures = new client.Counter({
      name: "cara_auth_failures_total",
      help: "RPCs refused for a missing, malformed or wrong token.",
      labelNames: ["reason"],
      registers,
    });
    this.rateLimited = new client.Counter({
      name: "cara_auth_rate_limited_total",
      help: "RPCs refused because the client failed authentication too often.",
      registers,
    });

    new client.Gauge({
      name: "cara_tasks",
      help: "Tasks in the store, by state.",
      labelNames: ["state"],
      registers,
      async collect() {
        const t = await tasks();
        for (const s of TASK_STATES) this.set({ state: s }, t.counts[s] ?? 0);
      },
    });
    new client.Gauge({
      name: "cara_task_oldest_queued_age_seconds",
      help: "Age of the oldest queued task (0 when none is queued).",
      registers,
      async collect() {
        this.set(((await tasks()).oldestQueuedAgeMs ?? 0) / 1000);
      },
    });
    new client.Gauge({
      name: "cara_task_worker_busy_slots",
      help: "Attempts running now.",
      registers,
      async collect() {
        this.set((await tasks()).workerBusy);
      },
    });
    new client.Gauge({
      name: "cara_task_worker_slots",
      help: "Attempts that may run at once (tasks.concurrency).",
      registers,
      async collect() {
        this.set((await tasks()).workerSlots);
      },
    });
    new client.Counter({
      name: "cara_task_lease_rescues_total",
      help: "Attempts abandoned past their deadline and rescued to retry_wait.",
      registers,
      async collect() {
        const v = (await tasks()).leasesRescued;
        this.reset();
        this.inc(v);
      },
    });
    new client.Gauge({
      name: "cara_task_store_bytes",
      help: "Bytes of the task store on disk (queue.json and its journal).",
      registers,
      async collect() {
        this.set((await tasks()).storeBytes);
      },
    });
    this.attempts = new client.Counter({
      name: "cara_task_attempts_total",
      help: "Task attempts finished, by payload kind and outcome (done, retry, blocked, failed).",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.attemptDuration = new client.Histogram({
      name: "cara_task_attempt_duration_seconds",
      help: "Time one task attempt ran, by payload kind.",
      labelNames: ["kind"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.fsync = new client.Histogram({
      name: "cara_task_journal_fsync_duration_seconds",
      help: "Time to write and fsync one batch of task changes (group commit).",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });

    new client.Counter({
      name: "cara_log_records_total",
      help: "Log records written, by level.",
      labelNames: ["level"],
      registers,
      collect() {
        this.reset();
        for (const [level, n] of Object.entries(sources.logs().byLevel)) this.inc({ level }, n);
      },
    });
    new client.Gauge({
      name: "cara_log_follow_streams",
      help: "FollowLogs streams open now.",
      registers,
      collect() {
        this.set(sources.logs().followers);
      },
    });
    new client.Counter({
      name: "cara_log_dropped_records_total",
      help: "Log records skipped for followers that read too slowly.",
      registers,
      collect() {
        this.reset();
        this.inc(sources.logs().dropped);
      },
    });

    new client.Gauge({
      name: "cara_backup_last_success_timestamp_seconds",
      help: "When the last backup of this deployment was written (0: never).",
      registers,
      async collect() {
        this.set(((await lastBackup())?.atMs ?? 0) / 1000);
      },
    });
    new client.Gauge({
      name: "cara_backup_last_size_bytes",
      help: "Size of the last backup archive written by this server (0: none yet).",
      registers,
      async collect() {
        this.set((await lastBackup())?.bytes ?? 0);
      },
    });
    this.operations = new client.Counter({
      name: "cara_backup_operations_total",
      help: "Backups and restores finished, by operation (backup, restore).",
      labelNames: ["operation"],
      registers,
    });
    this.operationFailures = new client.Counter({
      name: "cara_backup_failures_total",
      help: "Backups and restores that failed or were refused, by operation.",
      labelNames: ["operation"],
      registers,
    });
    this.operationDuration = new client.Histogram({
      name: "cara_backup_duration_seconds",
      help: "Time a backup or restore took, by operation.",
      labelNames: ["operation"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
      registers,
    });

    new client.Gauge({
      name: "cara_update_transaction_state",
      help: "The update transaction's state (1 for the current one; none: no transaction).",
      labelNames: ["state"],
      registers,
      async collect() {
        const u = await update();
        for (const s of UPDATE_STATES) this.set({ state: s }, u.state === s ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "cara_update_transaction_updated_timestamp_seconds",
      help: "When the update transaction last changed phase (0: no transaction).",
      registers,
      async collect() {
        this.set(((await update()).updatedAtMs ?? 0) / 1000);
      },
    });
    new client.Gauge({
      name: "cara_update_last_check_timestamp_seconds",
      help: "When this server last checked for an update (0: not since start).",
      registers,
      async collect() {
        this.set(((await update()).lastCheckAtMs ?? 0) / 1000);
      },
    });
    new client.Gauge({
      name: "cara_update_last_rollback_timestamp_seconds",
      help: "When the launcher last rolled back a version that never became ready (0: never).",
      registers,
      async collect() {
        this.set(((await update()).rolledBackAtMs ?? 0) / 1000);
      },
    });

    new client.Gauge({
      name: "cara_schedule_last_run_timestamp_seconds",
      help: "When each schedule last ran (0: not yet), by schedule name.",
      labelNames: ["schedule"],
      registers,
      collect() {
        this.reset();
        for (const sc of sources.schedules()) this.set({ schedule: sc.name }, (sc.lastRunAtMs ?? 0) / 1000);
      },
    });
    new client.Gauge({
      name: "cara_schedule_last_run_failed",
      help: "1 when a schedule's last run failed (its task could not be created, or ended failed or blocked).",
      labelNames: ["schedule"],
      registers,
      collect() {
        this.reset();
        for (const sc of sources.schedules()) this.set({ schedule: sc.name }, sc.lastRunFailed ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "cara_health_check_status",
      help: "Each health check's verdict (1 for the current status of the check).",
      labelNames: ["check", "status"],
      registers,
      async collect() {
        for (const c of await checks()) for (const s of CHECK_STATUSES) this.set({ check: c.name, status: s }, c.status === s ? 1 : 0);
      },
    });
    // Series of small, known label sets exist from the start at 0, so alerts and dashboards see
    // "none yet" rather than nothing.
    for (const reason of ["missing", "malformed", "mismatch"]) this.authFailures.inc({ reason }, 0);
    for (const operation of ["backup", "restore"]) {
      this.operations.inc({ operation }, 0);
      this.operationFailures.inc({ operation }, 0);
      this.operationDuration.zero({ operation });
    }
    for (const kind of sources.taskKinds) {
      for (const outcome of ["done", "retry", "blocked", "failed"]) this.attempts.inc({ kind, outcome }, 0);
      this.attemptDuration.zero({ kind });
    }
    for (const registry of registers) {
      client.collectDefaultMetrics({ prefix: "cara_", register: registry });
      // Gauges named like counters (promtool refuses them), and the lag probe that makes every
      // scrape wait for a turn of the event loop (the p50/p90/p99 lag from Node's own histogram
      // stay, and cost nothing at scrape time).
      for (const name of [
        "cara_nodejs_active_handles_total",
        "cara_nodejs_active_requests_total",
        "cara_nodejs_active_resources_total",
        "cara_nodejs_eventloop_lag_seconds",
      ])
        registry.removeSingleMetric(name);
    }
  }

  private readonly refreshers: (() => Promise<void>)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private firstRefresh: Promise<void> | undefined;

  /** A value read in the background (see the constructor); the getter returns the latest one. */
  private background<T>(read: () => Promise<T>, initial: T): () => Promise<T> {
    let value = initial;
    this.refreshers.push(async () => {
      value = await read().catch(() => value);
    });
    return async () => {
      this.firstRefresh ??= this.refresh();
      await this.firstRefresh;
      return value;
    };
  }

  private refresh(): Promise<void> {
    return Promise.all(this.refreshers.map((r) => r())).then(() => undefined);
  }

  /** Keeps the disk-backed values fresh (every `everyMs`, 5 s by default) until stop(). */
  start(everyMs = 5_000): void {
    this.firstRefresh ??= this.refresh();
    this.timer ??= setInterval(() => void this.refresh(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  // ---- hooks the server and the domains call ----

  /** Starts timing an RPC; the returned function records its end with the status code (lower-case name). */
  rpcStarted(service: string, method: string, protocol: string, unary: boolean): (code: string) => void {
    const started = performance.now();
    this.rpcInFlight.inc();
    let ended = false;
    return (code) => {
      if (ended) return;
      ended = true;
      this.rpcInFlight.dec();
      this.rpcRequests.inc({ service, method, protocol, code });
      if (unary) this.rpcDuration.observe({ service, method }, (performance.now() - started) / 1000);
    };
  }

  authFailed(reason: string): void {
    this.authFailures.inc({ reason });
  }

  authRateLimited(): void {
    this.rateLimited.inc();
  }

  taskAttempt(kind: string, outcome: string, ms: number): void {
    this.attempts.inc({ kind, outcome });
    this.attemptDuration.observe({ kind }, ms / 1000);
  }

  journalSynced(ms: number): void {
    this.fsync.observe(ms / 1000);
  }

  backupOperation(operation: "backup" | "restore", ok: boolean, ms: number): void {
    if (ok) this.operations.inc({ operation });
    else this.operationFailures.inc({ operation });
    this.operationDuration.observe({ operation }, ms / 1000);
  }

  /** The exposition, in OpenMetrics when the scraper asks for it, else the Prometheus text format. */
  async render(accept: string | undefined): Promise<{ contentType: string; body: string }> {
    const registry = accept?.includes("application/openmetrics-text") ? this.open : this.text;
    return { contentType: registry.contentType, body: await registry.metrics() };
  }
}
