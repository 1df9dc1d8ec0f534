import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { writeFileDurable } from "../state/durable.js";
import { MAX_SCHEDULES, OVERLAP_POLICIES, ScheduleNotFoundError, ScheduleValidationError, type ScheduleRecord } from "./schedule.js";

export const SCHEDULES_FILE = "schedules.json";
const MAX_FILE_BYTES = 4 * 1024 * 1024;

export class ScheduleStoreCorruptError extends Error {}

/**
 * Schedules beside the task queue: `<state>/tasks/schedules.json` (so backups and restores carry
 * them with the queue), `{"version":1,"schedules":[...]}`. Every change is written whole through
 * the durable helper before it is acknowledged or visible; a failed write changes nothing.
 * A corrupt file fails closed: a copy is kept and the error names both and the way out.
 */
export class ScheduleStore {
  readonly file: string;
  private schedules = new Map<string, ScheduleRecord>();
  private closedReason: string | undefined;
  /** Changes wait for each other: one write at a time, in order. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(dir: string) {
    this.file = join(dir, SCHEDULES_FILE);
  }

  static async open(dir: string): Promise<ScheduleStore> {
    const store = new ScheduleStore(dir);
    store.schedules = await readSchedules(store.file, { keepCopy: true });
    return store;
  }

  /** Proves the file in `dir` loads (a staged restore), writing nothing. */
  static async check(dir: string): Promise<{ schedules: number }> {
    return { schedules: (await readSchedules(join(dir, SCHEDULES_FILE), { keepCopy: false })).size };
  }

  list(): ScheduleRecord[] {
    return [...this.schedules.values()].sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1));
  }

  get(id: string): ScheduleRecord {
    const s = this.schedules.get(id.trim());
    if (!s) throw new ScheduleNotFoundError(id);
    return s;
  }

  byName(name: string): ScheduleRecord | undefined {
    return [...this.schedules.values()].find((s) => s.name === name);
  }

  create(rec: ScheduleRecord): Promise<ScheduleRecord> {
    return this.change(() => {
      if (this.schedules.size >= MAX_SCHEDULES) throw new ScheduleValidationError(`at most ${MAX_SCHEDULES} schedules`, "name");
      if (this.byName(rec.name)) throw new ScheduleValidationError(`a schedule named '${rec.name}' exists already`, "name");
      const next = new Map(this.schedules);
      next.set(rec.id, rec);
      return { next, result: rec };
    });
  }

  /** Replaces a schedule with `fn(current)`; resolves once on disk. */
  update(id: string, fn: (current: ScheduleRecord) => ScheduleRecord): Promise<ScheduleRecord> {
    return this.change(() => {
      const current = this.get(id);
      const updated = fn(current);
      if (updated.name !== current.name && this.byName(updated.name))
        throw new ScheduleValidationError(`a schedule named '${updated.name}' exists already`, "name");
      const next = new Map(this.schedules);
      next.set(current.id, updated);
      return { next, result: updated };
    });
  }

  delete(id: string): Promise<ScheduleRecord> {
    return this.change(() => {
      const current = this.get(id);
      const next = new Map(this.schedules);
      next.delete(current.id);
      return { next, result: current };
    });
  }

  /** Stops taking changes (a restore replaces the file); reopen() loads it again. */
  async suspend(reason: string): Promise<void> {
    this.closedReason = reason;
    await this.chain.catch(() => undefined);
  }

  async reopen(): Promise<void> {
    this.schedules = await readSchedules(this.file, { keepCopy: true });
    this.closedReason = undefined;
  }

  get closedBecause(): string | undefined {
    return this.closedReason;
  }

  private change<T>(plan: () => { next: Map<string, ScheduleRecord>; result: T }): Promise<T> {
    const run = this.chain.then(async () => {
      if (this.closedReason) throw new ScheduleStoreClosedError(this.closedReason);
      const { next, result } = plan();
      await writeFileDurable(this.file, `${JSON.stringify({ version: 1, schedules: [...next.values()] }, null, 2)}\n`);
      this.schedules = next;
      return result;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** The store is paused (a restore) or closed (shutdown): retry shortly. */
export class ScheduleStoreClosedError extends Error {}

async function readSchedules(file: string, o: { keepCopy: boolean }): Promise<Map<string, ScheduleRecord>> {
  let raw: Buffer;
  try {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if ((await handle.stat()).size > MAX_FILE_BYTES)
        throw new ScheduleStoreCorruptError(`schedule file ${file} is larger than ${MAX_FILE_BYTES} bytes; restore it from a backup`);
      raw = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof ScheduleStoreCorruptError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return new Map();
    if (code === "ELOOP") throw new ScheduleStoreCorruptError(`refusing to read schedule file ${file}: it is a symbolic link`);
    throw new ScheduleStoreCorruptError(`cannot read schedule file ${file} (${code ?? (err as Error).message})`);
  }
  const problem = parseProblem(raw);
  if (typeof problem !== "string") return problem;
  let kept = "";
  if (o.keepCopy) {
    const copy = `${file}.corrupt.${Date.now()}`;
    kept = await writeFileDurable(copy, raw).then(
      () => ` A copy was kept at ${copy}.`,
      () => "",
    );
  }
  throw new ScheduleStoreCorruptError(
    `schedule file ${file} is corrupt (${problem}); refusing to start rather than lose schedules.${kept} Repair or remove the file, or restore the state from a backup ('cara restore FILE --offline'), then start again.`,
  );
}

/** The schedules in the file, or what is wrong with it. */
function parseProblem(raw: Buffer): Map<string, ScheduleRecord> | string {
  let doc: { version?: unknown; schedules?: unknown };
  try {
    doc = JSON.parse(raw.toString("utf8")) as typeof doc;
  } catch (err) {
    return (err as Error).message;
  }
  if (typeof doc !== "object" || doc === null || doc.version !== 1 || !Array.isArray(doc.schedules)) return 'expected {"version":1,"schedules":[...]}';
  const out = new Map<string, ScheduleRecord>();
  for (const s of doc.schedules as ScheduleRecord[]) {
    const ok =
      typeof s === "object" &&
      s !== null &&
      typeof s.id === "string" &&
      typeof s.name === "string" &&
      typeof s.timezone === "string" &&
      (typeof s.cron === "string" || typeof s.intervalMs === "number") &&
      typeof s.template === "object" &&
      s.template !== null &&
      typeof s.enabled === "boolean" &&
      (OVERLAP_POLICIES as readonly string[]).includes(s.overlap) &&
      typeof s.createdAtMs === "number" &&
      typeof s.anchorMs === "number";
    if (!ok) return `schedule ${JSON.stringify((s as { id?: unknown })?.id ?? "?")} is incomplete`;
    out.set(s.id, { ...s, missedRuns: typeof s.missedRuns === "number" ? s.missedRuns : 0 });
  }
  return out;
}
