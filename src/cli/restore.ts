import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { Command, Option } from "clipanion";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { checkArchiveFile, parseSections, signatureNote, uploadParts } from "./backup/common.js";
import { ClientCommand } from "./base.js";
import { describeError, isConnectionRefused, rpcClient } from "./rpc.js";
import { isTerminal, progress } from "./progress.js";
import { stripTerminalUnsafe } from "./terminal.js";
import { restoreJson, restoreText, restoreView, type RestoreView } from "./restore-report.js";
import { CliFailure, CliUsageError } from "./target.js";

type RestoreOptions = { dryRun: boolean; sections: string[]; force: boolean; allowForeign: boolean };

export class RestoreCommand extends ClientCommand {
  static override paths = [["restore"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Restore the state directory from a backup (verified, atomic, with a pre-restore backup)",
    details: `
      The whole archive is verified first (marker, manifest, every hash, the HMAC, and every entry's path and type);
      an unsafe or damaged archive is refused before anything changes. Then the server takes a backup of the current
      state into <state>/backups/pre-restore-<time>.tar.gz, pauses the task worker, swaps the restored sections in
      atomically and resumes. Each restored section becomes exactly what the backup holds; sections not in the
      backup are left alone. A failure at any point leaves the previous state.

      The dry run lists the tasks (by id, and how many per state) and the config keys the restore would add, remove
      and change (never config values). On a terminal, a restore without --force shows that summary and asks before
      it changes anything; elsewhere, overwriting or removing existing files needs --force (or --yes).
      Copies the task store kept of corrupt files (tasks/*.corrupt.*) stay in place.
      With the PostgreSQL task store (config tasks.store "postgres"), the archive's tasks (its queue.json and journal,
      whichever store made it) replace every task in the database in one transaction, and the other servers on the
      database see them at once; if the database refuses them, nothing changes (neither the database nor the files).
      When the server cannot start (e.g. a corrupt queue.json), use --offline (with the server stopped).
    `,
    examples: [
      ["See what would change", "cara restore ./carapace-backup.tar.gz --dry-run"],
      ["Restore", "cara restore --path ./carapace-backup.tar.gz --force"],
      ["Only the task queue", "cara restore ./carapace-backup.tar.gz --sections tasks --force"],
      ["The server will not start: restore offline", "cara restore ./carapace-backup.tar.gz --offline --force --state-dir /srv/carapace"],
    ],
  });
  file = Option.String({ name: "file", required: false });
  pathFlag = Option.String("--path", { description: "The backup file (same as the positional argument)" });
  dryRun = Option.Boolean("--dry-run", false, {
    description: "Show the tasks (by id and state), config keys and files the restore would add, change and remove; change nothing",
  });
  sections = Option.String("--sections", { description: "Only these sections" });
  force = Option.Boolean("--force", false, { description: "Allow overwriting and removing existing files (no question asked)" });
  yes = Option.Boolean("--yes", false, { description: "Same as --force" });
  allowForeign = Option.Boolean("--allow-foreign", false, { description: "Accept a backup made by another deployment (its HMAC does not match)" });
  offline = Option.Boolean("--offline", false, { description: "Restore directly into --state-dir with no server running" });
  secretFile = Option.String("--secret-file", {
    description: "With --offline: also accept a backup signed with the server secret in this file (e.g. the old deployment's)",
  });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    const given = this.pathFlag ?? this.file;
    if (!given) throw new CliUsageError("which backup? pass it as an argument or with --path FILE");
    if (this.pathFlag && this.file && this.pathFlag !== this.file) throw new CliUsageError("pass the backup once: as an argument or with --path, not both");
    if (this.secretFile !== undefined && !this.offline)
      throw new CliUsageError("--secret-file needs --offline: a running server verifies with its own current and previous secrets");
    const file = await checkArchiveFile(given, this.context.cwd);
    const force = this.force || this.yes;
    const options: RestoreOptions = { dryRun: this.dryRun, sections: parseSections(this.sections), force, allowForeign: this.allowForeign };
    const restore = (o: RestoreOptions) => (this.offline ? this.restoreOffline(file, o) : this.restoreOnline(file, o));
    const tty = (this.context.stdin as { isTTY?: boolean }).isTTY === true && (this.context.stderr as { isTTY?: boolean }).isTTY === true;
    if (tty && !force && !this.dryRun && !this.json) {
      // A person at a terminal: show what would change, then ask.
      const preview = await restore({ ...options, dryRun: true });
      this.context.stderr.write(restoreText(preview));
      const question = `Restore ${stripTerminalUnsafe(given)} into ${this.offline ? this.resolveStateDir(this.stateDir) : "the running server's state"}? [y/N] `;
      // The terminal itself echoes and edits the line; input that ends without one answers no.
      const rl = createInterface({ input: this.context.stdin, output: this.context.stderr, terminal: false });
      const answer = await new Promise<string>((resolve) => {
        rl.once("line", resolve);
        rl.once("close", () => resolve(""));
        this.context.stderr.write(question);
      });
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) {
        this.context.stderr.write("Not restoring: nothing was changed.\n");
        return 1;
      }
      return this.report(await restore({ ...options, force: true }));
    }
    const views = await restore(options).catch((err: unknown) => {
      // Without a terminal there is no one to ask: say so next to the server's reason.
      if (err instanceof CliFailure && !force && err.message.includes("pass --force")) {
        const why = tty ? "With --json nothing is asked" : "There is no terminal to ask for confirmation";
        throw new CliFailure(`${err.message}. ${why}, so pass --force (or --yes) to restore.`);
      }
      throw err;
    });
    return this.report(views);
  }

  private async restoreOnline(file: string, o: RestoreOptions): Promise<RestoreView> {
    const target = await this.target();
    const answerMs = this.timeoutMs(30_000);
    const client = await rpcClient(BackupService, target, 0, { http2: true, answerMs });
    const shown = progress(this.context.stderr, { label: "Uploading", enabled: isTerminal(this.context.stderr) && !this.json });
    const res = await client.restoreBackup(uploadParts(o, file, shown)).catch((err: unknown) => {
      shown.clear();
      const why = describeError(err, target, answerMs, "restore");
      if (!isConnectionRefused(err)) throw new CliFailure(why);
      // No server: the offline path does the same restore here, under the state dir's lock.
      const stateDir = this.resolveStateDir(this.stateDir);
      throw new CliFailure(
        `${why} If the server cannot start, restore offline: cara restore ${shellQuote(file)} --offline --state-dir ${shellQuote(stateDir)}${o.dryRun ? " --dry-run" : o.force ? " --force" : ""}`,
      );
    });
    return restoreView(
      res,
      signatureNote(res.manifest),
      res.diffs.map((d) => ({ ...d, counts: [d.addedCount, d.changedCount, d.removedCount, d.unchangedCount] })),
    );
  }

  /** The offline recovery path: the same verified, atomic restore, run here under the state lock. */
  private async restoreOffline(file: string, o: RestoreOptions): Promise<RestoreView> {
    const { statePaths } = await import("../state/paths.js");
    const { acquireStateLock, LockHeldError } = await import("../state/lock.js");
    const { BackupManager, BackupPreconditionError, BackupRefusedError, RestoreRolledBackError } = await import("../backup/backups.js");
    const { recoverInterruptedSwap } = await import("../backup/swap.js");
    const { checkStateLoads } = await import("../state/loadable.js");
    const { mkdir } = await import("node:fs/promises");
    const { localVerificationKeys } = await import("../backup/local-keys.js");
    const { SecretError } = await import("../state/secrets.js");
    const stateDir = this.resolveStateDir(this.stateDir);
    const paths = statePaths(stateDir);
    // A fresh host restores into a state dir that does not exist yet.
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    let lock;
    try {
      lock = await acquireStateLock(stateDir, paths.lock);
    } catch (err) {
      if (err instanceof LockHeldError) throw new CliFailure(`${err.message}: stop it first, or restore through it without --offline`);
      throw new CliFailure(`cannot lock ${stateDir}: ${(err as Error).message}`);
    }
    try {
      await recoverInterruptedSwap(stateDir);
      const keys = await localVerificationKeys(paths, this.context.env, this.secretFile === undefined ? undefined : this.resolvePath(this.secretFile)).catch(
        (err: unknown) => {
          throw err instanceof SecretError ? new CliFailure(err.message) : err;
        },
      );
      // With the PostgreSQL store (as the state dir's config names it now), the tasks go to the database.
      const database = await this.offlineTaskDatabase(paths.config);
      const manager = new BackupManager({
        stateDir,
        backupsDir: paths.backupsDir,
        ...keys,
        caraVersion: "offline",
        writers: { holdWrites: (fn) => fn(), pause: async () => undefined, resume: async () => undefined },
        checkRestored: checkStateLoads,
        ...(database ? { tasksDatabase: database } : {}),
      });
      const res = await manager
        .restore(createReadStream(file), o)
        .catch((err: Error) => {
          if (err instanceof BackupRefusedError || err instanceof BackupPreconditionError || err instanceof RestoreRolledBackError)
            throw new CliFailure(err.message);
          throw err;
        })
        .finally(() => database?.close());
      return restoreView(
        res,
        res.signedBy?.previous ? [`signed with a previous secret (key id ${res.signedBy.keyId})`] : [],
        res.diffs.map((d) => ({ ...d, counts: [d.added.length, d.changed.length, d.removed.length, d.unchanged] })),
      );
    } finally {
      await lock.release();
    }
  }

  /** The task database when the state dir's config keeps tasks in PostgreSQL (a config that does not load: files). */
  private async offlineTaskDatabase(configPath: string) {
    const { loadConfig } = await import("../state/config.js");
    const config = await loadConfig(configPath).catch(() => undefined);
    if (config?.tasks?.store !== "postgres") return undefined;
    const { configuredDatabaseUrl } = await import("../tasks/postgres/migrate-database.js");
    const { OfflineTaskDatabase } = await import("../tasks/postgres/task-database.js");
    const url = configuredDatabaseUrl(config, this.context.env);
    return url === undefined ? undefined : OfflineTaskDatabase.connect(url, "cara restore --offline");
  }

  private report(v: RestoreView): number {
    if (this.json) this.printJson(restoreJson(v));
    else this.context.stdout.write(restoreText(v));
    return 0;
  }
}

/** A path as a shell word (quoted when it holds anything but safe characters). */
function shellQuote(path: string): string {
  return /^[\w./@%+=:,-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}
