/**
 * The in-memory ring of recent log records (already redacted by the log pipeline), with tail
 * queries (filters, cursor, byte budget) and live subscriptions for followers whose memory is
 * bounded: a subscriber that reads too slowly loses the oldest queued records and is told how
 * many with a `{dropped: N}` marker.
 */

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_RING_CAPACITY = 5_000;
export const MAX_RING_CAPACITY = 50_000;
/** Default memory budget of the ring: approximate bytes of all held records. */
export const DEFAULT_RING_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_TAIL_LIMIT = 200;
export const DEFAULT_TAIL_MAX_BYTES = 256 * 1024;
export const DEFAULT_SUBSCRIBER_BUFFER = 1_000;
/** Bytes of live records queued per subscriber before the oldest are dropped. */
export const DEFAULT_SUBSCRIBER_BUFFER_BYTES = 256 * 1024;

const RANK: Record<string, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, fatal: 5 };

/** Position of a level in trace < debug < info < warn < error < fatal (unknown levels rank as info). */
export function levelRank(level: string): number {
  return RANK[level] ?? 2;
}

/** One redacted log record. */
export interface LogEntry {
  /** From 1, increasing by one per record for the life of the ring. */
  readonly seq: number;
  /** Unix time in milliseconds. */
  readonly time: number;
  readonly level: LogLevel;
  readonly component: string;
  readonly message: string;
  /** The record's other fields (redacted, JSON-compatible). */
  readonly fields: Readonly<Record<string, unknown>>;
}

export type NewLogEntry = Omit<LogEntry, "seq">;

/** Filters shared by tail and follow; every filter that is set must match. */
export interface LogFilter {
  /** Only records at this level or above. */
  minLevel?: LogLevel;
  /** Only records whose message, component or a field value contains this text (case-sensitive). */
  contains?: string;
  /** Only records whose message matches (a LogPattern, or a RegExp without the g/y flags). */
  pattern?: { test(text: string): boolean };
  /** Only records logged at or after this time (Unix ms). */
  sinceMs?: number;
}

export interface TailQuery extends LogFilter {
  /** How many of the newest matching records to return (default 200, clamped to 1..capacity). */
  limit?: number;
  /** Cursor: only records with seq > afterSeq (pass the previous answer's nextSeq). */
  afterSeq?: number;
  /** Upper bound on message bytes + JSON bytes of fields of the answer (default 256 KiB). */
  maxBytes?: number;
}

export interface TailResult {
  /** Matching records, oldest first: the newest `limit` matches, cut to `maxBytes`. */
  entries: LogEntry[];
  /** The seq of the newest record considered (the ring's last seq; 0 when nothing was logged). */
  nextSeq: number;
  /** True when afterSeq fell out of the ring (or is from the future): records were lost. */
  reset: boolean;
  /** True when maxBytes left older matching records out (at least one record is always kept). */
  truncated: boolean;
}

/** Tells a follower that this many records were skipped because it read too slowly. */
export interface DroppedMarker {
  readonly dropped: number;
}

export type FollowItem = LogEntry | DroppedMarker;

export function isDroppedMarker(item: FollowItem): item is DroppedMarker {
  return (item as DroppedMarker).dropped !== undefined;
}

export interface SubscribeOptions {
  /** Most records queued for this subscriber before the oldest are dropped (default 1,000). */
  bufferLimit?: number;
  /** Most bytes of records queued for this subscriber (default 256 KiB): a slow reader costs at most this. */
  bufferBytes?: number;
  /** Ends the subscription at once (queued records are discarded) when aborted. */
  signal?: AbortSignal;
}

export interface FollowOptions extends SubscribeOptions {
  filter?: LogFilter;
  /** How many of the newest matching records to deliver first (default 200, 0 for none). */
  tail?: number;
  /** Deliver the held records after this seq first instead of the last `tail` ones. */
  afterSeq?: number;
}

export interface RingStats {
  /** Records held now. */
  size: number;
  /** Records appended since start, by level. */
  appendedByLevel: Readonly<Record<LogLevel, number>>;
  /** Records skipped for followers that read too slowly, since start. */
  droppedForFollowers: number;
  capacity: number;
  /** Seq of the newest record (0 when none was logged). */
  lastSeq: number;
  /** Approximate bytes held. */
  bytes: number;
  subscribers: number;
}

export interface LogRingOptions {
  /** Records held (default 5,000, clamped to 1..50,000). */
  capacity?: number;
  /** Memory budget in approximate bytes (default 64 MiB); the oldest records go first. */
  maxBytes?: number;
  /** Decodes lines stored with `appendLine` (the log pipeline passes its JSON decoder). */
  decodeLine?: (line: string) => NewLogEntry;
}

/** A held record: either materialized (`append`) or the serialized line, decoded on demand (`appendLine`). */
interface Slot {
  seq: number;
  rank: number;
  /** Size used for the memory budget. */
  weight: number;
  entry: LogEntry | null;
  line: string | null;
  /** Bytes counted by tail's maxBytes (message + JSON of fields), computed on first use. */
  answerBytes: number;
}

/** A filter prepared for matching many records. */
export interface CompiledFilter {
  minRank: number;
  contains: string;
  /** `contains` is printable ASCII without `"` or `\`: a line without it cannot match. */
  containsInLine: boolean;
  pattern: LogFilter["pattern"];
  sinceMs: number | undefined;
}

export function compileFilter(filter: LogFilter): CompiledFilter {
  const contains = filter.contains ?? "";
  return {
    minRank: filter.minLevel ? levelRank(filter.minLevel) : 0,
    contains,
    containsInLine: contains !== "" && /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/.test(contains),
    pattern: filter.pattern,
    sinceMs: filter.sinceMs,
  };
}

/** A record matches `contains` in its message, its component, or any field value (task ids, error codes). */
export function entryMatches(e: Pick<LogEntry, "time" | "message" | "component" | "fields">, f: CompiledFilter): boolean {
  if (f.sinceMs !== undefined && e.time < f.sinceMs) return false;
  if (f.contains && !e.message.includes(f.contains) && !e.component.includes(f.contains) && !fieldsContain(e.fields, f.contains)) return false;
  if (f.pattern && !f.pattern.test(e.message)) return false;
  return true;
}

function fieldsContain(value: unknown, text: string): boolean {
  if (typeof value === "string") return value.includes(text);
  if (typeof value === "number" || typeof value === "boolean") return String(value).includes(text);
  if (Array.isArray(value)) return value.some((v) => fieldsContain(v, text));
  if (value !== null && typeof value === "object") return Object.values(value).some((v) => fieldsContain(v, text));
  return false;
}

function clampInt(value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, Math.floor(value)));
}

/** A live subscription: an async iterable of records and `{dropped: N}` markers. */
export class LogSubscription implements AsyncIterableIterator<FollowItem> {
  /**
   * The backlog is the seqs of the records to send first, read from the ring only when sent:
   * a follower that does not read holds a few bytes per record, not the records. One evicted
   * meanwhile is reported as dropped.
   */
  private backlog: number[];
  private backlogIndex = 0;
  private backlogDropped = 0;
  private queue: LogEntry[] = [];
  private weights: number[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private droppedPending = 0;
  private waiter: ((r: IteratorResult<FollowItem>) => void) | null = null;
  private ended = false;
  /** Total records dropped for this subscriber. */
  droppedTotal = 0;
  /** @internal Called once when the subscription ends. */
  onEnd: (() => void) | null = null;

  /** @internal Created by LogRing.subscribe / follow. */
  constructor(
    private readonly filter: CompiledFilter,
    readonly bufferLimit: number,
    readonly bufferBytes: number,
    backlog: number[],
    private leadingDropped: number,
    private readonly detach: (s: LogSubscription) => void,
    private readonly resolve: (seq: number) => LogEntry | undefined,
    private readonly countDropped: (n: number) => void = () => undefined,
  ) {
    this.backlog = backlog;
  }

  /** True once close() was called or the signal aborted (queued records may still be read). */
  get closed(): boolean {
    return this.ended;
  }

  /** Records waiting to be read (backlog and live). Never more than bufferLimit live ones. */
  get pending(): number {
    return this.backlog.length - this.backlogIndex + this.queue.length - this.queueHead;
  }

  /** Approximate bytes of live records queued (at most bufferBytes, or one record). */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** @internal Called by the ring for every appended record; `weight` is its approximate size. */
  offer(entry: LogEntry, rank: number, weight = 0): void {
    if (this.ended || rank < this.filter.minRank || !entryMatches(entry, this.filter)) return;
    const waiter = this.waiter;
    if (waiter && this.pending === 0 && this.droppedPending === 0) {
      this.waiter = null;
      waiter({ value: entry, done: false });
      return;
    }
    // Make room: the oldest queued records go first (one record always fits).
    while (this.queue.length - this.queueHead > 0 && (this.queue.length - this.queueHead >= this.bufferLimit || this.queuedBytes + weight > this.bufferBytes)) {
      this.queuedBytes -= this.weights[this.queueHead] ?? 0;
      this.queue[this.queueHead] = undefined as unknown as LogEntry;
      this.queueHead++;
      this.droppedPending++;
      this.droppedTotal++;
      this.countDropped(1);
    }
    this.queue.push(entry);
    this.weights.push(weight);
    this.queuedBytes += weight;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.weights = this.weights.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private take(): FollowItem | undefined {
    if (this.leadingDropped > 0) {
      const marker = { dropped: this.leadingDropped };
      this.leadingDropped = 0;
      return marker;
    }
    while (this.backlogIndex < this.backlog.length) {
      const entry = this.resolve(this.backlog[this.backlogIndex] as number);
      if (entry === undefined) {
        // Evicted from the ring before this follower read it.
        this.backlogIndex++;
        this.backlogDropped++;
        this.droppedTotal++;
        this.countDropped(1);
        continue;
      }
      if (this.backlogDropped > 0) {
        const marker = { dropped: this.backlogDropped };
        this.backlogDropped = 0;
        return marker;
      }
      this.backlogIndex++;
      if (this.backlogIndex === this.backlog.length) {
        this.backlog = [];
        this.backlogIndex = 0;
      }
      return entry;
    }
    const dropped = this.droppedPending + this.backlogDropped;
    if (dropped > 0) {
      this.droppedPending = 0;
      this.backlogDropped = 0;
      return { dropped };
    }
    if (this.queueHead < this.queue.length) {
      const e = this.queue[this.queueHead] as LogEntry;
      this.queuedBytes -= this.weights[this.queueHead] ?? 0;
      this.queue[this.queueHead++] = undefined as unknown as LogEntry;
      if (this.queueHead === this.queue.length) {
        this.queue = [];
        this.weights = [];
        this.queueHead = 0;
        this.queuedBytes = 0;
      }
      return e;
    }
    return undefined;
  }

  /** The next record or marker; waits for one; `done` after close() once the queue is read. */
  next(): Promise<IteratorResult<FollowItem>> {
    const item = this.take();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new Error("LogSubscription.next() called while a previous call is pending"));
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Ends the subscription: no new records; what is already queued can still be read. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.detach(this);
    this.onEnd?.();
    this.onEnd = null;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.({ value: undefined, done: true });
  }

  /** Ends the subscription and discards what is queued (used by `break` in for-await and abort). */
  discard(): void {
    this.backlog = [];
    this.backlogIndex = 0;
    this.backlogDropped = 0;
    this.queue = [];
    this.weights = [];
    this.queueHead = 0;
    this.queuedBytes = 0;
    this.droppedPending = 0;
    this.leadingDropped = 0;
    this.close();
  }

  return(): Promise<IteratorResult<FollowItem>> {
    this.discard();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** The ring buffer of recent records. */
export class LogRing {
  readonly capacity: number;
  readonly maxBytes: number;
  private readonly decodeLine: LogRingOptions["decodeLine"];
  private readonly slots: (Slot | undefined)[];
  private head = 0;
  private size = 0;
  private bytes = 0;
  private seq = 0;
  private readonly subscribers = new Set<LogSubscription>();
  private readonly byLevel: Record<LogLevel, number> = { trace: 0, debug: 0, info: 0, warn: 0, error: 0, fatal: 0 };
  private dropped = 0;

  constructor(options: LogRingOptions = {}) {
    this.capacity = clampInt(options.capacity, DEFAULT_RING_CAPACITY, 1, MAX_RING_CAPACITY);
    this.maxBytes = clampInt(options.maxBytes, DEFAULT_RING_MAX_BYTES, 1, Number.MAX_SAFE_INTEGER);
    this.decodeLine = options.decodeLine;
    this.slots = new Array<Slot | undefined>(this.capacity);
  }

  /** Seq of the newest record (0 when none was logged). */
  get lastSeq(): number {
    return this.seq;
  }

  /** Seq of the oldest record held (lastSeq + 1 when empty). */
  get oldestSeq(): number {
    return this.seq - this.size + 1;
  }

  stats(): RingStats {
    return {
      size: this.size,
      capacity: this.capacity,
      lastSeq: this.seq,
      bytes: this.bytes,
      subscribers: this.subscribers.size,
      appendedByLevel: { ...this.byLevel },
      droppedForFollowers: this.dropped,
    };
  }

  private evictOldest(): void {
    const slot = this.slots[this.head];
    if (slot) this.bytes -= slot.weight;
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
  }

  private store(slot: Slot): void {
    if (this.size === this.capacity) this.evictOldest();
    while (this.size > 0 && this.bytes + slot.weight > this.maxBytes) this.evictOldest();
    this.slots[(this.head + this.size) % this.capacity] = slot;
    this.size++;
    this.bytes += slot.weight;
    if (this.subscribers.size > 0) {
      const entry = this.entryOf(slot);
      for (const s of this.subscribers) s.offer(entry, slot.rank, slot.weight);
    }
  }

  /**
   * Appends a record that is already redacted, assigns its seq and hands it to subscribers.
   * `weight` is its approximate size for the memory budget (default: message and field text).
   */
  append(record: NewLogEntry, weight?: number): LogEntry {
    const entry: LogEntry = {
      seq: this.seq + 1,
      time: record.time,
      level: record.level,
      component: record.component,
      message: record.message,
      fields: record.fields,
    };
    this.byLevel[entry.level] = (this.byLevel[entry.level] ?? 0) + 1;
    const slot: Slot = { seq: entry.seq, rank: levelRank(entry.level), weight: 0, entry, line: null, answerBytes: -1 };
    slot.weight = weight ?? this.answerBytes(slot, entry);
    this.seq++;
    this.store(slot);
    return entry;
  }

  /**
   * Appends an already redacted serialized record (held as is: compact, and decoded with the
   * `decodeLine` option only when read). Returns its seq.
   */
  appendLine(line: string, level: LogLevel): number {
    if (!this.decodeLine) throw new Error("LogRing.appendLine needs the decodeLine option");
    this.byLevel[level] = (this.byLevel[level] ?? 0) + 1;
    this.seq++;
    this.store({ seq: this.seq, rank: levelRank(level), weight: line.length, entry: null, line, answerBytes: -1 });
    return this.seq;
  }

  private entryOf(slot: Slot): LogEntry {
    if (slot.entry) return slot.entry;
    const d = (this.decodeLine as NonNullable<LogRingOptions["decodeLine"]>)(slot.line as string);
    return { seq: slot.seq, time: d.time, level: d.level, component: d.component, message: d.message, fields: d.fields };
  }

  private answerBytes(slot: Slot, entry: LogEntry): number {
    if (slot.answerBytes < 0) slot.answerBytes = Buffer.byteLength(entry.message) + Buffer.byteLength(JSON.stringify(entry.fields));
    return slot.answerBytes;
  }

  private slotAt(seq: number): Slot {
    return this.slots[(this.head + (seq - this.oldestSeq)) % this.capacity] as Slot;
  }

  /** True when a cursor no longer continues the ring: records after it were evicted, or it is ahead. */
  private cursorLost(afterSeq: number | undefined): boolean {
    return afterSeq !== undefined && (afterSeq < this.oldestSeq - 1 || afterSeq > this.seq);
  }

  /** The record with this seq while the ring holds it. */
  private entryAt(seq: number): LogEntry | undefined {
    if (seq < this.oldestSeq || seq > this.seq) return undefined;
    return this.entryOf(this.slotAt(seq));
  }

  /**
   * The seqs of the newest `limit` matching records with seq > floor, newest first. Records are
   * decoded only when a text filter needs them (a follow's backlog of 5,000 decoded records per
   * follower was most of what followers cost).
   */
  private collectSeqs(f: CompiledFilter, floor: number, limit: number): number[] {
    if (f.contains !== "" || f.pattern !== undefined) return this.collect(f, floor, limit).slots.map((s) => s.seq);
    const seqs: number[] = [];
    for (let seq = this.seq; seq > floor && seqs.length < limit; seq--) if (this.slotAt(seq).rank >= f.minRank) seqs.push(seq);
    return seqs;
  }

  /** The newest `limit` matching records with seq > floor, newest first (slots and entries). */
  private collect(f: CompiledFilter, floor: number, limit: number): { slots: Slot[]; entries: LogEntry[] } {
    const slots: Slot[] = [];
    const entries: LogEntry[] = [];
    for (let seq = this.seq; seq > floor && entries.length < limit; seq--) {
      const slot = this.slotAt(seq);
      if (slot.rank < f.minRank) continue;
      if (f.containsInLine && slot.line !== null && !slot.line.includes(f.contains)) continue;
      const entry = this.entryOf(slot);
      if (!entryMatches(entry, f)) continue;
      slots.push(slot);
      entries.push(entry);
    }
    return { slots, entries };
  }

  /**
   * The newest `limit` records matching the filters (after `afterSeq` unless it fell out of the
   * ring, which sets `reset`), oldest first, cut from the oldest side to `maxBytes` (which sets
   * `truncated`; one record is always kept).
   */
  tail(query: TailQuery = {}): TailResult {
    const limit = clampInt(query.limit, DEFAULT_TAIL_LIMIT, 1, Number.MAX_SAFE_INTEGER);
    const maxBytes = clampInt(query.maxBytes, DEFAULT_TAIL_MAX_BYTES, 1, Number.MAX_SAFE_INTEGER);
    const reset = this.cursorLost(query.afterSeq);
    const floor = query.afterSeq === undefined || reset ? this.oldestSeq - 1 : query.afterSeq;
    const { slots, entries: matches } = this.collect(compileFilter(query), floor, limit);
    let total = 0;
    let kept = 0;
    for (; kept < matches.length; kept++) {
      const b = this.answerBytes(slots[kept] as Slot, matches[kept] as LogEntry);
      if (kept > 0 && total + b > maxBytes) break;
      total += b;
    }
    const entries = matches.slice(0, kept).reverse();
    return { entries, nextSeq: this.seq, reset, truncated: kept < matches.length };
  }

  /**
   * Subscribes to records appended from now on that match `filter`. Records are queued per
   * subscriber up to `bufferLimit`; past that the oldest queued ones are dropped and the next
   * read yields `{dropped: N}` before the rest.
   */
  subscribe(filter: LogFilter = {}, options: SubscribeOptions = {}): LogSubscription {
    return this.follow({ ...options, filter, tail: 0 });
  }

  /**
   * `tail` then `subscribe`, atomically: first the newest `tail` matching records held now (or
   * all held ones after `afterSeq`, preceded by `{dropped: N}` when records after it were
   * evicted; a cursor ahead of the ring counts as absent), then live ones.
   */
  follow(options: FollowOptions = {}): LogSubscription {
    const f = compileFilter(options.filter ?? {});
    const bufferLimit = clampInt(options.bufferLimit, DEFAULT_SUBSCRIBER_BUFFER, 1, Number.MAX_SAFE_INTEGER);
    const bufferBytes = clampInt(options.bufferBytes, DEFAULT_SUBSCRIBER_BUFFER_BYTES, 1, Number.MAX_SAFE_INTEGER);
    let backlog: number[] = [];
    let lost = 0;
    // A cursor ahead of the ring comes from an earlier process: fall back to the last `tail`.
    if (options.afterSeq !== undefined && options.afterSeq <= this.seq) {
      const afterSeq = Math.max(0, Math.floor(options.afterSeq));
      if (afterSeq < this.oldestSeq - 1) lost = this.oldestSeq - 1 - afterSeq;
      backlog = this.collectSeqs(f, Math.max(afterSeq, this.oldestSeq - 1), Number.MAX_SAFE_INTEGER).reverse();
    } else {
      const n = clampInt(options.tail, DEFAULT_TAIL_LIMIT, 0, Number.MAX_SAFE_INTEGER);
      if (n > 0) backlog = this.collectSeqs(f, this.oldestSeq - 1, n).reverse();
    }
    const sub = new LogSubscription(
      f,
      bufferLimit,
      bufferBytes,
      backlog,
      lost,
      (s) => this.subscribers.delete(s),
      (seq) => this.entryAt(seq),
      (n) => (this.dropped += n),
    );
    this.subscribers.add(sub);
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) sub.discard();
      else {
        const onAbort = () => sub.discard();
        signal.addEventListener("abort", onAbort, { once: true });
        sub.onEnd = () => signal.removeEventListener("abort", onAbort);
      }
    }
    return sub;
  }

  /** Ends every subscription (server shutdown); each can still read what it had queued. */
  closeAll(): void {
    for (const s of [...this.subscribers]) s.close();
  }
}
