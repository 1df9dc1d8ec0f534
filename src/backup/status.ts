import { constants } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HealthCheck } from "../ops/checks.js";
import { writeFileDurable } from "../state/durable.js";
import type { Executor } from "../tasks/worker.js";
import type { BackupManager } from "./backups.js";
import { formatBytes } from "../format-bytes.js";

/** What the record holds as the path of a backup streamed to a client (there is no file). */
const STREAMED = "(streamed to a client)";

/** Where the last backup went, for a message: its path, or "streamed to a client". */
const where = (path: string) => (path === STREAMED ? "streamed to a client" : path);

interface LastBackup {
  atMs: number;
  path: string;
  /** Archive size, when known (a streamed backup has no file to stat). */
  bytes?: number;
}

const DAY_MS = 86_400_000;
const LAST_BACKUP_FILE = "last-backup.json";
/** When this deployment was first seen without any backup: the start of the backup check's grace period. */
const FIRST_USE_FILE = "first-use.json";

/** Reads a small JSON record from the backups dir; undefined when absent or unreadable. */
async function readRecord(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const value: unknown = JSON.parse(await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW }));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** "8 days", "1.5 days", "1 day", "5 hours": an age for messages (rounded down). */
const days = (ms: number) => {
  const d = ms / DAY_MS;
  const [n, unit] = d >= 10 ? [Math.floor(d), "day"] : d >= 1 ? [Math.floor(d * 10) / 10, "day"] : [Math.max(0, Math.floor(ms / 3_600_000)), "hour"];
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
};

export interface BackupStateOptions {
  /** The state dir (default: the parent of the backups dir). Its auth/ files date its first use. */
  stateDir?: string;
  /** Clock (tests). */
  now?: () => number;
}

/**
 * When the last backup was taken: an archive written into `<state>/backups/`, or one streamed to
 * a client (`cara backup`), recorded durably in `backups/last-backup.json`; without that record,
 * the newest archive in `backups/`.
 *
 * The `backup` check warns when the last backup is older than `warnAfterDays` (config
 * `backup.warnAfterDays`, default 7; 0 turns the check off). With no backup at all it counts from
 * the deployment's first use, not from the server's start (restarting must not reset it): the
 * time recorded in `backups/first-use.json`, written the first time the check finds no backup,
 * from the oldest of the credentials generated at the first start (`auth/token`,
 * `auth/server-secret`) or else that moment. So a new deployment is "ok, no backup yet" for its
 * first days, and one that never had a backup warns once they are over, whatever its uptime.
 */
export class BackupState {
  private last: LastBackup | undefined;
  private firstUseMs: number | undefined;
  private loaded = false;
  private readonly stateDir: string;
  private readonly now: () => number;

  constructor(
    private readonly dir: string,
    private readonly warnAfterDays: number,
    options: BackupStateOptions = {},
  ) {
    this.stateDir = options.stateDir ?? dirname(dir);
    this.now = options.now ?? Date.now;
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    const rec = await readRecord(join(this.dir, LAST_BACKUP_FILE));
    if (rec && typeof rec.atMs === "number" && Number.isFinite(rec.atMs) && typeof rec.path === "string") {
      this.last = { atMs: rec.atMs, path: rec.path, ...(typeof rec.bytes === "number" && Number.isFinite(rec.bytes) ? { bytes: rec.bytes } : {}) };
    } else this.last = await this.newestArchive();
    this.loaded = true;
  }

  /** The newest archive in the backups dir (by file time), when no backup was recorded. */
  private async newestArchive(): Promise<LastBackup | undefined> {
    let newest: LastBackup | undefined;
    for (const a of await this.archives()) if (!newest || a.mtimeMs > newest.atMs) newest = { atMs: a.mtimeMs, path: a.path };
    return newest;
  }

  private async archives(): Promise<{ path: string; mtimeMs: number }[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith(".tar.gz"));
    } catch {
      return [];
    }
    const out: { path: string; mtimeMs: number }[] = [];
    for (const name of names) {
      const st = await lstat(join(this.dir, name)).catch(() => undefined);
      if (st?.isFile()) out.push({ path: join(this.dir, name), mtimeMs: st.mtimeMs });
    }
    return out;
  }

  /** Start of the grace period without any backup (see the class comment); recorded once. */
  private async firstUse(): Promise<number> {
    if (this.firstUseMs !== undefined) return this.firstUseMs;
    const path = join(this.dir, FIRST_USE_FILE);
    const rec = await readRecord(path);
    if (rec && typeof rec.atMs === "number" && Number.isFinite(rec.atMs)) {
      this.firstUseMs = rec.atMs;
      return rec.atMs;
    }
    let first = this.now();
    for (const f of ["auth/token", "auth/server-secret"]) {
      const st = await lstat(join(this.stateDir, f)).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < first) first = st.mtimeMs;
    }
    this.firstUseMs = first;
    // Best effort: without the record the same files give the same answer after a restart.
    await writeFileDurable(path, JSON.stringify({ atMs: first })).catch(() => undefined);
    return first;
  }

  private async record(path: string, bytes?: number): Promise<void> {
    await this.load();
    this.last = { atMs: this.now(), path, ...(bytes !== undefined ? { bytes } : {}) };
    await writeFileDurable(join(this.dir, LAST_BACKUP_FILE), JSON.stringify(this.last));
  }

  /** The last backup (as the check sees it) and, for an archive in the backups dir, its size. */
  async lastBackup(): Promise<{ atMs: number; bytes?: number } | undefined> {
    await this.load();
    const last = this.last;
    if (!last) return undefined;
    if (last.bytes !== undefined) return { atMs: last.atMs, bytes: last.bytes };
    const st = last.path.startsWith("/") ? await lstat(last.path).catch(() => undefined) : undefined;
    return st?.isFile() ? { atMs: last.atMs, bytes: st.size } : { atMs: last.atMs };
  }

  recordWritten(path: string): Promise<void> {
    return this.record(path).catch(() => undefined);
  }

  recordStreamed(bytes?: number): Promise<void> {
    return this.record(STREAMED, bytes).catch(() => undefined);
  }

  check(): HealthCheck {
    return {
      name: "backup",
      run: async () => {
        if (this.warnAfterDays === 0) return { status: "ok", message: "backup check turned off (backup.warnAfterDays is 0)" };
        await this.load();
        const now = this.now();
        const limit = `${this.warnAfterDays} day${this.warnAfterDays === 1 ? "" : "s"}`;
        const todo = `run 'cara backup --output FILE', or schedule nightly backups into ${this.dir}: cara schedule create --name nightly-backup --cron '0 3 * * *' --payload '{"kind":"backup","keep":7}'`;
        if (!this.last) {
          const since = await this.firstUse();
          const at = new Date(since).toISOString();
          if (now - since > this.warnAfterDays * DAY_MS) {
            return {
              status: "warn",
              message: `no backup of this deployment since it was first used ${days(now - since)} ago (${at}), more than ${limit}: ${todo}`,
            };
          }
          return { status: "ok", message: `no backup yet (deployment first used ${at}; this check warns after ${limit} without one): ${todo}` };
        }
        const age = now - this.last.atMs;
        const at = new Date(this.last.atMs).toISOString();
        if (age > this.warnAfterDays * DAY_MS) {
          return { status: "warn", message: `last backup is ${days(age)} old (${at}, ${where(this.last.path)}), more than ${limit}: ${todo}` };
        }
        return { status: "ok", message: `last backup ${at} (${where(this.last.path)})` };
      },
    };
  }

  async section() {
    await this.load();
    const count = (await this.archives()).length;
    return {
      ...(this.last
        ? {
            lastBackupAt: timestampFromMs(this.last.atMs),
            lastBackupAgeSeconds: BigInt(Math.max(0, Math.floor((this.now() - this.last.atMs) / 1000))),
            lastBackupPath: this.last.path,
          }
        : {}),
      archiveCount: count,
    };
  }
}

/** Task payload `backup {keep}`: an archive into `<state>/backups/`, keeping the newest `keep`. */
export function backupTaskExecutor(manager: BackupManager): Executor {
  return async ({ task }) => {
    const keep = (task.payload as { keep?: number }).keep ?? 7;
    try {
      const res = await manager.backupToDir("scheduled", keep);
      return { kind: "done", result: `${res.path} (${formatBytes(res.bytes)}, sha256 ${res.sha256})` };
    } catch (err) {
      return { kind: "retry", error: `backup failed: ${(err as Error).message}` };
    }
  };
}
