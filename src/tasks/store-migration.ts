/**
 * `cara tasks migrate`: moves a deployment's tasks from one store to the other, with no server
 * running on the state dir (its lock is held throughout, so no server starts meanwhile).
 *
 * Order, so that a failure at any step leaves a deployment that works as before:
 *   1. read every task of the source (the file store as it would load: queue.json with the
 *      journal replayed; the database in one REPEATABLE READ snapshot);
 *   2. write them all into the target in one durable step (one transaction; for files, the
 *      journal emptied, then queue.json written atomically);
 *   3. only then switch `tasks.store` in config.json (one atomic durable write).
 * The source is left as it was: the way back is the same command the other way (`--replace`,
 * since the old copy is still there). Setting tasks.store back by hand resumes the old copy as it
 * was, so tasks finished since would run again: prefer the command.
 * Refused while a cara server runs on the database when that could run a task twice: moving the
 * tasks out of it, or replacing the tasks in it.
 * The records move exactly as stored (ids, states, attempts, payloads, idempotency keys, times).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig } from "../state/config.js";
import { writeFileDurable } from "../state/durable.js";
import { acquireStateLock, LockHeldError } from "../state/lock.js";
import { statePaths } from "../state/paths.js";
import { TASK_STATES, type TaskRecord, type TaskStateName } from "./model.js";
import { redactUrl } from "./postgres/redact.js";
import { OfflineTaskDatabase, TableNotEmptyError } from "./postgres/task-database.js";
import { queueFileText } from "./queue-file.js";
import { FileTaskStore } from "./store.js";

export type StoreName = "file" | "postgres";

/** The migration cannot be done as asked; nothing was changed. */
export class StoreMigrationRefused extends Error {}

export interface StoreMigrationReport {
  from: StoreName;
  to: StoreName;
  stateDir: string;
  /** The database, password redacted. */
  database: string;
  /** Tasks copied (or that would be, on a dry run). */
  tasks: number;
  /** Those tasks per state (every state, in the model's order). */
  states: Record<TaskStateName, number>;
  /** Tasks the target held before (replaced with --replace). */
  targetTasks: number;
  dryRun: boolean;
  /** config.json, whose tasks.store now names `to` (unless a dry run). */
  config: string;
  /** Where the source's tasks stay. */
  sourceKept: string;
}

export interface StoreMigrationOptions {
  stateDir: string;
  to: StoreName;
  replace: boolean;
  dryRun: boolean;
  env: NodeJS.ProcessEnv;
}

export async function migrateTaskStore(o: StoreMigrationOptions): Promise<StoreMigrationReport> {
  const paths = statePaths(o.stateDir);
  let lock;
  try {
    lock = await acquireStateLock(o.stateDir, paths.lock);
  } catch (err) {
    if (err instanceof LockHeldError)
      throw new StoreMigrationRefused(
        `${err.message}: stop it first (kill -TERM ${err.pid}, or stop its service; it finishes running attempts and exits), then run cara tasks migrate again`,
      );
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new StoreMigrationRefused(`there is no state dir at ${o.stateDir}`);
    throw err;
  }
  try {
    return await migrateLocked(o, paths);
  } finally {
    await lock.release();
  }
}

async function migrateLocked(o: StoreMigrationOptions, paths: ReturnType<typeof statePaths>): Promise<StoreMigrationReport> {
  const config = await loadConfig(paths.config);
  const from: StoreName = config.tasks?.store === "postgres" ? "postgres" : "file";
  if (from === o.to) throw new StoreMigrationRefused(`the tasks are already in the ${o.to} store (tasks.store in ${paths.config}): nothing to migrate`);
  const url = o.env.CARAPACE_DATABASE_URL || config.tasks?.postgres?.url;
  if (!url) throw new StoreMigrationRefused("no database URL: set CARAPACE_DATABASE_URL (or tasks.postgres.url in config.json), then run again");
  if (!/^postgres(ql)?:\/\/./.test(url))
    throw new StoreMigrationRefused("the database URL is not a PostgreSQL URL (postgres://user:password@host:port/database)");
  const database = redactUrl(url);
  const queueFile = join(paths.tasksDir, "queue.json");
  const journalFile = join(paths.tasksDir, "queue.journal");
  const db = await OfflineTaskDatabase.connect(url, "cara tasks migrate");
  try {
    const records = from === "file" ? await FileTaskStore.readRecords(paths.tasksDir) : await db.snapshot();
    const targetTasks = o.to === "postgres" ? await db.count() : await fileTaskCount(paths.tasksDir, o.replace);
    if (targetTasks > 0 && !o.replace) {
      const where = o.to === "postgres" ? `the task database ${database}` : `the file store in ${paths.tasksDir}`;
      throw new StoreMigrationRefused(
        `${where} already holds ${plural(targetTasks)}: pass --replace to replace them with the ${plural(records.length)} of the ${from} store (take a backup first), or empty it`,
      );
    }
    // Servers on the database run its tasks: moving them out while they run (or replacing the
    // tasks they are running) would run tasks twice. Adding tasks to a shared queue is safe.
    if (from === "postgres" || (o.to === "postgres" && targetTasks > 0)) {
      const servers = await db.runningServers();
      if (servers > 0)
        throw new StoreMigrationRefused(
          `${servers === 1 ? "1 cara server is" : `${servers} cara servers are`} running on the task database ${database} and running its tasks: stop ${servers === 1 ? "it" : "them"} first (moving the tasks meanwhile would run tasks twice); nothing was changed`,
        );
    }
    const report: StoreMigrationReport = {
      from,
      to: o.to,
      stateDir: o.stateDir,
      database,
      tasks: records.length,
      states: countStates(records),
      targetTasks,
      dryRun: o.dryRun,
      config: paths.config,
      sourceKept: from === "file" ? `${queueFile} and ${journalFile}` : `the task database ${database}`,
    };
    if (o.dryRun) return report;
    if (o.to === "postgres") {
      await db.replaceAll(records, { requireEmpty: !o.replace }).catch((err: unknown) => {
        if (err instanceof TableNotEmptyError)
          throw new StoreMigrationRefused(`the task database ${database} got ${plural(err.count)} meanwhile (another server?): nothing was changed`);
        throw err;
      });
    } else {
      await mkdir(paths.tasksDir, { recursive: true, mode: 0o700 });
      // The journal first: once it is empty, queue.json alone is the queue (a crash between the
      // two leaves the old queue.json, unused while tasks.store still names the database).
      await writeFileDurable(journalFile, "");
      await writeFileDurable(queueFile, queueFileText(records));
    }
    // Only after the copy is durable does the deployment switch to it.
    await writeFileDurable(paths.config, `${JSON.stringify({ ...config, tasks: { ...config.tasks, store: o.to } }, null, 2)}\n`);
    return report;
  } finally {
    await db.close();
  }
}

/** Tasks in the file store's files; with --replace an unreadable queue counts as replaceable. */
async function fileTaskCount(dir: string, replace: boolean): Promise<number> {
  try {
    return (await FileTaskStore.readRecords(dir)).length;
  } catch (err) {
    if (replace) return 0;
    throw new StoreMigrationRefused(`${(err as Error).message}; pass --replace to overwrite it`);
  }
}

function countStates(records: readonly TaskRecord[]): Record<TaskStateName, number> {
  const out = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskStateName, number>;
  for (const r of records) out[r.state]++;
  return out;
}

function plural(n: number): string {
  return `${n} task${n === 1 ? "" : "s"}`;
}
