import { randomUUID } from "node:crypto";
import type { EventEmitter } from "node:events";
import { DEFAULT_POLICY, type TaskRecord, type TaskStateName } from "./model.js";

/**
 * What the task service, the worker, the scheduler and the runtime need of a task store. Two
 * implementations: `FileTaskStore` (store.ts: queue.json + journal in the state dir, the default)
 * and `PgTaskStore` (postgres/pg-store.ts: a PostgreSQL database several servers can share).
 *
 * Reads are synchronous and see durable state only: every implementation keeps the tasks in
 * memory and refreshes them after each durable change (its own, and for a shared database, those
 * of other servers). Every mutation resolves only once it is durable; if it cannot be made
 * durable it rejects and nothing of it was kept.
 */
export interface TaskStore {
  readonly capacity: number;
  readonly retentionMs: number;
  /** Emits "change" (TaskRecord) after a change is durable, "removed" (id) after a removal. */
  readonly events: EventEmitter;
  /** Counters since open (this process). */
  readonly evicted: number;
  readonly retentionRemoved: number;
  /** Tasks found `running` at open and made due again. */
  readonly recoveredOnOpen: number;

  get(id: string): TaskRecord | undefined;
  /**
   * Reads one task from the durable state itself: for a shared store, a task another server
   * has just written may not be in `get` yet (its notice is on the way).
   */
  fetch(id: string): Promise<TaskRecord | undefined>;
  all(): IterableIterator<TaskRecord>;
  readonly size: number;
  /** Counts per state over the durable state. */
  counts(): Record<TaskStateName, number>;
  /** Bytes of the store's files in the state dir (0 for a store that keeps none). */
  readonly diskBytes: number;
  /** The last write error, if the most recent write failed (cleared by the next good write). */
  readonly writeError: string | undefined;
  /** Why mutations are refused, while the store is closed (undefined while open). */
  readonly closedBecause: string | undefined;

  /** Creates a task; a known idempotency key returns the existing task (`created: false`). */
  create(init: TaskInit): Promise<{ task: TaskRecord; created: boolean }>;
  /** Creates many tasks in one durable write (all or none); results in the order of `inits`. */
  createMany(inits: TaskInit[]): Promise<{ task: TaskRecord; created: boolean }[]>;
  /** Replaces a task with `fn(current)` (fn may throw to refuse; returning `current` changes nothing). */
  update(id: string, fn: (current: TaskRecord) => TaskRecord): Promise<TaskRecord>;
  /**
   * Claims up to `limit` due tasks (highest priority first, then earliest run-at), skipping the
   * ids in `skip`: each becomes `running` with one more attempt (model.claimTransition). Resolves
   * with the claimed records once the claims are durable; a task is claimed by one caller only.
   */
  claimDue(limit: number, now: number, skip: ReadonlySet<string>): Promise<TaskRecord[]>;
  /** Whether claimDue would find something now, from the store's reads (no round trip). */
  hasClaimable(now: number, skip: ReadonlySet<string>): boolean;
  /** Removes terminal tasks older than the retention age. Returns how many were removed. */
  sweepRetention(): Promise<number>;
  /** Runs `fn` while no write of this store lands (consistent backups of the store's files). */
  withWritesHeld<T>(fn: () => Promise<T>): Promise<T>;
  /** Stops taking changes (mutations fail with TaskStoreWriteError naming `reason`). */
  suspend(reason?: string): Promise<void>;
  /** Loads the tasks again after `suspend()`. */
  reopen(): Promise<void>;
  /** Waits for writes in progress and releases what the store holds. */
  close(): Promise<void>;
}

/**
 * A store whose tasks live outside the state dir (PostgreSQL), as backup and restore see it:
 * the archive's `tasks/queue.json` is written from `snapshot()` and restored with `replaceAll()`.
 */
export interface TasksDatabase {
  /** Every task as of one instant (one consistent read). */
  snapshot(): Promise<TaskRecord[]>;
  /**
   * Replaces every task in one transaction, acknowledged after commit; a failure before the commit
   * changes nothing, one at the commit (`committing: true`, see failedWhileCommitting) may have
   * kept the new tasks.
   */
  replaceAll(records: readonly TaskRecord[]): Promise<void>;
}

/** What a caller gives to create a task (the store assigns the rest). */
export type TaskInit = Omit<TaskRecord, "id" | "state" | "attempts" | "lastError" | "createdAtMs" | "updatedAtMs">;

/** The record a store creates for `init`: a fresh id, queued, no attempts, the default policy unless given. */
export function newTaskRecord(init: TaskInit, now: number): TaskRecord {
  return {
    id: randomUUID(),
    state: "queued",
    attempts: 0,
    lastError: null,
    createdAtMs: now,
    updatedAtMs: now,
    ...init,
    policy: init.policy ?? { ...DEFAULT_POLICY },
  };
}

export const DEFAULT_CAPACITY = 10_000;
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** The store's durable state cannot be used; the message names it and the way out. */
export class TaskStoreCorruptError extends Error {}
export class TaskQueueFullError extends Error {
  constructor() {
    super("task queue full: no terminal tasks available for eviction");
  }
}
/** A durable write failed: nothing of the mutation was kept. */
export class TaskStoreWriteError extends Error {
  constructor(
    message: string,
    /** The filesystem is full (ENOSPC/EDQUOT): retrying helps only once space is freed. */
    readonly diskFull = false,
  ) {
    super(message);
  }
}
