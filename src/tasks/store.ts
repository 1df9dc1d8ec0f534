import { EventEmitter } from "node:events";
import { constants } from "node:fs";
import { open, readdir, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir, writeFileDurable, writeFully, FILE_MODE } from "../state/durable.js";
import { ClaimableBound } from "./claimable-bound.js";
import { COMMIT_LINE, parseJournal } from "./journal.js";
import { queueFileText } from "./queue-file.js";
import {
  DEFAULT_CAPACITY,
  DEFAULT_RETENTION_MS,
  TaskQueueFullError,
  TaskStoreCorruptError,
  TaskStoreWriteError,
  newTaskRecord,
  type TaskInit,
  type TaskStore,
} from "./task-store.js";
import {
  claimOrder,
  claimTransition,
  dueAt,
  isDue,
  isTerminal,
  orderedRecord,
  recordFromDisk,
  TaskNotFoundError,
  type TaskRecord,
  type TaskStateName,
  TASK_STATES,
} from "./model.js";

export const MAX_QUEUE_FILE_BYTES = 64 * 1024 * 1024;
const MAX_CORRUPT_COPIES = 8;
const CLOSED_FOR_SHUTDOWN = "the task store is closed (the server is shutting down)";

export { DEFAULT_CAPACITY, DEFAULT_RETENTION_MS, TaskQueueFullError, TaskStoreCorruptError, TaskStoreWriteError, type TaskInit } from "./task-store.js";

export interface TaskStoreOptions {
  /** `<state>/tasks` */
  dir: string;
  capacity?: number;
  /** Terminal tasks older than this are removed (default 30 days; 0 keeps them). */
  retentionMs?: number;
  /**
   * Journal entries after which queue.json is rewritten and the journal emptied (at least twice
   * the number of stored tasks, so the cost of rewriting stays amortized).
   */
  compactAfterEntries?: number;
  now?: () => number;
  warn?: (message: string) => void;
  /** Told how long each batch's write + fsync took (metrics). */
  onSync?: (ms: number) => void;
}

type Change = [id: string, record: TaskRecord | null];

interface Batch {
  changes: Change[];
  lines: string[];
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

/**
 * The durable task store: `queue.json` (the original Rust cara's format: a JSON array of task records)
 * plus an append-only journal `queue.journal` of JSON lines, compacted into queue.json atomically.
 *
 * Every mutation is staged in memory, appended to the journal together with the mutations that
 * arrived meanwhile (one write + one fdatasync per batch: group commit), and only then becomes
 * visible to readers and acknowledged to the caller. If the write fails, the batch (and the
 * batches staged on top of it) are rejected and memory is rolled back to what is on disk.
 */
export class FileTaskStore implements TaskStore {
  readonly queueFile: string;
  readonly journalFile: string;
  readonly capacity: number;
  readonly retentionMs: number;
  /** Emits "change" (TaskRecord) after a change is durable, "removed" (id) after a removal. */
  readonly events = new EventEmitter();
  /** Counters since open. */
  evicted = 0;
  retentionRemoved = 0;
  recoveredOnOpen = 0;

  private committed = new Map<string, TaskRecord>();
  private readonly claimable = new ClaimableBound();
  private pending = new Map<string, TaskRecord | null>();
  private idempotency = new Map<string, string>();
  private viewSize = 0;
  private openBatch: Batch | undefined;
  private queue: Batch[] = [];
  private flushing = false;
  /** While set, staged batches wait: nothing is written (a consistent copy is being taken). */
  private holds = 0;
  private journal!: FileHandle;
  private journalBytes = 0;
  /** Bytes past journalBytes may exist (a failed write whose truncate failed too). */
  private journalDirty = false;
  private journalEntries = 0;
  private readonly compactAfter: number;
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private readonly onSync: ((ms: number) => void) | undefined;
  /** Size of queue.json as last read or written. */
  private queueFileBytes = 0;
  private closed = false;
  private closedReason = CLOSED_FOR_SHUTDOWN;
  private lastWriteError: string | undefined;

  private constructor(options: TaskStoreOptions) {
    this.queueFile = join(options.dir, "queue.json");
    this.journalFile = join(options.dir, "queue.journal");
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS;
    this.compactAfter = options.compactAfterEntries ?? 10_000;
    this.now = options.now ?? Date.now;
    this.warn = options.warn ?? (() => undefined);
    this.onSync = options.onSync;
    this.events.setMaxListeners(0);
  }

  /**
   * Loads queue.json and replays the journal. Corrupt or unreadable state fails closed: a copy is
   * kept beside it and the error names both files and the way out. Tasks found `running` (the
   * server died under them) become `retry_wait`, due now.
   */
  static async open(options: TaskStoreOptions): Promise<FileTaskStore> {
    const store = new FileTaskStore(options);
    await store.load();
    await store.recoverRunning();
    await store.sweepRetention();
    return store;
  }

  /**
   * Proves that the task queue files in `dir` load, writing nothing (no copies, no repairs):
   * used on a staged restore before it replaces the live queue. Throws TaskStoreCorruptError.
   */
  static async check(dir: string): Promise<{ tasks: number }> {
    return { tasks: (await FileTaskStore.readRecords(dir)).length };
  }

  /** The durable task records in `dir`, read and validated without writing (offline tools). */
  static async readRecords(dir: string): Promise<TaskRecord[]> {
    const store = new FileTaskStore({ dir });
    store.readOnly = true;
    await store.load();
    return [...store.committed.values()];
  }

  /** Set by check(): load() reads and validates only. */
  private readOnly = false;

  private async load(): Promise<void> {
    const raw = await readLimited(this.queueFile);
    this.queueFileBytes = raw?.length ?? 0;
    if (raw !== undefined) {
      let parsed: unknown;
      let problem: string | undefined;
      try {
        parsed = JSON.parse(raw.toString("utf8"));
        if (!Array.isArray(parsed)) problem = "the top level is not a JSON array";
      } catch (err) {
        problem = (err as Error).message;
      }
      if (problem === undefined) {
        for (const item of parsed as unknown[]) {
          const rec = recordFromDisk(item);
          if (typeof rec === "string") {
            problem = rec;
            break;
          }
          if (typeof (item as { state?: unknown }).state === "string" && !(TASK_STATES as readonly string[]).includes((item as { state: string }).state)) {
            this.warn(`task ${rec.id} had unknown state '${(item as { state: string }).state}'; loaded as failed`);
          }
          this.committed.set(rec.id, rec);
        }
      }
      if (problem !== undefined) await this.failCorrupt(this.queueFile, raw, problem);
    }
    // Replay the journal on top.
    const jraw = (await readLimited(this.journalFile)) ?? Buffer.alloc(0);
    const journal = parseJournal(jraw);
    if (journal.problem !== undefined) await this.failCorrupt(this.journalFile, jraw, journal.problem);
    for (const op of journal.ops) {
      if (op.op === "del") {
        this.committed.delete(op.id);
        continue;
      }
      const rec = recordFromDisk(op.task);
      if (typeof rec === "string") await this.failCorrupt(this.journalFile, jraw, `line ${op.line}: ${rec}`);
      else this.committed.set(rec.id, rec);
    }
    if (journal.tornBytes > 0) {
      this.warn(
        `dropped the last ${journal.tornBytes} bytes of ${this.journalFile}` +
          (journal.tornOps > 0 ? ` (${journal.tornOps} changes of a batch that was never acknowledged)` : "") +
          ": a write there was cut short (crash or full disk) and never acknowledged",
      );
    }
    if (this.readOnly) return;
    if (journal.holeBytes > 0) {
      // Zeros were never written by cara: an older version wrote past the end of the file after
      // a short write on a full disk. Changes that should have been there are lost; keep a copy.
      const kept = await this.keepCopy(this.journalFile, jraw).then(
        (c) => `a copy of the damaged journal is at ${c}`,
        (err: Error) => `no copy could be kept (${err.message})`,
      );
      this.warn(
        `skipped ${journal.holeBytes} zero bytes in ${this.journalFile} from offset ${journal.firstHoleAt} (left by an interrupted write on a full disk); the changes around them were loaded, ${kept}`,
      );
    }
    this.journal = await open(this.journalFile, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, FILE_MODE);
    if (journal.goodEnd < jraw.length) {
      await this.journal.truncate(journal.goodEnd);
      await this.journal.sync();
    }
    this.journalBytes = journal.goodEnd;
    this.journalEntries = journal.ops.length;
    this.resetView();
    // A journal with holes is rewritten clean at once (best effort: a full disk retries later).
    if (journal.holeBytes > 0) await this.compact().catch((err: Error) => this.warn(`task queue compaction failed (will retry): ${err.message}`));
  }

  /** Writes `bytes` to a new `<file>.corrupt.<ms>` (0600, fsync'ed) and returns its path. */
  private async keepCopy(file: string, bytes: Buffer): Promise<string> {
    let stamp = this.now();
    let copy = `${file}.corrupt.${stamp}`;
    let handle: FileHandle | undefined;
    while (!handle) {
      try {
        handle = await open(copy, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        copy = `${file}.corrupt.${++stamp}`;
      }
    }
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      await unlink(copy).catch(() => undefined);
      throw err;
    }
    await handle.close();
    await fsyncDir(dirname(file));
    await pruneCorruptCopies(file);
    return copy;
  }

  private async failCorrupt(file: string, bytes: Buffer, problem: string): Promise<never> {
    if (this.readOnly) throw new TaskStoreCorruptError(`task queue file ${file} is corrupt (${problem})`);
    const kept = await this.keepCopy(file, bytes).then(
      (copy) => `A copy was kept at ${copy}.`,
      (err: Error) => `Could not keep a copy (${err.message}).`,
    );
    throw new TaskStoreCorruptError(
      `task queue file ${file} is corrupt (${problem}); refusing to start rather than lose tasks. ${kept} ` +
        `Repair or remove the file, or restore the state from a backup ('cara restore FILE --offline'), then start again.`,
    );
  }

  private resetView(): void {
    this.pending.clear();
    this.idempotency.clear();
    for (const rec of this.committed.values()) if (rec.idempotencyKey) this.idempotency.set(rec.idempotencyKey, rec.id);
    this.viewSize = this.committed.size;
  }

  private async recoverRunning(): Promise<void> {
    const now = this.now();
    const changes: Change[] = [];
    for (const rec of this.committed.values()) {
      if (rec.state === "running") {
        changes.push([rec.id, { ...rec, state: "retry_wait", nextRunAtMs: now, updatedAtMs: now, lastError: "recovered after restart" }]);
      }
    }
    this.recoveredOnOpen = changes.length;
    if (changes.length > 0) await this.stage(changes);
  }

  /** Removes terminal tasks older than the retention age. Returns how many were removed. */
  async sweepRetention(): Promise<number> {
    if (this.retentionMs <= 0) return 0;
    const cutoff = this.now() - this.retentionMs;
    const changes: Change[] = [];
    for (const rec of this.view()) {
      if (isTerminal(rec.state) && (rec.finishedAtMs ?? rec.updatedAtMs) < cutoff) changes.push([rec.id, null]);
    }
    if (changes.length === 0) return 0;
    await this.stage(changes);
    this.retentionRemoved += changes.length;
    return changes.length;
  }

  // ---- reads (durable state only) ----

  get(id: string): TaskRecord | undefined {
    return this.committed.get(id);
  }

  /** The file store's reads are its durable state. */
  async fetch(id: string): Promise<TaskRecord | undefined> {
    return this.committed.get(id);
  }

  all(): IterableIterator<TaskRecord> {
    return this.committed.values();
  }

  get size(): number {
    return this.committed.size;
  }

  /** Counts per state over the durable state. */
  counts(): Record<TaskStateName, number> {
    const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskStateName, number>;
    for (const rec of this.committed.values()) counts[rec.state]++;
    return counts;
  }

  /** Bytes of the store on disk: queue.json and the journal. */
  get diskBytes(): number {
    return this.queueFileBytes + this.journalBytes;
  }

  /** The last write error, if the most recent write failed (cleared by the next good write). */
  get writeError(): string | undefined {
    return this.lastWriteError;
  }

  // ---- mutations ----

  private viewGet(id: string): TaskRecord | undefined {
    if (this.pending.has(id)) return this.pending.get(id) ?? undefined;
    return this.committed.get(id);
  }

  private *view(): Generator<TaskRecord> {
    for (const [id, rec] of this.committed) {
      if (this.pending.has(id)) {
        const p = this.pending.get(id);
        if (p) yield p;
      } else yield rec;
    }
    for (const [id, rec] of this.pending) if (rec && !this.committed.has(id)) yield rec;
  }

  /**
   * Creates many tasks in one durable write (all or none). Known idempotency keys return their
   * existing task (`created: false`); the others are created, evicting the oldest terminal
   * tasks as needed; when that cannot make room for all of them, nothing is created
   * (TaskQueueFullError). Results are in the order of `inits`.
   */
  async createMany(inits: TaskInit[]): Promise<{ task: TaskRecord; created: boolean }[]> {
    this.assertOpen();
    const now = this.now();
    const results: ({ task: TaskRecord; created: boolean } | { existingId: string })[] = [];
    const fresh: TaskRecord[] = [];
    for (const init of inits) {
      const existingId = init.idempotencyKey ? this.idempotency.get(init.idempotencyKey) : undefined;
      if (existingId !== undefined && this.viewGet(existingId)) {
        results.push({ existingId });
        continue;
      }
      const task: TaskRecord = newTaskRecord(init, now);
      fresh.push(task);
      results.push({ task, created: true });
    }
    const changes: Change[] = [];
    const room = this.capacity - this.viewSize;
    if (fresh.length > room) {
      const terminal = [...this.view()].filter((r) => isTerminal(r.state)).sort((a, b) => a.updatedAtMs - b.updatedAtMs);
      if (terminal.length < fresh.length - room) throw new TaskQueueFullError();
      for (const old of terminal.slice(0, fresh.length - room)) changes.push([old.id, null]);
    }
    const evictions = changes.length;
    for (const t of fresh) changes.push([t.id, t]);
    if (changes.length > 0) await this.stage(changes);
    this.evicted += evictions;
    const out: { task: TaskRecord; created: boolean }[] = [];
    for (const r of results) {
      if ("existingId" in r) {
        await this.whenDurable(r.existingId);
        out.push({ task: this.committed.get(r.existingId) ?? (this.viewGet(r.existingId) as TaskRecord), created: false });
      } else out.push(r);
    }
    return out;
  }

  /**
   * Creates a task. With an idempotency key already known, returns the existing task
   * (`created: false`). When full, evicts the oldest terminal task; with none, throws
   * TaskQueueFullError. Resolves once the task is on disk.
   */
  async create(init: TaskInit): Promise<{ task: TaskRecord; created: boolean }> {
    this.assertOpen();
    if (init.idempotencyKey) {
      const existingId = this.idempotency.get(init.idempotencyKey);
      const existing = existingId !== undefined ? this.viewGet(existingId) : undefined;
      if (existing) {
        await this.whenDurable(existing.id);
        return { task: this.committed.get(existing.id) ?? existing, created: false };
      }
    }
    const now = this.now();
    const task: TaskRecord = newTaskRecord(init, now);
    const changes: Change[] = [];
    if (this.viewSize >= this.capacity) {
      let oldest: TaskRecord | undefined;
      for (const rec of this.view()) {
        if (isTerminal(rec.state) && (!oldest || rec.updatedAtMs < oldest.updatedAtMs)) oldest = rec;
      }
      if (!oldest) throw new TaskQueueFullError();
      changes.push([oldest.id, null]);
    }
    changes.push([task.id, task]);
    await this.stage(changes);
    if (changes.length > 1) this.evicted++;
    return { task, created: true };
  }

  /**
   * Replaces a task with `fn(current)` (fn may throw to refuse). Resolves with the new record
   * once it is on disk. Throws TaskNotFoundError for an unknown id.
   */
  async update(id: string, fn: (current: TaskRecord) => TaskRecord): Promise<TaskRecord> {
    this.assertOpen();
    const current = this.viewGet(id);
    if (!current) throw new TaskNotFoundError();
    const next = fn(current);
    if (next === current) return current;
    await this.stage([[id, next]]);
    return next;
  }

  async claimDue(limit: number, now: number, skip: ReadonlySet<string>): Promise<TaskRecord[]> {
    this.assertOpen();
    if (limit <= 0) return [];
    const due: TaskRecord[] = [];
    for (const t of this.committed.values()) {
      const cur = this.viewGet(t.id);
      if (cur && isDue(cur, now) && !skip.has(t.id)) due.push(cur);
    }
    const claimed = due
      .sort(claimOrder)
      .slice(0, limit)
      .map((t) => claimTransition(t, now));
    if (claimed.length === 0) return [];
    await this.stage(claimed.map((t) => [t.id, t]));
    return claimed;
  }

  /** Whether a committed task other than `skip`'s is due (answered without a walk until one can be: ClaimableBound). */
  hasClaimable(now: number, skip: ReadonlySet<string>): boolean {
    return this.claimable.hasClaimable(now, skip, this.committed.values(), dueAt);
  }

  /** Waits until whatever is staged for `id` is durable. */
  private async whenDurable(id: string): Promise<void> {
    if (!this.pending.has(id)) return;
    const batches = [...this.queue, ...(this.openBatch ? [this.openBatch] : [])].filter((b) => b.changes.some(([cid]) => cid === id));
    const last = batches[batches.length - 1];
    if (last) await new Promise<void>((resolve, reject) => last.waiters.push({ resolve, reject }));
  }

  private stage(changes: Change[]): Promise<void> {
    for (const [id, rec] of changes) {
      const before = this.viewGet(id);
      if (before && !rec) this.viewSize--;
      if (!before && rec) this.viewSize++;
      if (before?.idempotencyKey && (!rec || rec.idempotencyKey !== before.idempotencyKey)) this.idempotency.delete(before.idempotencyKey);
      if (rec?.idempotencyKey) this.idempotency.set(rec.idempotencyKey, id);
      this.pending.set(id, rec);
    }
    let batch = this.openBatch;
    if (!batch) {
      batch = { changes: [], lines: [], waiters: [] };
      this.openBatch = batch;
      this.queue.push(batch);
    }
    for (const change of changes) {
      batch.changes.push(change);
      batch.lines.push(change[1] ? `{"op":"put","task":${JSON.stringify(orderedRecord(change[1]))}}\n` : `{"op":"del","id":${JSON.stringify(change[0])}}\n`);
    }
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    this.kick();
    return done;
  }

  private kick(): void {
    if (!this.flushing && this.holds === 0 && this.queue.length > 0) {
      this.flushing = true;
      setImmediate(() => void this.flushLoop());
    }
  }

  /** Resolves once no write is in progress and nothing staged is waiting. */
  private async idle(): Promise<void> {
    while (this.flushing || (this.queue.length > 0 && this.holds === 0)) await new Promise((r) => setImmediate(r));
  }

  /**
   * Runs `fn` while the files on disk hold still: waits for writes in progress, holds new ones
   * (they queue up and are acknowledged after), then lets them go. Used for consistent backups.
   */
  async withWritesHeld<T>(fn: () => Promise<T>): Promise<T> {
    await this.idle();
    this.holds++;
    try {
      return await fn();
    } finally {
      this.holds--;
      this.kick();
    }
  }

  /** Rewrites queue.json from the durable state and empties the journal, holding writes meanwhile. */
  async checkpoint(): Promise<void> {
    await this.withWritesHeld(() => this.compact());
  }

  /**
   * Stops taking changes and closes the files (e.g. for a restore that replaces them);
   * `reopen()` loads them again from disk. Mutations meanwhile fail with TaskStoreWriteError.
   */
  async suspend(reason = "the task store is paused; retry in a few seconds"): Promise<void> {
    this.closedReason = reason;
    await this.close();
  }

  /** Why mutations are refused, while the store is closed (undefined while open). */
  get closedBecause(): string | undefined {
    return this.closed ? this.closedReason : undefined;
  }

  /** Loads the store again from disk after `suspend()` (the files may have been replaced). */
  async reopen(): Promise<void> {
    if (!this.closed) return;
    this.committed = new Map();
    this.claimable.reset();
    try {
      await this.load();
    } catch (err) {
      this.closedReason = `the task queue could not be loaded again: ${(err as Error).message}`;
      throw err;
    }
    this.closed = false;
    this.closedReason = CLOSED_FOR_SHUTDOWN;
    await this.recoverRunning();
    for (const rec of this.committed.values()) this.events.emit("change", rec);
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.holds === 0) {
        const batch = this.queue.shift()!;
        if (this.openBatch === batch) this.openBatch = undefined;
        const data = Buffer.from(batch.lines.join("") + COMMIT_LINE, "utf8");
        try {
          // A failed write earlier may have left bytes past the true end: cut them first, so
          // nothing unacknowledged ever sits between two acknowledged batches.
          if (this.journalDirty) {
            await this.journal.truncate(this.journalBytes);
            this.journalDirty = false;
          }
          const started = performance.now();
          await writeFully(this.journal, data, this.journalBytes);
          await this.journal.datasync();
          this.onSync?.(performance.now() - started);
        } catch (err) {
          await this.rollback(batch, err as Error);
          continue;
        }
        this.journalBytes += data.length;
        this.journalEntries += batch.changes.length;
        this.lastWriteError = undefined;
        for (const [id, rec] of batch.changes) {
          if (rec) {
            this.committed.set(id, rec);
            this.claimable.lower(dueAt(rec));
          } else this.committed.delete(id);
          if (this.pending.get(id) === rec) this.pending.delete(id);
        }
        for (const w of batch.waiters) w.resolve();
        for (const [id, rec] of batch.changes) {
          if (rec) this.events.emit("change", rec);
          else this.events.emit("removed", id);
        }
        if (this.journalEntries >= Math.max(this.compactAfter, 2 * this.committed.size, 1) && this.queue.length === 0)
          await this.compact().catch((err: Error) => this.warn(`task queue compaction failed (will retry): ${err.message}`));
      }
    } finally {
      this.flushing = false;
    }
  }

  private async rollback(failed: Batch, err: Error): Promise<void> {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === "ENOSPC" || code === "EDQUOT"
        ? `task store write to ${this.journalFile} failed: the filesystem is full (${code}); nothing was changed. Free space on it (or raise the quota), then retry`
        : `task store write to ${this.journalFile} failed (${code ?? err.message}); nothing was changed`;
    this.lastWriteError = message;
    // Back to the true length (what was acknowledged). If even that fails, the next write
    // truncates first and fails again rather than write after unacknowledged bytes.
    this.journalDirty = true;
    await this.journal
      .truncate(this.journalBytes)
      .then(() => (this.journalDirty = false))
      .catch(() => undefined);
    const rejected = [failed, ...this.queue];
    this.queue = [];
    this.openBatch = undefined;
    this.resetView();
    const error = new TaskStoreWriteError(message, code === "ENOSPC" || code === "EDQUOT");
    for (const b of rejected) for (const w of b.waiters) w.reject(error);
  }

  /** Writes the durable state to queue.json (atomically) and empties the journal. */
  async compact(): Promise<void> {
    const text = queueFileText(this.committed.values());
    await writeFileDurable(this.queueFile, text);
    this.queueFileBytes = Buffer.byteLength(text);
    await this.journal.truncate(0);
    await this.journal.sync();
    this.journalBytes = 0;
    this.journalEntries = 0;
  }

  /** Waits for staged writes, compacts, and closes the journal. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.idle();
    if (this.journalEntries > 0) await this.compact().catch((err: Error) => this.warn(`task queue compaction at close failed: ${err.message}`));
    await this.journal.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new TaskStoreWriteError(this.closedReason);
  }
}

/** Reads a state file: no symlinks, regular files only, at most 64 MiB. Missing -> undefined. */
async function readLimited(file: string): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP")
      throw new TaskStoreCorruptError(`refusing to read task queue file ${file}: it is a symbolic link. Replace it with the real file, then start again.`);
    throw new TaskStoreCorruptError(
      `cannot read task queue file ${file} (${code ?? (err as Error).message}); persisted tasks were not loaded. Fix its permissions, then start again.`,
    );
  }
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw new TaskStoreCorruptError(`task queue file ${file} is not a regular file; remove it or restore it from a backup, then start again.`);
    if (st.size > MAX_QUEUE_FILE_BYTES) {
      throw new TaskStoreCorruptError(
        `task queue file ${file} is ${st.size} bytes, over the ${MAX_QUEUE_FILE_BYTES}-byte cap; it was not loaded. Repair it or restore it from a backup, then start again.`,
      );
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Keeps the newest MAX_CORRUPT_COPIES `<file>.corrupt.<ms>` copies. */
async function pruneCorruptCopies(file: string): Promise<void> {
  const dir = dirname(file);
  const prefix = `${basename(file)}.corrupt.`;
  const copies = (await readdir(dir))
    .filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
    .sort((a, b) => Number(b.slice(prefix.length)) - Number(a.slice(prefix.length)));
  for (const name of copies.slice(MAX_CORRUPT_COPIES)) await unlink(join(dir, name)).catch(() => undefined);
}
