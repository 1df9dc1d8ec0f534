/**
 * The tasks section when tasks are stored in PostgreSQL. The archive format does not change: the
 * section holds `tasks/queue.json` as the file store writes it (written from one snapshot of the
 * database) beside the tasks dir's other files (schedules.json, ...). The file store's own
 * `queue.json` and `queue.journal` in the tasks dir, if any (left there by `cara tasks migrate`,
 * which keeps the source), are not the deployment's tasks: a backup leaves them out and a
 * restore leaves them where they are.
 */
import { constants } from "node:fs";
import { copyFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { FileTaskStore } from "../tasks/store.js";
import type { TaskRecord } from "../tasks/model.js";
import type { StateFile, StateListing } from "./sections.js";
import { SECTION_NAMES } from "./sections.js";

/** The archive (and state-dir) path of the queue written from the database. */
export const databaseQueueFile = "tasks/queue.json";
/** The file store's files in the tasks dir. */
export const FILE_STORE_FILES = ["queue.json", "queue.journal"] as const;

const FILE_STORE_LEFT_OUT = "the file store's queue: tasks are stored in PostgreSQL, so the archive's tasks/queue.json is written from the database";

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * The listing with the file store's files of the tasks dir left out (reported as excluded) and
 * `tasks/queue.json` standing for the database's tasks (its size is set once it is written).
 */
export function withDatabaseQueue(listing: StateListing, stateDir: string): StateListing {
  const fileStore = new Set(FILE_STORE_FILES.map((n) => `tasks/${n}`));
  const files = listing.files.filter((f) => !fileStore.has(f.relPath));
  const excluded = [
    ...listing.excluded,
    ...listing.files.filter((f) => fileStore.has(f.relPath)).map((f) => ({ path: f.relPath, reason: FILE_STORE_LEFT_OUT })),
  ].sort((a, b) => compareBytes(a.path, b.path));
  const queue: StateFile = {
    section: "tasks",
    relPath: databaseQueueFile,
    archivePath: databaseQueueFile,
    absPath: join(stateDir, ...databaseQueueFile.split("/")),
    size: 0,
    mode: 0o600,
    mtimeMs: Date.now(),
  };
  const order = (s: string) => SECTION_NAMES.indexOf(s as (typeof SECTION_NAMES)[number]);
  files.push(queue);
  files.sort((a, b) => order(a.section) - order(b.section) || compareBytes(a.archivePath, b.archivePath));
  const sections = listing.sections.includes("tasks") ? listing.sections : [...listing.sections, "tasks" as const].sort((a, b) => order(a) - order(b));
  return { files, sections, excluded };
}

/**
 * Prepares a staged tasks dir for a restore into the database: reads its tasks as the file store
 * would load them (queue.json with the journal replayed), then puts the live file-store files
 * (if any) in place of the staged ones, so the swap leaves them as they are. Returns the tasks.
 */
export async function takeStagedTasks(stagedTasksDir: string, liveTasksDir: string): Promise<TaskRecord[]> {
  const records = await FileTaskStore.readRecords(stagedTasksDir);
  for (const name of FILE_STORE_FILES) {
    await rm(join(stagedTasksDir, name), { force: true });
    await copyFile(join(liveTasksDir, name), join(stagedTasksDir, name), constants.COPYFILE_EXCL).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
  return records;
}
