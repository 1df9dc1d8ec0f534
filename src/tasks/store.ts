import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { constants } from "node:fs";
import { open, readdir, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir, writeFileDurable, FILE_MODE } from "../state/durable.js";
import {
  DEFAULT_POLICY,
  isTerminal,
  orderedRecord,
  recordFromDisk,
  TaskNotFoundError,
  type TaskRecord,
  type TaskStateName,
  TASK_STATES,
} from "./model.js";

export const MAX_QUEUE_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_CAPACITY = 10_000;
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600 * 1000;
const MAX_CORRUPT_COPIES = 8;

export class TaskStoreCorruptError extends Error {}
export class TaskQueueFullError extends Error {
  constructor() {
    super("task queue full: no terminal tasks available for eviction");
  }
}
/** A durable write failed: nothing of the mutation was kept. */
export class TaskStoreWriteError extends Error {}

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
}

type Change = [id: string, record: TaskRecord | null];

interface Batch {
  changes: Change[];
  lines: string[];
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

/**
 * The durable task store: `queue.json` (the reference's format: a JSON array of task records)
 * plus an append-only journal `queue.journal` of JSON lines, compacted into queue.json atomically.
 *
 * Every mutation is staged in memory, appended to the journal together with the mutations that
 * arrived meanwhile (one write + one fdatasync per batch: group commit), and only then becomes
 * visible to readers and acknowledged to the caller. If the write fails, the batch (and the
 * batches staged on top of it) are rejected and memory is rolled back to what is on disk.
 */
export class TaskStore {
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
  private journalEntries = 0;
  private readonly compactAfter: number;
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private closed = false;
  private lastWriteError: string | undefined;

  private constructor(options: TaskStoreOptions) {
    this.queueFile = join(options.dir, "queue.json");
    this.journalFile = join(options.dir, "queue.journal");
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS;
    this.compactAfter = options.compactAfterEntries ?? 10_000;
    this.now = options.now ?? Date.now;
    this.warn = options.warn ?? (() => undefined);
    this.events.setMaxListeners(0);
  }

  /**
   * Loads queue.json and replays the journal. Corrupt or unreadable state fails closed: a copy is
   * kept beside it and the error names both files and the way out. Tasks found `running` (the
   * server died under them) become `retry_wait`, due now.
   */
  static async open(options: TaskStoreOptions): Promise<TaskStore> {
    const store = new TaskStore(options);
    await store.load();
    await store.recoverRunning();
    await store.sweepRetention();
    return store;
  }

  private async load(): Promise<void> {
    const raw = await readLimited(this.queueFile);
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
    let offset = 0;
    let goodEnd = 0;
    let entries = 0;
    while (offset < jraw.length) {
      const nl = jraw.indexOf(10, offset);
      if (nl < 0) {
        // A torn last line: its write never completed, so it was never acknowledged.
        this.warn(`ignored an incomplete last line in ${this.journalFile} (interrupted write)`);
        break;
      }
      const line = jraw.subarray(offset, nl).toString("utf8");
      offset = nl + 1;
      let entry: { op?: unknown; task?: unknown; id?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch (err) {
        await this.failCorrupt(this.journalFile, jraw, `line ${entries + 1}: ${(err as Error).message}`);
        return;
      }
      if (entry.op === "put") {
        const rec = recordFromDisk(entry.task);
        if (typeof rec === "string") await this.failCorrupt(this.journalFile, jraw, `line ${entries + 1}: ${rec}`);
        else this.committed.set(rec.id, rec);
      } else if (entry.op === "del" && typeof entry.id === "string") {
        this.committed.delete(entry.id);
      } else {
        await this.failCorrupt(this.journalFile, jraw, `line ${entries + 1}: unknown journal entry`);
      }
      entries++;
      goodEnd = offset;
    }
    this.journal = await open(this.journalFile, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, FILE_MODE);
    if (goodEnd < jraw.length) {
      await this.journal.truncate(goodEnd);
      await this.journal.sync();
    }
    this.journalBytes = goodEnd;
    this.journalEntries = entries;
    this.resetView();
  }

  private async failCorrupt(file: string, bytes: Buffer, problem: string): Promise<never> {
    let kept: string;
    try {
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
      } finally {
        await handle.close();
      }
      await fsyncDir(dirname(file));
      await pruneCorruptCopies(file);
      kept = `A copy was kept at ${copy}.`;
    } catch (err) {
      kept = `Could not keep a copy (${(err as Error).message}).`;
    }
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
   * Creates a task. With an idempotency key already known, returns the existing task
   * (`created: false`). When full, evicts the oldest terminal task; with none, throws
   * TaskQueueFullError. Resolves once the task is on disk.
   */
  async create(init: Omit<TaskRecord, "id" | "state" | "attempts" | "lastError" | "createdAtMs" | "updatedAtMs">): Promise<{ task: TaskRecord; created: boolean }> {
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
    const task: TaskRecord = {
      id: randomUUID(),
      state: "queued",
      attempts: 0,
      lastError: null,
      createdAtMs: now,
      updatedAtMs: now,
      ...init,
      policy: init.policy ?? { ...DEFAULT_POLICY },
    };
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
  async suspend(): Promise<void> {
    await this.close();
  }

  /** Loads the store again from disk after `suspend()` (the files may have been replaced). */
  async reopen(): Promise<void> {
    if (!this.closed) return;
    this.committed = new Map();
    await this.load();
    this.closed = false;
    await this.recoverRunning();
    for (const rec of this.committed.values()) this.events.emit("change", rec);
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.holds === 0) {
        const batch = this.queue.shift()!;
        if (this.openBatch === batch) this.openBatch = undefined;
        const data = Buffer.from(batch.lines.join(""), "utf8");
        try {
          await this.journal.write(data, 0, data.length, this.journalBytes);
          await this.journal.datasync();
        } catch (err) {
          await this.rollback(batch, err as Error);
          continue;
        }
        this.journalBytes += data.length;
        this.journalEntries += batch.changes.length;
        this.lastWriteError = undefined;
        for (const [id, rec] of batch.changes) {
          if (rec) this.committed.set(id, rec);
          else this.committed.delete(id);
          if (this.pending.get(id) === rec) this.pending.delete(id);
        }
        for (const w of batch.waiters) w.resolve();
        for (const [id, rec] of batch.changes) {
          if (rec) this.events.emit("change", rec);
          else this.events.emit("removed", id);
        }
        if (this.journalEntries >= Math.max(this.compactAfter, 2 * this.committed.size, 1) && this.queue.length === 0) await this.compact().catch((err: Error) => this.warn(`task queue compaction failed (will retry): ${err.message}`));
      }
    } finally {
      this.flushing = false;
    }
  }

  private async rollback(failed: Batch, err: Error): Promise<void> {
    const message = `task store write to ${this.journalFile} failed (${(err as NodeJS.ErrnoException).code ?? err.message}); nothing was changed`;
    this.lastWriteError = message;
    await this.journal.truncate(this.journalBytes).catch(() => undefined);
    const rejected = [failed, ...this.queue];
    this.queue = [];
    this.openBatch = undefined;
    this.resetView();
    const error = new TaskStoreWriteError(message);
    for (const b of rejected) for (const w of b.waiters) w.reject(error);
  }

  /** Writes the durable state to queue.json (atomically) and empties the journal. */
  async compact(): Promise<void> {
    const records = [...this.committed.values()].map(orderedRecord);
    await writeFileDurable(this.queueFile, `${JSON.stringify(records, null, 2)}\n`);
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
    if (this.closed) throw new TaskStoreWriteError("the task store is closed (the server is shutting down)");
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
    if (code === "ELOOP") throw new TaskStoreCorruptError(`refusing to read task queue file ${file}: it is a symbolic link. Replace it with the real file, then start again.`);
    throw new TaskStoreCorruptError(`cannot read task queue file ${file} (${code ?? (err as Error).message}); persisted tasks were not loaded. Fix its permissions, then start again.`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new TaskStoreCorruptError(`task queue file ${file} is not a regular file; remove it or restore it from a backup, then start again.`);
    if (st.size > MAX_QUEUE_FILE_BYTES) {
      throw new TaskStoreCorruptError(`task queue file ${file} is ${st.size} bytes, over the ${MAX_QUEUE_FILE_BYTES}-byte cap; it was not loaded. Repair it or restore it from a backup, then start again.`);
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
