/**
 * The task store on PostgreSQL, for deployments where several cara servers share one queue.
 *
 * Driver: `pg` (node-postgres). It is the most used PostgreSQL client for Node, pure JavaScript
 * (no native build, nothing run at install), with a connection pool, `LISTEN/NOTIFY` on a plain
 * client, and parameterized queries; its few dependencies are its own packages.
 *
 * Durability: every mutation is one transaction and resolves after COMMIT. Reads are served from
 * a mirror of the table kept in memory: it takes this store's own changes after they commit and
 * other servers' changes when their NOTIFY arrives (the notice carries the row, or names it to be
 * read back; the newest `version` wins); a slow resync compares the table with the mirror as a
 * safety net for lost notices.
 */
import { randomInt, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import pg from "pg";
import {
  claimOrder,
  claimTransition,
  dueAt,
  orderedRecord,
  rescueTransition,
  recordFromDisk,
  TaskNotFoundError,
  TASK_STATES,
  type TaskRecord,
  type TaskStateName,
} from "../model.js";
import {
  DEFAULT_CAPACITY,
  DEFAULT_RETENTION_MS,
  TaskQueueFullError,
  TaskStoreCorruptError,
  TaskStoreWriteError,
  newTaskRecord,
  type TaskInit,
  type TaskStore,
} from "../task-store.js";
import { ClaimableBound } from "../claimable-bound.js";
import { TaskDatabaseError } from "./errors.js";
import { attemptTimeoutMs } from "../worker.js";
import { migrate, schemaVersion } from "./migrate.js";
import { redactUrl, scrub } from "./redact.js";
import { createNotices, plainNotices, readNotice, rowNotices } from "./create-notices.js";
import { ROOM_SHARDS } from "./migrations.js";
import { CHANGES_CHANNEL, CREATE_BEGIN, columns, INSERT_IF_ROOM_SQL, LOCK_ROOM_SQL, SHARE_ROOM_SQL } from "./rows.js";
import { readAllTasks, replaceAllTasks } from "./table-copy.js";
import { failedWhileCommitting, inTransaction, markCommitting } from "./transaction.js";

export { CHANGES_CHANNEL };
const CLOSED_FOR_SHUTDOWN = "the task store is closed (the server is shutting down)";
const TERMINAL_SQL = "('done', 'failed', 'cancelled')";

export interface PgTaskStoreOptions {
  /** postgres://user:password@host:port/database (never logged; the password is redacted in messages). */
  url: string;
  capacity?: number;
  /** Terminal tasks older than this are removed (default 30 days; 0 keeps them). */
  retentionMs?: number;
  /** Connections in the pool (default 10), besides the one that listens. */
  poolSize?: number;
  /** Time past an attempt's deadline before its lease ends and any server may rescue it (default 5 s). */
  leaseGraceMs?: number;
  /** How often the mirror is compared with the table, in case a notice was lost (default 10 s). */
  resyncMs?: number;
  now?: () => number;
  warn?: (message: string) => void;
}

export { TaskDatabaseError };

/** What the `database` health check reports: schema version and connection-pool use. */
export interface DatabaseProbe {
  version: number;
  /** Connections open in the pool (in use + idle), of at most `max`. */
  total: number;
  idle: number;
  /** Callers waiting for a connection. */
  waiting: number;
  max: number;
}

/**
 * The create's insert as a prepared statement (parsed once per connection): parsing and planning
 * its text was the largest part of the database's own work per create transaction.
 */
const PREPARED_INSERT_IF_ROOM = { name: "cara_insert_if_room", text: INSERT_IF_ROOM_SQL };

/** Most creates one group-commit transaction takes (CreateTasks' own limit). */
const MAX_CREATE_BATCH = 1000;

interface PendingCreate {
  init: TaskInit;
  resolve(result: { task: TaskRecord; created: boolean }): void;
  reject(err: unknown): void;
}

/** A query failed (as opposed to a domain rule refusing the change); `cause` is the driver's error. */
class QueryFailed extends Error {}

/**
 * The connection of a failure that must not go back to the pool: the database ended its session
 * (FATAL or PANIC, e.g. its backend was terminated). The message arrives before the socket closes,
 * so the pool would still take the client as usable and hand it to the next query, which then
 * fails too. Other failures leave the session usable, or are seen by the pool itself.
 */
function sessionEnded(err: unknown): Error | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (!(e instanceof pg.DatabaseError)) continue;
    // SQLSTATE, not only the severity, which the server may send translated (lc_messages):
    // class 08 is a connection exception, 57P0x an operator or crash shutdown.
    if (e.severity === "FATAL" || e.severity === "PANIC" || e.code?.startsWith("08") || e.code?.startsWith("57P")) return e;
  }
  return undefined;
}

/** A write whose COMMIT failed: the database may or may not have kept it (never replayed). */
class CommitOutcomeUnknownWriteError extends TaskStoreWriteError {
  /** Marks the failure as one at COMMIT (see failedWhileCommitting). */
  readonly committing = true;
  constructor(
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}

/** No connection to the database could be had: nothing was sent (a batch is not run one by one then). */
class UnreachableError extends TaskStoreWriteError {}

/** What one create transaction committed (applied to the mirror after COMMIT). */
interface CreateOutcome {
  results: { task: TaskRecord; created: boolean }[];
  evicted: string[];
  versions: bigint[];
  existing: { rec: TaskRecord; version: bigint }[];
  fresh: TaskRecord[];
}

/** What a create of a batch whose COMMIT failed is told: it may exist, check before creating it again. */
function commitUnknownMessage(url: string, init: TaskInit, cause: unknown): string {
  const check =
    init.idempotencyKey !== undefined
      ? `create it again with the same idempotency key '${init.idempotencyKey}' (it is not created twice)`
      : "check with `cara task list` before creating it again (an idempotency key makes retries safe)";
  return `the task database ${redactUrl(url)} failed while committing (${cause instanceof Error ? cause.message : String(cause)}); the outcome is unknown: the task may or may not have been created; ${check}`;
}

interface Row {
  version: string;
  record: unknown;
}

interface Entry {
  rec: TaskRecord;
  version: bigint;
  /** The value of `applied` when this entry was set (see resync). */
  at: number;
}

export class PgTaskStore implements TaskStore {
  readonly capacity: number;
  readonly retentionMs: number;
  readonly events = new EventEmitter();
  evicted = 0;
  retentionRemoved = 0;
  /** Running tasks are left to their leases: another server may be running them. */
  readonly recoveredOnOpen = 0;
  /** This store's name in its notices (it skips its own). */
  readonly origin = randomUUID();
  /**
   * The shard of cara_task_room this store's creates try first (rows.ts): servers that pick
   * different ones do not wait for each other's commits; a busy or full one is passed over.
   */
  private readonly roomShard = randomInt(ROOM_SHARDS);
  private readonly ownNoticePrefix = `${this.origin} `;

  private readonly url: string;
  private readonly pool: pg.Pool;
  private readonly poolMax: number;
  private listener: pg.Client | undefined;
  private readonly mirror = new Map<string, Entry>();
  private readonly claimable = new ClaimableBound();
  /** Counts applications to the mirror: an entry older than a read began was committed before it. */
  private applied = 0;
  private readonly fetchQueue = new Set<string>();
  /** The sum of the mirror's versions (see resync). */
  private versionSum = 0n;
  private resyncs = 0;
  /** A change could not be read back: the next resync compares every row. */
  private readBackFailed = false;
  private fetching = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs = 500;
  private readonly resyncMs: number;
  private readonly leaseGraceMs: number;
  /** Running tasks rescued from ended leases by this store. */
  leasesRescued = 0;
  /** Rows read back after other servers' notices (a create's rows come with its notice instead). */
  rowsReadBack = 0;
  /** Resyncs that compared every row (see resync). */
  rowByRowResyncs = 0;
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private closed = false;
  private closedReason = CLOSED_FOR_SHUTDOWN;
  private lastWriteError: string | undefined;
  /** Creates waiting for the next create transaction (see create). */
  private readonly pendingCreates: PendingCreate[] = [];
  private creating = false;

  private constructor(options: PgTaskStoreOptions) {
    this.url = options.url;
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS;
    this.resyncMs = options.resyncMs ?? 10_000;
    this.leaseGraceMs = options.leaseGraceMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.warn = options.warn ?? (() => undefined);
    this.events.setMaxListeners(0);
    this.poolMax = options.poolSize ?? 10;
    this.pool = new pg.Pool({ connectionString: options.url, max: this.poolMax, connectionTimeoutMillis: 10_000, application_name: "cara" });
    // An idle connection that breaks must not crash the process; the next query reconnects.
    this.pool.on("error", (err) => this.warn(`task database connection lost: ${this.scrub(err.message)}`));
    // A connection that breaks while it is checked out (the database restarted, its backend was
    // terminated) emits 'error' on its client, which the pool only listens for while the client is
    // idle: unheard, it took the whole server down. The query in flight fails with that error and
    // is answered where it was made (test/tasks/pg-store-group-commit.test.ts).
    this.pool.on("connect", (client) => client.on("error", () => undefined));
  }

  /**
   * Connects, applies the schema migrations (under an advisory lock), loads the tasks and starts
   * listening for changes. An unreachable database or an unreadable row fails the open with a
   * message naming the database (password redacted) and the way out.
   */
  static async open(options: PgTaskStoreOptions): Promise<PgTaskStore> {
    const store = new PgTaskStore(options);
    try {
      const client = await store.pool.connect().catch((err: Error) => {
        throw new TaskDatabaseError(
          `cannot reach the task database ${redactUrl(options.url)}: ${store.scrub(err.message)}. Check that PostgreSQL runs there and that tasks.postgres.url (or CARAPACE_DATABASE_URL) is right, then start again`,
        );
      });
      try {
        await migrate(client);
      } catch (err) {
        throw new TaskDatabaseError(`the task database ${redactUrl(options.url)} could not be prepared: ${store.scrub((err as Error).message)}`);
      } finally {
        client.release();
      }
      await store.listen();
      await store.load();
      store.scheduleResync();
      await store.sweepRetention();
      return store;
    } catch (err) {
      await store.shutdown();
      throw err;
    }
  }

  private scrub(message: string): string {
    return scrub(message, this.url);
  }

  // ---- reads (durable state only) ----

  get(id: string): TaskRecord | undefined {
    return this.mirror.get(id)?.rec;
  }

  async fetch(id: string): Promise<TaskRecord | undefined> {
    const known = this.mirror.get(id);
    if (known) return known.rec;
    const res = await this.q<Row>(this.pool, "SELECT version, record FROM cara_tasks WHERE id = $1", [id]).catch((err: Error) => {
      throw new TaskStoreWriteError(`cannot read from the task database ${redactUrl(this.url)} (${err.message})`);
    });
    const row = res.rows[0];
    if (!row) return undefined;
    const rec = this.parse(row);
    this.apply(rec, BigInt(row.version));
    return this.mirror.get(id)?.rec ?? rec;
  }

  *all(): IterableIterator<TaskRecord> {
    for (const e of this.mirror.values()) yield e.rec;
  }

  get size(): number {
    return this.mirror.size;
  }

  counts(): Record<TaskStateName, number> {
    const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskStateName, number>;
    for (const e of this.mirror.values()) counts[e.rec.state]++;
    return counts;
  }

  /** The store keeps no files in the state dir. */
  get diskBytes(): number {
    return 0;
  }

  get writeError(): string | undefined {
    return this.lastWriteError;
  }

  get closedBecause(): string | undefined {
    return this.closed ? this.closedReason : undefined;
  }

  // ---- mutations ----

  /**
   * Creates that arrive while another create transaction runs wait and go together in the next
   * one (group commit): creates take one lock across servers and each COMMIT waits for the disk,
   * so one transaction per create would cap a deployment at one create per fsync. Each still
   * resolves after the COMMIT that holds it, with the same result as alone: keys repeated within a
   * batch resolve to the first (as in sequence), and a batch that fails before its COMMIT (queue
   * full, an unusable row, a value the database refuses, a lost connection) is rolled back and its
   * creates are run one by one, so each gets its own answer. A batch whose COMMIT was sent is never
   * run again: when the COMMIT fails, its outcome is unknown and each of its creates is refused
   * saying so.
   */
  create(init: TaskInit): Promise<{ task: TaskRecord; created: boolean }> {
    return new Promise((resolve, reject) => {
      this.pendingCreates.push({ init, resolve, reject });
      if (!this.creating) void this.drainCreates();
    });
  }

  private async drainCreates(): Promise<void> {
    this.creating = true;
    try {
      while (this.pendingCreates.length > 0) {
        const batch = this.pendingCreates.splice(0, MAX_CREATE_BATCH);
        const writeErrorBefore = this.lastWriteError;
        let out: CreateOutcome;
        try {
          out = await this.createTx(batch.map((p) => p.init));
        } catch (err) {
          // No connection, or the store closed: nothing was sent, and no create would fare better alone.
          if (batch.length === 1 || err instanceof UnreachableError || this.closed) {
            for (const p of batch) p.reject(err);
            continue;
          }
          if (failedWhileCommitting(err)) {
            // The COMMIT was sent: the batch may be in the table. Running it again could create
            // every task twice, so each create is told the outcome is unknown.
            for (const p of batch) p.reject(new TaskStoreWriteError(commitUnknownMessage(this.url, p.init, err.cause)));
            continue;
          }
          // Rolled back: nothing of the batch was kept. The creates run one by one and only those
          // that fail alone report a failure (a failure of the batch is not the store's state).
          this.lastWriteError = writeErrorBefore;
          let unreachable: unknown;
          for (const p of batch) {
            if (unreachable !== undefined) {
              p.reject(unreachable);
              continue;
            }
            let one: CreateOutcome;
            try {
              one = await this.createTx([p.init]);
            } catch (e) {
              if (e instanceof UnreachableError) unreachable = e;
              p.reject(e);
              continue;
            }
            p.resolve(one.results[0]!);
            this.applyCreated(one);
          }
          continue;
        }
        // Committed: acknowledged first, whatever applying the changes locally does.
        for (const [i, p] of batch.entries()) p.resolve(out.results[i]!);
        this.applyCreated(out);
      }
    } finally {
      this.creating = false;
    }
  }

  async createMany(inits: TaskInit[]): Promise<{ task: TaskRecord; created: boolean }[]> {
    const out = await this.createTx(inits);
    this.applyCreated(out);
    return out.results;
  }

  /** The creates' transaction; the mirror is left to applyCreated (after COMMIT). */
  private async createTx(inits: TaskInit[]): Promise<CreateOutcome> {
    const now = this.now();
    if (inits.every((i) => i.idempotencyKey === undefined)) {
      // No key to look up: one statement, its own transaction (see insertAlone).
      const fresh = inits.map((i) => newTaskRecord(i, now));
      const versions = await this.insertAlone(fresh);
      if (versions) return { results: fresh.map((task) => ({ task, created: true })), evicted: [], versions, existing: [], fresh };
      // No room: the transaction below makes some, or finds the queue full.
    }
    return this.tx(async (c) => {
      const keys = inits.map((i) => i.idempotencyKey).filter((k): k is string => k !== undefined);
      const existing = new Map<string, { rec: TaskRecord; version: bigint }>();
      if (keys.length > 0) {
        const res = await this.q<Row>(c, "SELECT version, record FROM cara_tasks WHERE idempotency_key = ANY($1::text[])", [keys]);
        for (const row of res.rows) {
          const rec = this.parse(row);
          if (rec.idempotencyKey) existing.set(rec.idempotencyKey, { rec, version: BigInt(row.version) });
        }
      }
      const results: { task: TaskRecord; created: boolean }[] = [];
      const fresh: TaskRecord[] = [];
      const byKey = new Map<string, TaskRecord>();
      for (const init of inits) {
        const key = init.idempotencyKey;
        const known = key !== undefined ? (existing.get(key)?.rec ?? byKey.get(key)) : undefined;
        if (known) {
          results.push({ task: known, created: false });
          continue;
        }
        const task: TaskRecord = newTaskRecord(init, now);
        if (key !== undefined) byKey.set(key, task);
        fresh.push(task);
        results.push({ task, created: true });
      }
      if (fresh.length === 0) return { results, evicted: [], versions: [], existing: [...existing.values()], fresh };
      const inserted = await this.insertIfRoom(c, fresh);
      if (inserted) return { results, evicted: [], versions: inserted, existing: [...existing.values()], fresh };
      // No free shard had room. The oldest finished tasks make way (as in the file store), first
      // as many as the count last committed asks, waiting for rows a removal holds: rows before
      // shards, the order removals take them in. Then every shard is locked (waiting for the
      // creates and removals in progress), so the count is exact: more make way if still needed
      // (now passing over rows others hold: a removal holding them may wait for a shard held
      // here), else the queue is full; the room left is shared out again.
      const evicted: string[] = [];
      const committed = (await this.q<{ n: string | null }>(c, "SELECT sum(n) AS n FROM cara_task_room")).rows[0];
      const guess = fresh.length - (this.capacity - Number(committed?.n ?? 0));
      if (guess > 0) evicted.push(...(await this.evictOldest(c, guess, false)));
      const counted = (await this.q<{ n: string }>(c, LOCK_ROOM_SQL)).rows[0];
      if (!counted) {
        throw new TaskStoreCorruptError(
          `table cara_task_room in the task database ${redactUrl(this.url)} lost rows; put them back with: DELETE FROM cara_task_room; INSERT INTO cara_task_room (shard, n) SELECT g, CASE WHEN g = 0 THEN (SELECT count(*) FROM cara_tasks) ELSE 0 END FROM generate_series(0, ${ROOM_SHARDS - 1}) AS g`,
        );
      }
      const need = fresh.length - (this.capacity - Number(counted.n));
      if (need > 0) evicted.push(...(await this.evictOldest(c, need, true)));
      await this.notify(c, evicted);
      const shared = await this.q(c, SHARE_ROOM_SQL, [this.capacity, fresh.length, this.roomShard]);
      if (shared.rows.length > 0) {
        const versions = await this.insertIfRoom(c, fresh);
        if (versions) return { results, evicted, versions, existing: [...existing.values()], fresh };
      }
      throw new TaskQueueFullError();
    }, CREATE_BEGIN);
  }

  /** Deletes up to `n` of the oldest finished tasks (eviction); returns their ids. */
  private async evictOldest(c: pg.ClientBase, n: number, skipLocked: boolean): Promise<string[]> {
    const gone = await this.q<{ id: string }>(
      c,
      `DELETE FROM cara_tasks WHERE id IN (SELECT id FROM cara_tasks WHERE state IN ${TERMINAL_SQL} ORDER BY updated_at_ms, id LIMIT $1 FOR UPDATE${skipLocked ? " SKIP LOCKED" : ""}) RETURNING id`,
      [n],
    );
    return gone.rows.map((r) => r.id);
  }

  /**
   * Inserts `fresh` if the table has room for all of them and sends their notices, in one
   * statement (INSERT_IF_ROOM_SQL). Returns their versions, or undefined when there was no room
   * (nothing inserted, nothing sent).
   */
  private async insertIfRoom(c: pg.ClientBase, fresh: TaskRecord[]): Promise<bigint[] | undefined> {
    const res = await this.q<{ id: string; version: string }>(c, PREPARED_INSERT_IF_ROOM, this.insertParams(fresh));
    return res.rows.length > 0 ? versionsInOrder(fresh, res.rows) : undefined;
  }

  private insertParams(fresh: TaskRecord[]): unknown[] {
    const cols = columns(fresh);
    const sent = createNotices(this.origin, cols[0] as string[], cols[8] as string[]);
    return [...cols, this.capacity, fresh.length, sent.chunkOf, sent.heads, sent.bodies, sent.plain, this.roomShard];
  }

  /**
   * The usual create (no idempotency key): insertIfRoom's statement alone, as its own transaction,
   * one round trip where BEGIN, the create lock and COMMIT took three (the capacity stays exact:
   * the statement locks a shard of the count and checks it as of the last commit before it). Committed
   * when it answers. When the database answers with an error (severity ERROR, also one raised
   * while committing), the transaction was rolled back: nothing was changed. When the answer is
   * lost (the connection broke, the server stopped: FATAL), it may have committed: the outcome is
   * unknown, and the creates are never run again.
   */
  private async insertAlone(fresh: TaskRecord[]): Promise<bigint[] | undefined> {
    const client = await this.writeConnection();
    let failure: unknown;
    try {
      const res = await client.query<{ id: string; version: string }>({ ...PREPARED_INSERT_IF_ROOM, values: this.insertParams(fresh) });
      this.lastWriteError = undefined;
      return res.rows.length > 0 ? versionsInOrder(fresh, res.rows) : undefined;
    } catch (err) {
      failure = err;
      const reason = this.scrub((err as Error).message);
      if (err instanceof pg.DatabaseError && sessionEnded(err) === undefined) {
        throw this.writeFailed(`a write to the task database ${redactUrl(this.url)} failed (${reason}); nothing was changed`);
      }
      const message = `the task database ${redactUrl(this.url)} failed while committing (${reason}); the change may or may not have been kept: read the task again before retrying`;
      this.lastWriteError = message;
      throw new CommitOutcomeUnknownWriteError(message, new Error(reason));
    } finally {
      client.release(sessionEnded(failure));
    }
  }

  /**
   * Applies committed creates to the mirror. They are already acknowledged: a "change" or
   * "removed" listener that throws is reported (warn) and the other changes are still applied.
   */
  private applyCreated(out: CreateOutcome): void {
    const guarded = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        this.warn(`a task change listener failed (the change is committed): ${(err as Error).message}`);
      }
    };
    for (const id of out.evicted) guarded(() => this.remove(id));
    this.evicted += out.evicted.length;
    for (const e of out.existing) guarded(() => this.apply(e.rec, e.version));
    for (const [i, t] of out.fresh.entries()) guarded(() => this.apply(t, out.versions[i]!));
  }

  async update(id: string, fn: (current: TaskRecord) => TaskRecord): Promise<TaskRecord> {
    const out = await this.tx(async (c) => {
      const res = await this.q<Row>(c, "SELECT version, record FROM cara_tasks WHERE id = $1 FOR UPDATE", [id]);
      const row = res.rows[0];
      if (!row) throw new TaskNotFoundError();
      const current = this.parse(row);
      const next = fn(current);
      if (next === current) return { rec: current, version: BigInt(row.version) };
      const [version] = await this.write(c, [next]);
      await this.notifyRows(c, [next], [version!]);
      return { rec: next, version: version! };
    });
    this.apply(out.rec, out.version);
    return out.rec;
  }

  /**
   * Rescues running tasks whose lease ended (deadline plus grace, set at claim: their server
   * stopped or lost the database; the ids in `skip` are this worker's own and are left to it),
   * then claims due tasks; both under FOR UPDATE SKIP LOCKED, so concurrent claimers never
   * take the same row. Each claim records its lease's end.
   */
  async claimDue(limit: number, now: number, skip: ReadonlySet<string>): Promise<TaskRecord[]> {
    this.assertOpen();
    if (limit <= 0) return [];
    const out = await this.tx(async (c) => {
      const ended = await this.q<Row>(
        c,
        `SELECT version, record FROM cara_tasks
          WHERE state = 'running' AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms < $1) AND NOT (id = ANY($2::text[]))
          FOR UPDATE SKIP LOCKED`,
        [now, [...skip]],
      );
      const rescued = ended.rows.map((row) => rescueTransition(this.parse(row), now));
      if (rescued.length > 0) await this.write(c, rescued);
      const res = await this.q<Row>(
        c,
        `SELECT version, record FROM cara_tasks
          WHERE state IN ('queued', 'retry_wait') AND (next_run_at_ms <= $1 OR (next_run_at_ms IS NULL AND state = 'queued'))
            AND NOT (id = ANY($3::text[]))
          ORDER BY priority DESC, coalesce(next_run_at_ms, created_at_ms), id
          LIMIT $2
          FOR UPDATE SKIP LOCKED`,
        [now, limit, [...skip]],
      );
      const claimed = res.rows.map((row) => claimTransition(this.parse(row), now)).sort(claimOrder);
      const versions = claimed.length > 0 ? await this.write(c, claimed, (t) => now + attemptTimeoutMs(t) + this.leaseGraceMs) : [];
      const stillRescued = rescued.filter((r) => !claimed.some((t) => t.id === r.id));
      const rescuedVersions = stillRescued.length > 0 ? await this.versions(c, stillRescued) : [];
      await this.notifyRows(c, [...stillRescued, ...claimed], [...rescuedVersions, ...versions]);
      return { claimed, versions, rescued: stillRescued, rescuedVersions, rescuedCount: rescued.length };
    });
    for (const [i, t] of out.rescued.entries()) this.apply(t, out.rescuedVersions[i]!);
    for (const [i, t] of out.claimed.entries()) this.apply(t, out.versions[i]!);
    if (out.rescuedCount > 0) {
      this.leasesRescued += out.rescuedCount;
      this.warn(`rescued ${out.rescuedCount} running task(s) whose lease ended (their server stopped or lost the database); they run again`);
    }
    return out.claimed;
  }

  /**
   * Something is due, or a running task's lease ended. A running record was last written by its
   * claim (nothing else writes a task that stays running), so its lease ends at its updatedAtMs
   * plus the attempt's deadline and the grace, as claimDue recorded it. Answered without a walk
   * until that time can have come (ClaimableBound).
   */
  hasClaimable(now: number, skip: ReadonlySet<string>): boolean {
    return this.claimable.hasClaimable(now, skip, this.all(), this.claimableAt);
  }

  /** When `rec` can be claimed: its run-at, or (running) just after its lease ends. */
  private readonly claimableAt = (rec: TaskRecord): number | undefined =>
    rec.state === "running" ? rec.updatedAtMs + attemptTimeoutMs(rec) + this.leaseGraceMs + 1 : dueAt(rec);

  private async versions(c: pg.ClientBase, recs: TaskRecord[]): Promise<bigint[]> {
    const res = await this.q<{ id: string; version: string }>(c, "SELECT id, version FROM cara_tasks WHERE id = ANY($1::text[])", [recs.map((r) => r.id)]);
    return versionsInOrder(recs, res.rows);
  }

  async sweepRetention(): Promise<number> {
    if (this.retentionMs <= 0) return 0;
    const cutoff = this.now() - this.retentionMs;
    const removed = await this.tx(async (c) => {
      const res = await this.q<{ id: string }>(
        c,
        `DELETE FROM cara_tasks WHERE state IN ${TERMINAL_SQL} AND coalesce(finished_at_ms, updated_at_ms) < $1 RETURNING id`,
        [cutoff],
      );
      const ids = res.rows.map((r) => r.id);
      await this.notify(c, ids);
      return ids;
    });
    for (const id of removed) this.remove(id);
    this.retentionRemoved += removed.length;
    return removed.length;
  }

  /** The store has no files in the state dir: nothing to hold. */
  async withWritesHeld<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async suspend(reason = "the task store is paused; retry in a few seconds"): Promise<void> {
    this.closedReason = reason;
    this.closed = true;
  }

  async reopen(): Promise<void> {
    if (!this.closed) return;
    await this.resync();
    this.closed = false;
    this.closedReason = CLOSED_FOR_SHUTDOWN;
  }

  async close(): Promise<void> {
    if (this.closed && this.closedReason === CLOSED_FOR_SHUTDOWN) return;
    this.closed = true;
    this.closedReason = CLOSED_FOR_SHUTDOWN;
    await this.shutdown();
  }

  /**
   * Every task as of one instant (one REPEATABLE READ, READ ONLY transaction): what a backup
   * archives. Works while the store is suspended (a restore's pre-restore backup).
   */
  async snapshot(): Promise<TaskRecord[]> {
    return this.onConnection("read the tasks from", (c) => readAllTasks(c));
  }

  /**
   * Replaces every task with `records` in one transaction, acknowledged after COMMIT; a failure
   * before COMMIT changes nothing, a failure at COMMIT (failedWhileCommitting) may have kept them. Other servers on the database are told (NOTIFY); this store's reads catch up
   * at `reopen()` (it is suspended by the restore that calls this).
   */
  async replaceAll(records: readonly TaskRecord[]): Promise<void> {
    await this.onConnection("replace the tasks in", (c) => replaceAllTasks(c, records, { origin: this.origin }));
  }

  /** Runs `fn` on a pooled connection; a failure names the database (password redacted), never the URL. */
  private async onConnection<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient | undefined;
    let failure: unknown;
    try {
      client = await this.pool.connect();
      return await fn(client);
    } catch (err) {
      failure = err;
      if (failedWhileCommitting(err))
        throw markCommitting(
          new TaskStoreWriteError(
            `cannot ${what} the task database ${redactUrl(this.url)}: it failed while committing (${this.scrub((err.cause as Error).message)}); the change may or may not have been kept`,
          ),
          err.cause,
        );
      throw new TaskStoreWriteError(`cannot ${what} the task database ${redactUrl(this.url)} (${this.scrub((err as Error).message)}); nothing was changed`);
    } finally {
      client?.release(sessionEnded(failure));
    }
  }

  /**
   * One round trip for the `database` health check: the schema version (read on a pooled
   * connection) and the pool's use. Throws a message without the URL's password when the
   * database cannot be reached.
   */
  async probe(): Promise<DatabaseProbe> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new TaskDatabaseError(`cannot reach the task database ${redactUrl(this.url)} (${this.scrub((err as Error).message)})`);
    }
    let failure: unknown;
    try {
      const version = await schemaVersion(client);
      return { version, total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount, max: this.poolMax };
    } catch (err) {
      failure = err;
      throw new TaskDatabaseError(`the task database ${redactUrl(this.url)} failed a query (${this.scrub((err as Error).message)})`);
    } finally {
      client.release(sessionEnded(failure));
    }
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.resyncTimer);
    clearTimeout(this.reconnectTimer);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new TaskStoreWriteError(this.closedReason);
  }

  // ---- transactions ----

  /**
   * Runs `fn` in one transaction (opened with `begin`) and resolves after COMMIT. A domain error
   * thrown by `fn` rolls back and passes through; a database failure becomes TaskStoreWriteError.
   */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, begin = "BEGIN"): Promise<T> {
    const client = await this.writeConnection();
    let failure: unknown;
    try {
      const out = await inTransaction({ query: (sql) => this.q(client, sql) }, () => fn(client), begin);
      this.lastWriteError = undefined;
      return out;
    } catch (err) {
      failure = err;
      if (failedWhileCommitting(err)) {
        const message = `the task database ${redactUrl(this.url)} failed while committing (${(err.cause as Error).message}); the change may or may not have been kept: read the task again before retrying`;
        this.lastWriteError = message;
        throw new CommitOutcomeUnknownWriteError(message, err.cause);
      }
      if (!(err instanceof QueryFailed)) throw err;
      throw this.writeFailed(`a write to the task database ${redactUrl(this.url)} failed (${err.message}); nothing was changed`);
    } finally {
      client.release(sessionEnded(failure));
    }
  }

  /** A pooled connection for a write; none to be had is UnreachableError (nothing was sent). */
  private async writeConnection(): Promise<pg.PoolClient> {
    this.assertOpen();
    try {
      return await this.pool.connect();
    } catch (err) {
      const message = `cannot reach the task database ${redactUrl(this.url)} (${this.scrub((err as Error).message)}); nothing was changed`;
      this.lastWriteError = message;
      throw new UnreachableError(message);
    }
  }

  private writeFailed(message: string): TaskStoreWriteError {
    this.lastWriteError = message;
    return new TaskStoreWriteError(message);
  }

  private async q<R extends pg.QueryResultRow = pg.QueryResultRow>(
    c: pg.ClientBase | pg.Pool,
    sql: string | { name: string; text: string },
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await (typeof sql === "string" ? c.query<R>(sql, params) : c.query<R>({ ...sql, values: params }));
    } catch (err) {
      throw new QueryFailed(this.scrub((err as Error).message), { cause: err });
    }
  }

  /** Updates rows; `lease` gives the lease end of a claimed task (others keep theirs while running). */
  private async write(c: pg.ClientBase, recs: TaskRecord[], lease?: (t: TaskRecord) => number): Promise<bigint[]> {
    const cols = [...columns(recs), recs.map((r) => (lease ? lease(r) : null))];
    const res = await this.q<{ version: string }>(
      c,
      `UPDATE cara_tasks t SET state = u.state, priority = u.priority, next_run_at_ms = u.next_run_at_ms, created_at_ms = u.created_at_ms,
              updated_at_ms = u.updated_at_ms, finished_at_ms = u.finished_at_ms, idempotency_key = u.idempotency_key, record = u.record,
              lease_expires_at_ms = CASE WHEN u.state = 'running' THEN coalesce(u.lease_expires_at_ms, t.lease_expires_at_ms) END,
              version = nextval('cara_task_version')
         FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::jsonb[], $10::bigint[])
              AS u(id, state, priority, next_run_at_ms, created_at_ms, updated_at_ms, finished_at_ms, idempotency_key, record, lease_expires_at_ms)
        WHERE t.id = u.id
        RETURNING t.id, t.version`,
      cols,
    );
    return versionsInOrder(recs, res.rows as unknown as { id: string; version: string }[]);
  }

  /**
   * Tells the other servers about written rows, carrying them (rowNotices), in one round trip
   * (delivered at commit, dropped on rollback).
   */
  private async notifyRows(c: pg.ClientBase, recs: readonly TaskRecord[], versions: readonly bigint[]): Promise<void> {
    if (recs.length === 0) return;
    const rows = recs.map((r, i) => ({ id: r.id, version: versions[i]!, record: JSON.stringify(orderedRecord(r)) }));
    await this.q(c, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", [CHANGES_CHANNEL, rowNotices(this.origin, rows)]);
  }

  /** Tells the other servers which ids changed (removals: they read them back). */
  private async notify(c: pg.ClientBase, ids: string[]): Promise<void> {
    for (const payload of plainNotices(this.origin, ids)) await this.q(c, "SELECT pg_notify($1, $2)", [CHANGES_CHANNEL, payload]);
  }

  /** A row's record, validated as queue.json's are; a row that cannot be used fails closed. */
  private parse(row: Row): TaskRecord {
    const rec = recordFromDisk(row.record);
    if (typeof rec === "string") {
      throw new TaskStoreCorruptError(
        `a row of table cara_tasks in the task database ${redactUrl(this.url)} cannot be used (${rec}); repair or delete that row, or restore the database from a backup`,
      );
    }
    return rec;
  }

  // ---- the mirror ----

  private apply(rec: TaskRecord, version: bigint): void {
    const cur = this.mirror.get(rec.id);
    if (cur && cur.version >= version) return;
    this.mirror.set(rec.id, { rec, version, at: ++this.applied });
    this.versionSum += version - (cur?.version ?? 0n);
    this.claimable.lower(this.claimableAt(rec));
    this.events.emit("change", rec);
  }

  private remove(id: string): void {
    const cur = this.mirror.get(id);
    if (!cur) return;
    this.mirror.delete(id);
    this.versionSum -= cur.version;
    this.applied++;
    this.events.emit("removed", id);
  }

  private async load(): Promise<void> {
    const res = await this.q<Row>(this.pool, "SELECT version, record FROM cara_tasks").catch((err: Error) => {
      throw new TaskDatabaseError(`cannot read the tasks from ${redactUrl(this.url)}: ${err.message}`);
    });
    for (const row of res.rows) {
      const rec = this.parse(row);
      const version = BigInt(row.version);
      const cur = this.mirror.get(rec.id);
      this.mirror.set(rec.id, { rec, version, at: ++this.applied });
      this.versionSum += version - (cur?.version ?? 0n);
    }
  }

  /** Reads back the rows named by notices (batched) and applies them; a missing row was removed. */
  private async fetchChanged(): Promise<void> {
    if (this.fetching) return;
    this.fetching = true;
    try {
      while (this.fetchQueue.size > 0) {
        const ids = [...this.fetchQueue].slice(0, 1000);
        for (const id of ids) this.fetchQueue.delete(id);
        const before = this.applied;
        this.rowsReadBack += ids.length;
        const res = await this.q<Row>(this.pool, "SELECT version, record FROM cara_tasks WHERE id = ANY($1::text[])", [ids]);
        const found = new Set<string>();
        for (const row of res.rows) {
          const rec = recordFromDisk(row.record);
          if (typeof rec === "string") {
            this.warn(`skipped a row of cara_tasks that cannot be used (${rec})`);
            continue;
          }
          found.add(rec.id);
          this.apply(rec, BigInt(row.version));
        }
        for (const id of ids) if (!found.has(id) && (this.mirror.get(id)?.at ?? Infinity) <= before) this.remove(id);
      }
    } catch (err) {
      this.readBackFailed = true;
      this.warn(`could not read changed tasks from the task database (the next resync catches up): ${(err as Error).message}`);
    } finally {
      this.fetching = false;
    }
  }

  /**
   * Compares every row's version with the mirror and reads back what differs: after a change could
   * not be read back, after the change notices stopped, after a restore, and every sixth periodic
   * resync (once a minute by default). The periodic ones in between (`full` false) compare only
   * the table's row count and sum of versions with the mirror's: one row instead of every id (with
   * many tasks, reading every id every 10 s on every server cost more than anything else the store
   * did at rest). A missed change makes them differ: versions only grow and are never reused, so
   * a missed write raises the sum, a missed create or removal changes the count too. When changes
   * were applied while the query ran they cannot be compared, and the next resync does.
   */
  private async resync(full = true): Promise<void> {
    const before = this.applied;
    if (!full && !this.readBackFailed) {
      const sumBefore = this.versionSum;
      const sizeBefore = this.mirror.size;
      const res = await this.q<{ n: string; s: string }>(this.pool, "SELECT count(*)::text AS n, coalesce(sum(version), 0)::text AS s FROM cara_tasks");
      const row = res.rows[0]!;
      if (this.applied !== before || (BigInt(row.n) === BigInt(sizeBefore) && BigInt(row.s) === sumBefore)) return;
    }
    const res = await this.q<{ id: string; version: string }>(this.pool, "SELECT id, version FROM cara_tasks");
    this.readBackFailed = false;
    this.rowByRowResyncs++;
    const seen = new Set<string>();
    for (const row of res.rows) {
      seen.add(row.id);
      const cur = this.mirror.get(row.id);
      if (!cur || cur.version < BigInt(row.version)) this.fetchQueue.add(row.id);
    }
    for (const [id, e] of this.mirror) if (!seen.has(id) && e.at <= before) this.remove(id);
    await this.fetchChanged();
  }

  private scheduleResync(): void {
    clearTimeout(this.resyncTimer);
    if (this.closed && this.closedReason === CLOSED_FOR_SHUTDOWN) return;
    this.resyncTimer = setTimeout(() => {
      void this.resync(++this.resyncs % 6 === 0)
        .catch((err: Error) => this.warn(`task database resync failed (will retry): ${err.message}`))
        .finally(() => this.scheduleResync());
    }, this.resyncMs);
    this.resyncTimer.unref();
  }

  /** A dedicated connection LISTENs for changes; when it breaks it reconnects and resyncs. */
  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: "cara-listen", connectionTimeoutMillis: 10_000 });
    client.on("notification", (msg) => {
      // This store's own notices: already applied (checked before reading the rest).
      if (msg.channel !== CHANGES_CHANNEL || !msg.payload || msg.payload.startsWith(this.ownNoticePrefix)) return;
      const notice = readNotice(msg.payload);
      if (!notice || notice.origin === this.origin) return;
      for (const row of notice.rows) {
        const rec = recordFromDisk(parseJson(row.record));
        // A row that cannot be used here is read back (and then skipped with a warning, as any).
        if (typeof rec === "string" || rec.id !== row.id) {
          this.fetchQueue.add(row.id);
          continue;
        }
        // Called from the socket's data handler: a listener that throws must not end the process.
        try {
          this.apply(rec, BigInt(row.version));
        } catch (err) {
          this.warn(`a task change listener failed (the change is applied): ${(err as Error).message}`);
        }
      }
      for (const id of notice.ids) this.fetchQueue.add(id);
      if (this.fetchQueue.size > 0) void this.fetchChanged();
    });
    const lost = (err?: Error) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.end().catch(() => undefined);
      if (this.closed && this.closedReason === CLOSED_FOR_SHUTDOWN) return;
      this.warn(`task database change notices stopped (${err ? this.scrub(err.message) : "connection ended"}); reconnecting`);
      this.reconnectTimer = setTimeout(() => void this.relisten(), this.reconnectDelayMs);
      this.reconnectTimer.unref();
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 30_000);
    };
    client.on("error", lost);
    client.on("end", () => lost());
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (err) {
      client.end().catch(() => undefined);
      throw new TaskDatabaseError(`cannot listen for task changes on ${redactUrl(this.url)}: ${this.scrub((err as Error).message)}`);
    }
    this.listener = client;
  }

  private async relisten(): Promise<void> {
    if (this.closed && this.closedReason === CLOSED_FOR_SHUTDOWN) return;
    try {
      await this.listen();
      this.reconnectDelayMs = 500;
      await this.resync();
    } catch (err) {
      this.warn(`${(err as Error).message}; retrying`);
      this.reconnectTimer = setTimeout(() => void this.relisten(), this.reconnectDelayMs);
      this.reconnectTimer.unref();
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 30_000);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function versionsInOrder(recs: TaskRecord[], rows: { id: string; version: string }[]): bigint[] {
  const byId = new Map(rows.map((r) => [r.id, BigInt(r.version)]));
  return recs.map((r) => {
    const v = byId.get(r.id);
    if (v === undefined) throw new QueryFailed(`task ${r.id} was not written`);
    return v;
  });
}
