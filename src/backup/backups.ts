import { randomBytes, createHash } from "node:crypto";
import { constants, createReadStream, createWriteStream } from "node:fs";
import { copyFile, lstat, mkdir, open, readdir, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fsyncDir } from "../state/durable.js";
import { readBackupArchive, refusalMessage, writeBackupArchive, type Problem, type ReadBackupResult } from "./archive.js";
import { manifestKey, type Manifest, type VerificationKey } from "./manifest.js";
import { listStateFiles, SECTIONS, checkSectionNames, type Exclusion, type SectionName, type StateFile, type StateListing } from "./sections.js";
import { configChanges, isCorruptCopy, taskChanges, type ConfigChanges, type TaskChanges } from "./restore-summary.js";
import { finishSwap, recoverInterruptedSwap, rollBackSwap, swapIntoPlace, type SwapMarker } from "./swap.js";
import type { TaskRecord } from "../tasks/model.js";
import { queueFileText } from "../tasks/queue-file.js";
import type { TasksDatabase } from "../tasks/task-store.js";
import { databaseQueueFile, FILE_STORE_FILES, takeStagedTasks, withDatabaseQueue } from "./database-tasks.js";
import { failedWhileCommitting } from "../tasks/postgres/transaction.js";

/** What the running server lets a backup or restore pause: the stores that write into the state dir. */
export interface StateWriters {
  /** Runs fn while no store writes (used for the instant a consistent copy is taken). */
  holdWrites<T>(fn: () => Promise<T>): Promise<T>;
  /** Stops writers and closes stores before a restore swaps files under them. */
  pause(): Promise<void>;
  /** Reloads stores from disk and restarts writers after a restore (or its rollback). */
  resume(): Promise<void>;
}

export class BackupRefusedError extends Error {
  constructor(
    message: string,
    readonly problems: Problem[] = [],
  ) {
    super(message);
  }
}
/** A precondition of the operation does not hold (e.g. --force needed). */
export class BackupPreconditionError extends Error {}
/** A restore swapped its state in, the stores could not load it, and the previous state was put back. */
export class RestoreRolledBackError extends Error {}

export interface BackupSummary {
  caraVersion: string;
  createdAt: Date;
  host: string;
  sections: { name: SectionName; files: number; bytes: number }[];
  totalFiles: number;
  totalBytes: number;
}

export interface SectionDiff {
  section: SectionName;
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: number;
}

export interface RestoreOutcome {
  dryRun: boolean;
  manifest: Manifest;
  foreign: boolean;
  /** The key that verified the manifest (absent when foreign). */
  signedBy?: { keyId: string; previous: boolean };
  diffs: SectionDiff[];
  /** Tasks by id and per state (when the tasks section is restored). */
  tasks?: TaskChanges;
  /** Config key paths (when the config section is restored); never values. */
  config?: ConfigChanges;
  /** Copies of corrupt files in the live tasks dir that the restore keeps (`tasks/queue.json.corrupt.<ms>`). */
  keptFiles: string[];
  restoredSections: SectionName[];
  preRestoreBackupPath?: string;
}

/** One archive in the backups dir (BackupManager.list). */
export interface BackupListEntry {
  name: string;
  path: string;
  size: number;
  mtime: Date;
  /** From the manifest (absent when it could not be read). */
  createdAt?: Date;
  sections?: SectionName[];
  caraVersion?: string;
  /** The manifest's HMAC does not verify with this deployment's key. */
  foreign?: boolean;
  /** Why the marker or manifest could not be read. */
  error?: string;
}

export interface BackupManagerOptions {
  stateDir: string;
  backupsDir: string;
  secret: string;
  /** Verification keys of earlier server secrets: archives they signed are accepted, with a note. */
  previousKeys?: readonly VerificationKey[];
  caraVersion: string;
  writers: StateWriters;
  /** Called after every archive written into backupsDir (status: last backup). */
  onBackupWritten?: (path: string) => void;
  /**
   * Proves that a staged restore (laid out as a state dir at `root`; `entries` will be swapped
   * in) loads, writing nothing; throws with the reason when it would not.
   */
  checkRestored?: (root: string, entries: readonly string[]) => Promise<void>;
  /**
   * The task database, when tasks are stored in PostgreSQL: a backup writes the archive's
   * `tasks/queue.json` from one snapshot of it (the file store's own queue.json and journal, if
   * any are left in the tasks dir, are not the deployment's tasks and are not archived), and a
   * restore of the tasks section replaces its tasks with the archive's.
   */
  tasksDatabase?: TasksDatabase;
  /** Clock for archive names (tests). */
  now?: () => number;
  /** Told about every backup and (non-dry-run) restore that finished or failed (metrics). */
  onOperation?: (operation: "backup" | "restore", ok: boolean, ms: number) => void;
}

const sha256File = async (path: string): Promise<string> => {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
};

/**
 * Backups of a live state dir and verified, atomic restores into it. Knows nothing about RPC:
 * the service adapts streams to and from it.
 */
export class BackupManager {
  /** One restore at a time (two would race for the swap marker and the stores). */
  private restoring = false;

  constructor(private readonly o: BackupManagerOptions) {}

  get directory(): string {
    return this.o.backupsDir;
  }

  /** Id of the key that signs new archives (the current server secret's). */
  get keyId(): string {
    return manifestKey(this.o.secret).keyId;
  }

  /**
   * Lists the selected sections and takes a consistent copy of the files that live writers
   * change (the task store) while writes are held, so the archive matches one instant.
   * Returns the listing (with absPaths pointing at the copies) and a cleanup function.
   */
  private async snapshot(sections?: readonly string[]): Promise<{ listing: StateListing; copies: Map<string, string>; cleanup: () => Promise<void> }> {
    // Inside backups/ (never archived itself), on the state dir's filesystem.
    await mkdir(this.o.backupsDir, { recursive: true, mode: 0o700 });
    const snapDir = join(this.o.backupsDir, `.snapshot-${randomBytes(4).toString("hex")}`);
    await mkdir(snapDir, { mode: 0o700 });
    try {
      const copies = new Map<string, string>();
      const listing = await this.o.writers.holdWrites(async () => {
        let l = await listStateFiles(this.o.stateDir, sections);
        const db = this.o.tasksDatabase;
        // The database's tasks replace the file store's files: listed, then read in one snapshot.
        if (db && (sections === undefined || sections.includes("tasks"))) l = withDatabaseQueue(l, this.o.stateDir);
        for (const f of l.files) {
          if (f.section !== "tasks") continue;
          const copy = join(snapDir, f.relPath.replaceAll("/", "__"));
          if (db && f.relPath === databaseQueueFile) await writeFile(copy, queueFileText(await db.snapshot()), { mode: 0o600 });
          else await copyFile(f.absPath, copy);
          const st = await stat(copy);
          copies.set(f.absPath, copy);
          (f as { size: number }).size = st.size;
        }
        return l;
      });
      return { listing, copies, cleanup: () => rm(snapDir, { recursive: true, force: true }) };
    } catch (err) {
      await rm(snapDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** What a backup of these sections will hold (for the stream's header). */
  static summarize(listing: StateListing, caraVersion: string, now: Date): BackupSummary {
    const sections = listing.sections.map((name) => {
      const files = listing.files.filter((f) => f.section === name);
      return { name, files: files.length, bytes: files.reduce((a, f) => a + f.size, 0) };
    });
    return {
      caraVersion,
      createdAt: now,
      host: hostname(),
      sections,
      totalFiles: listing.files.length,
      totalBytes: listing.files.reduce((a, f) => a + f.size, 0),
    };
  }

  /**
   * Streams a backup into `output`. `onHeader` receives the summary and exclusions before the
   * first byte is written.
   */
  async createBackup(
    output: Writable,
    options: { sections?: readonly string[]; onHeader?: (summary: BackupSummary, excluded: Exclusion[]) => void } = {},
  ): Promise<{ manifest: Manifest; sha256: string; bytes: number; excluded: Exclusion[] }> {
    return this.timed("backup", () => this.writeBackup(output, options));
  }

  /** Runs an operation, telling onOperation whether it finished and how long it took. */
  private async timed<T>(operation: "backup" | "restore", fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await fn();
      this.o.onOperation?.(operation, true, performance.now() - started);
      return result;
    } catch (err) {
      this.o.onOperation?.(operation, false, performance.now() - started);
      throw err;
    }
  }

  private async writeBackup(
    output: Writable,
    options: { sections?: readonly string[]; onHeader?: (summary: BackupSummary, excluded: Exclusion[]) => void },
  ): Promise<{ manifest: Manifest; sha256: string; bytes: number; excluded: Exclusion[] }> {
    const sections = options.sections && options.sections.length > 0 ? checkSectionNames(options.sections) : undefined;
    const { listing, copies, cleanup } = await this.snapshot(sections);
    try {
      const now = new Date();
      options.onHeader?.(BackupManager.summarize(listing, this.o.caraVersion, now), listing.excluded);
      const res = await writeBackupArchive({
        stateDir: this.o.stateDir,
        files: listing.files as StateFile[],
        sections: listing.sections,
        secret: this.o.secret,
        caraVersion: this.o.caraVersion,
        output,
        now,
        // Files that live writers change are read from the copies taken while writes were held.
        readFrom: copies,
      });
      return { manifest: res.manifest, sha256: res.sha256, bytes: res.bytes, excluded: listing.excluded };
    } finally {
      await cleanup();
    }
  }

  /** Writes a backup into the backups dir (temp file + rename, 0600) and keeps the newest `keep` of this prefix. */
  async backupToDir(prefix: string, keep?: number): Promise<{ path: string; sha256: string; bytes: number }> {
    await mkdir(this.o.backupsDir, { recursive: true, mode: 0o700 });
    const stamp = new Date(this.o.now?.() ?? Date.now())
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d+Z$/, "Z");
    const final = join(this.o.backupsDir, `${prefix}-${stamp}-${randomBytes(2).toString("hex")}.tar.gz`);
    const tmp = `${final}.partial`;
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    const out = createWriteStream("", { fd: handle.fd, autoClose: false });
    try {
      const res = await this.createBackup(out);
      await new Promise<void>((resolve, reject) => (out.writableFinished ? resolve() : out.once("finish", resolve).once("error", reject)));
      await handle.sync();
      await handle.close();
      await rename(tmp, final);
      await fsyncDir(this.o.backupsDir);
      this.o.onBackupWritten?.(final);
      if (keep !== undefined) await this.prune(prefix, keep);
      return { path: final, sha256: res.sha256, bytes: res.bytes };
    } catch (err) {
      out.destroy();
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  private async prune(prefix: string, keep: number): Promise<void> {
    const names = (await readdir(this.o.backupsDir))
      .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith(".tar.gz"))
      .sort()
      .reverse();
    for (const n of names.slice(keep)) await unlink(join(this.o.backupsDir, n)).catch(() => undefined);
  }

  /** Verifies an archive without extracting it. */
  async inspect(input: Readable, allowForeign = true): Promise<ReadBackupResult> {
    return readBackupArchive(input, { secret: this.o.secret, previousKeys: this.o.previousKeys ?? [], allowForeign });
  }

  /** Resolves a backup name to a path inside the backups dir (no traversal). */
  backupPath(name: string): string {
    if (!/^[A-Za-z0-9._-]+\.tar\.gz$/.test(name) || name.startsWith("."))
      throw new BackupPreconditionError(`backup name '${name.slice(0, 100)}' is not a file name in ${this.o.backupsDir}`);
    return join(this.o.backupsDir, name);
  }

  /**
   * Verified, atomic restore: stage and verify everything first (nothing in the state dir changes
   * if the archive has any problem), take a pre-restore backup, pause writers, swap the sections
   * in, resume. Any failure puts back exactly the previous state.
   */
  async restore(input: Readable, options: { dryRun: boolean; sections?: readonly string[]; force: boolean; allowForeign: boolean }): Promise<RestoreOutcome> {
    if (this.restoring) {
      input.destroy();
      throw new BackupPreconditionError("another restore is in progress; try again once it has finished");
    }
    this.restoring = true;
    try {
      return options.dryRun ? await this.restoreOnce(input, options) : await this.timed("restore", () => this.restoreOnce(input, options));
    } finally {
      this.restoring = false;
    }
  }

  private async restoreOnce(
    input: Readable,
    options: { dryRun: boolean; sections?: readonly string[]; force: boolean; allowForeign: boolean },
  ): Promise<RestoreOutcome> {
    const id = randomBytes(4).toString("hex");
    const staging = join(this.o.stateDir, `.restore-staging-${id}`);
    const ready = join(this.o.stateDir, `.restore-ready-${id}`);
    const holding = join(this.o.stateDir, `.restore-holding-${id}`);
    const wanted = options.sections && options.sections.length > 0 ? checkSectionNames(options.sections) : undefined;
    await mkdir(staging, { mode: 0o700 });
    try {
      const read = await readBackupArchive(input, {
        secret: this.o.secret,
        previousKeys: this.o.previousKeys ?? [],
        allowForeign: options.allowForeign,
        stagingDir: staging,
        ...(wanted ? { sections: wanted } : {}),
        fsync: !options.dryRun,
      });
      if (!read.ok || !read.manifest) {
        const foreignOnly = read.problems.length > 0 && read.problems.every((p) => p.kind === "foreign");
        throw new BackupRefusedError(
          foreignOnly ? `${refusalMessage(read.problems)}; pass --allow-foreign to restore a backup made by another deployment` : refusalMessage(read.problems),
          read.problems,
        );
      }
      const manifest = read.manifest;
      const inArchive = manifest.sections.map((s) => s.name);
      if (wanted) {
        const missing = wanted.filter((s) => !inArchive.includes(s));
        if (missing.length > 0)
          throw new BackupPreconditionError(`the backup has no section ${missing.join(", ")} (it has: ${inArchive.join(", ") || "none"})`);
      }
      const sections = (wanted ?? inArchive).filter((s) => inArchive.includes(s));
      // With the PostgreSQL store, the current tasks are the database's (compared as queue.json).
      const db = sections.includes("tasks") ? this.o.tasksDatabase : undefined;
      const dbTasks = db ? await db.snapshot() : undefined;
      const diffs = await this.diff(sections, read, dbTasks);
      const keptFiles = sections.includes("tasks") ? await this.corruptCopies(staging) : [];
      const tasks = sections.includes("tasks")
        ? await taskChanges(dbTasks ?? join(this.o.stateDir, SECTIONS.tasks.statePath), join(staging, SECTIONS.tasks.archivePath))
        : undefined;
      const outcome: RestoreOutcome = {
        dryRun: options.dryRun,
        manifest,
        foreign: read.foreign,
        ...(read.signedBy ? { signedBy: read.signedBy } : {}),
        diffs,
        ...(tasks ? { tasks } : {}),
        ...(sections.includes("config")
          ? { config: await configChanges(join(this.o.stateDir, SECTIONS.config.statePath), join(staging, SECTIONS.config.archivePath)) }
          : {}),
        keptFiles,
        restoredSections: [],
      };
      if (options.dryRun) return outcome;
      const overwrites = diffs.reduce((a, d) => a + d.changed.length + d.removed.length, 0);
      if (overwrites > 0 && !options.force) {
        throw new BackupPreconditionError(
          `restore would overwrite or remove ${overwrites} existing file${overwrites > 1 ? "s" : ""} in ${diffs
            .filter((d) => d.changed.length + d.removed.length > 0)
            .map((d) => d.section)
            .join(", ")}; review with --dry-run, then pass --force (a pre-restore backup is taken first)`,
        );
      }
      // Lay the staged sections out as the state dir does (config/config.json -> config.json).
      await mkdir(ready, { mode: 0o700 });
      for (const s of sections) {
        const spec = SECTIONS[s];
        const from = join(staging, spec.archivePath);
        try {
          await lstat(from);
          await rename(from, join(ready, spec.statePath));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          if (spec.kind === "dir") await mkdir(join(ready, spec.statePath), { mode: 0o700 });
        }
      }
      // Copies of corrupt files were promised to stay (the store's error names them): they move
      // into the restored tasks dir instead of being swapped out.
      for (const rel of keptFiles) await copyFile(join(this.o.stateDir, rel), join(ready, rel), constants.COPYFILE_EXCL);
      const entries = sections.map((s) => SECTIONS[s].statePath);
      // Prove the restored state loads before anything live changes: an archive whose hashes
      // match can still hold a queue or config this version cannot load.
      if (this.o.checkRestored) {
        await this.o.checkRestored(ready, entries).catch((err: Error) => {
          throw new BackupRefusedError(`the backup's state would not load, so nothing was changed: ${err.message.replaceAll(`${ready}/`, "")}`);
        });
      }
      // The archive's tasks go to the database; the tasks dir keeps the file store's own files.
      const restoredTasks = db ? await takeStagedTasks(join(ready, SECTIONS.tasks.statePath), join(this.o.stateDir, SECTIONS.tasks.statePath)) : undefined;
      // Writers stop first: a change acknowledged after the pre-restore backup would be in
      // neither that backup nor the restored state. Meanwhile they answer "retry shortly".
      await this.o.writers.pause();
      let resumed = false;
      try {
        const pre = await this.backupToDir("pre-restore");
        outcome.preRestoreBackupPath = pre.path;
        const previousTasks = db ? await db.snapshot() : undefined;
        // The database's tasks are replaced (one transaction: it holds either its tasks or the
        // archive's) once every file is in place and before the swap is recorded as done, so a
        // crash before the commit rolls the files back too; only a crash between the commit and
        // that one marker write leaves the new tasks beside the old files (never acknowledged).
        let databaseFailed: Error | undefined;
        const replaceTasks = async (entry: string) => {
          if (!db || !restoredTasks || entry !== entries.at(-1)) return;
          await db.replaceAll(restoredTasks).catch((err: Error) => {
            databaseFailed = err;
            throw err;
          });
        };
        let marker: SwapMarker;
        try {
          marker = await swapIntoPlace(this.o.stateDir, ready, holding, entries, replaceTasks);
        } catch (err) {
          await recoverInterruptedSwap(this.o.stateDir, { removeLeftovers: false }).catch(() => undefined);
          if (databaseFailed && failedWhileCommitting(databaseFailed))
            // The COMMIT was sent: the database may hold the archive's tasks or its previous ones.
            throw new RestoreRolledBackError(
              `${databaseFailed.message}; the previous files were put back, but the task database may or may not have kept the archive's tasks: run the restore again once the database is reachable (or restore the pre-restore backup ${pre.path} to go back)`,
            );
          if (databaseFailed)
            throw new RestoreRolledBackError(
              `${databaseFailed.message.replace(/; nothing was changed$/, "")}; the previous state was put back and nothing was changed`,
            );
          throw err;
        }
        try {
          await this.o.writers.resume();
          resumed = true;
        } catch (err) {
          // The stores refused the new state: put the previous state back (resumed below).
          await rollBackSwap(this.o.stateDir, marker);
          const putBack =
            db && previousTasks
              ? await db.replaceAll(previousTasks).then(
                  () => undefined,
                  (e: Error) => e,
                )
              : undefined;
          // A put-back that failed at its COMMIT may have put the previous tasks back, or not.
          const holds = putBack && failedWhileCommitting(putBack) ? "may still hold" : "still holds";
          throw new RestoreRolledBackError(
            putBack === undefined
              ? `the restored state failed to load (${(err as Error).message}); the previous state was put back and nothing was changed`
              : `the restored state failed to load (${(err as Error).message}); the previous files were put back, but the task database ${holds} the restored tasks (${putBack.message}); restore ${pre.path} once the database is reachable`,
          );
        }
        await finishSwap(this.o.stateDir, marker);
      } finally {
        if (!resumed) await this.o.writers.resume();
      }
      outcome.restoredSections = sections;
      return outcome;
    } finally {
      await rm(staging, { recursive: true, force: true });
      await rm(ready, { recursive: true, force: true });
    }
  }

  /** Per section: files the restore would add, change and remove (the section becomes the backup). */
  private async diff(sections: SectionName[], read: ReadBackupResult, dbTasks?: readonly TaskRecord[]): Promise<SectionDiff[]> {
    const live = await listStateFiles(this.o.stateDir, sections).catch(() => undefined);
    const out: SectionDiff[] = [];
    for (const s of sections) {
      const incoming = new Map(read.files.filter((f) => f.section === s).map((f) => [f.path, f.sha256]));
      const current = new Map<string, string>();
      const fileStore = s === "tasks" && dbTasks ? new Set(FILE_STORE_FILES.map((n) => `tasks/${n}`)) : new Set<string>();
      for (const f of live?.files.filter((x) => x.section === s && !fileStore.has(x.archivePath)) ?? [])
        current.set(f.archivePath, await sha256File(f.absPath));
      // The database's tasks count as the queue.json a backup would write of them now.
      if (s === "tasks" && dbTasks && dbTasks.length > 0) current.set(databaseQueueFile, createHash("sha256").update(queueFileText(dbTasks)).digest("hex"));
      const d: SectionDiff = { section: s, added: [], changed: [], removed: [], unchanged: 0 };
      for (const [path, hash] of incoming) {
        const had = current.get(path);
        if (had === undefined) d.added.push(path);
        else if (had !== hash) d.changed.push(path);
        else d.unchanged++;
      }
      for (const path of current.keys()) if (!incoming.has(path) && !(s === "tasks" && isCorruptCopy(path))) d.removed.push(path);
      out.push(d);
    }
    return out;
  }

  /** Corrupt-file copies in the live tasks dir that the staged tasks section does not hold (state-dir relative). */
  private async corruptCopies(staging: string): Promise<string[]> {
    const dir = SECTIONS.tasks.statePath;
    const live = await readdir(join(this.o.stateDir, dir)).catch(() => [] as string[]);
    const staged = new Set(await readdir(join(staging, SECTIONS.tasks.archivePath)).catch(() => [] as string[]));
    return live
      .filter((n) => isCorruptCopy(n) && !staged.has(n))
      .sort()
      .map((n) => `${dir}/${n}`);
  }

  /**
   * Archives in the backups dir, newest first, with what their manifests say. Only the head of
   * each archive (marker and manifest) is read; an archive whose head cannot be read is listed
   * with `error` (and its file time) instead of failing the list. Symlinks, non-regular files and
   * partial writes (`*.partial`) are skipped.
   */
  async list(): Promise<BackupListEntry[]> {
    let names: string[];
    try {
      names = (await readdir(this.o.backupsDir)).filter((n) => n.endsWith(".tar.gz"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out: BackupListEntry[] = [];
    for (const name of names) {
      const path = join(this.o.backupsDir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ name, path, size: st.size, mtime: st.mtime, ...(await this.readHead(path)) });
    }
    const time = (e: BackupListEntry) => (e.createdAt ?? e.mtime).getTime();
    return out.sort((a, b) => time(b) - time(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** What the marker and manifest of an archive say (the rest of the archive is not read), or why they cannot be read. */
  private async readHead(path: string): Promise<Pick<BackupListEntry, "createdAt" | "sections" | "caraVersion" | "foreign" | "error">> {
    let input: Readable;
    try {
      const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      input = handle.createReadStream({ highWaterMark: 64 * 1024 });
    } catch (err) {
      return { error: `cannot open it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    try {
      const res = await readBackupArchive(input, { secret: this.o.secret, previousKeys: this.o.previousKeys ?? [], allowForeign: true, headOnly: true });
      const first = res.problems[0];
      if (!res.manifest || first) return { error: first?.message ?? "archive has no manifest.json" };
      return {
        createdAt: new Date(res.manifest.createdAt),
        sections: res.manifest.sections.map((s) => s.name),
        caraVersion: res.manifest.caraVersion,
        foreign: res.foreign,
      };
    } catch (err) {
      return { error: `cannot read it: ${(err as Error).message}` };
    } finally {
      input.destroy();
    }
  }
}
