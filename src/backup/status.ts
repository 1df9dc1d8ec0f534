import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HealthCheck } from "../ops/checks.js";
import { writeFileDurable } from "../state/durable.js";
import type { Executor } from "../tasks/worker.js";
import type { BackupManager } from "./backups.js";

interface LastBackup {
  atMs: number;
  path: string;
}

/**
 * When the last backup was taken: an archive written into `<state>/backups/`, or one streamed to
 * a client (`cara backup`), recorded durably in `backups/last-backup.json`.
 */
export class BackupState {
  private last: LastBackup | undefined;
  private loaded = false;
  private count = 0;

  constructor(
    private readonly dir: string,
    private readonly warnAfterDays: number,
    private readonly startedMs = Date.now(),
  ) {}

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    try {
      const rec = JSON.parse(await readFile(join(this.dir, "last-backup.json"), { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW })) as LastBackup;
      if (typeof rec.atMs === "number" && typeof rec.path === "string") this.last = rec;
    } catch {
      // none yet
    }
  }

  private async record(path: string): Promise<void> {
    await this.load();
    this.last = { atMs: Date.now(), path };
    await writeFileDurable(join(this.dir, "last-backup.json"), JSON.stringify(this.last));
  }

  recordWritten(path: string): Promise<void> {
    return this.record(path).catch(() => undefined);
  }

  recordStreamed(): Promise<void> {
    return this.record("(streamed to a client)").catch(() => undefined);
  }

  check(): HealthCheck {
    return {
      name: "backup",
      run: async () => {
        await this.load();
        if (!this.last) {
          const upDays = (Date.now() - this.startedMs) / 86_400_000;
          return upDays > this.warnAfterDays
            ? { status: "warn", message: `no backup in the ${Math.floor(upDays)} days this server has run: run 'cara backup --output FILE' (or schedule a task of kind backup)` }
            : { status: "ok", message: "no backup yet" };
        }
        const ageDays = (Date.now() - this.last.atMs) / 86_400_000;
        if (ageDays > this.warnAfterDays) return { status: "warn", message: `last backup is ${Math.floor(ageDays)} days old (more than ${this.warnAfterDays}); run 'cara backup --output FILE'` };
        return { status: "ok", message: `last backup ${new Date(this.last.atMs).toISOString()} (${this.last.path})` };
      },
    };
  }

  async section() {
    await this.load();
    return {
      ...(this.last ? { lastBackupAt: timestampFromMs(this.last.atMs), lastBackupAgeSeconds: BigInt(Math.floor((Date.now() - this.last.atMs) / 1000)), lastBackupPath: this.last.path } : {}),
      archiveCount: this.count,
    };
  }
}

/** Task payload `backup {keep}`: an archive into `<state>/backups/`, keeping the newest `keep`. */
export function backupTaskExecutor(manager: BackupManager): Executor {
  return async ({ task }) => {
    const keep = (task.payload as { keep?: number }).keep ?? 7;
    try {
      const res = await manager.backupToDir("scheduled", keep);
      return { kind: "done", result: `${res.path} (${res.bytes} bytes, sha256 ${res.sha256})` };
    } catch (err) {
      return { kind: "retry", error: `backup failed: ${(err as Error).message}` };
    }
  };
}
