import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { link, lstat, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Command, Option } from "clipanion";
import { BackupService, type BackupManifestSummary } from "../../../gen/carapace/backup/v1/backup_pb.js";
import { describeDiskFull, isDiskFull } from "../../state/disk-full.js";
import { writeFully } from "../../state/durable.js";
import { ClientCommand } from "../base.js";
import { bytes } from "../output.js";
import { isTerminal, progress } from "../progress.js";
import { errorFacts } from "../json-error.js";
import { describeError, rpcClient } from "../rpc.js";
import { CliFailure, parseTimeout } from "../target.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { parseSections } from "./common.js";
import { formatCount } from "../../format-count.js";

export class BackupCommand extends ClientCommand {
  static override paths = [["backup"], ["backup", "create"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Back up the state directory to a .tar.gz (works while the server runs)",
    details: `
      The server takes a consistent snapshot (task store writes are held for the instant of the copy), and
      streams a gzip'd tar: a marker, a signed manifest (every file's size, mode and SHA-256, with an HMAC keyed
      from CARAPACE_SERVER_SECRET), then the files. Never included: auth/ (token and server secret: keep those
      separately), logs/, backups/, updates/, the lock. The file is written to a temp file and renamed (mode 0600);
      an existing file is refused without --force, and a symlink at the output path is never followed.
    `,
    examples: [
      ["Back up everything", "cara backup --output ./carapace-backup.tar.gz"],
      ["Only tasks and config, replacing an older file", "cara backup -o ./tasks.tar.gz --sections tasks,config --force"],
    ],
  });
  output = Option.String("-o,--output", { description: "Where to write the archive (default ./carapace-backup-<UTC time>.tar.gz)" });
  force = Option.Boolean("--force", false, { description: "Replace an existing file" });
  sections = Option.String("--sections", { description: "Only these sections (config, tasks, sessions, memory, cron, usage)" });
  json = Option.Boolean("--json", false, { description: "Print the result as one JSON document" });
  override timeout = Option.String("--timeout", "1h", { description: "Give up after this long (default 1h)" });

  async run(): Promise<number> {
    const stamp = new Date()
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d+Z$/, "Z");
    const output = this.resolvePath(this.output ?? `./carapace-backup-${stamp}.tar.gz`);
    try {
      const st = await lstat(output);
      if (st.isSymbolicLink())
        throw new CliFailure(`refusing to follow symlink at output path ${output} (cara backup writes only to regular files; remove the symlink and re-run)`);
      if (!this.force) throw new CliFailure(`refusing to overwrite existing file ${output} (pass --force to overwrite)`);
      if (!st.isFile()) throw new CliFailure(`${output} exists and is not a regular file`);
    } catch (err) {
      if (err instanceof CliFailure) throw err;
    }
    const target = await this.target();
    const timeoutMs = parseTimeout(this.timeout);
    const client = await rpcClient(BackupService, target, timeoutMs);
    const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(4).toString("hex")}.partial`);
    // Ctrl-C or SIGTERM ends the transfer; the partial file is removed below.
    const stop = this.interruption();
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch((err: Error) => {
      stop.dispose();
      throw new CliFailure(`cannot write in ${dirname(output)}: ${err.message}`);
    });
    const hash = createHash("sha256");
    let written = 0;
    let header: { manifest?: BackupManifestSummary; excluded: { path: string; reason: string }[] } | undefined;
    let trailer: { archiveSha256: string; archiveBytes: bigint } | undefined;
    // The archive's compressed size is not known before the end: no total, no percentage.
    const shown = progress(this.context.stderr, { label: "Downloading", enabled: isTerminal(this.context.stderr) && !this.json });
    try {
      try {
        for await (const msg of client.createBackup({ sections: parseSections(this.sections) }, { signal: stop.signal })) {
          const p = msg.part;
          if (p.case === "header") header = p.value;
          else if (p.case === "chunk") {
            await writeFully(handle, p.value, null).catch((err: unknown) => {
              throw new LocalWriteError(err);
            });
            hash.update(p.value);
            written += p.value.length;
            shown.update(written);
          } else if (p.case === "trailer") trailer = p.value;
        }
      } catch (err) {
        if (stop.signal.aborted) throw new CliFailure(`interrupted: the partial file was removed; nothing was written to ${output}`);
        if (err instanceof LocalWriteError) throw new CliFailure(describeLocalWrite(err.cause, output));
        throw new CliFailure(describeError(err, target, timeoutMs, "backup"), errorFacts(err));
      }
      const digest = hash.digest("hex");
      if (!trailer || trailer.archiveSha256 !== digest || Number(trailer.archiveBytes) !== written) {
        throw new CliFailure("the archive received does not match what the server sent (transfer cut short?); nothing was written");
      }
      try {
        await handle.sync();
        await handle.close();
      } catch (err) {
        throw new CliFailure(describeLocalWrite(err, output));
      }
      if (this.force) await rename(tmp, output);
      else {
        // link() refuses an existing name: no race between the check above and here.
        await link(tmp, output).catch((err: NodeJS.ErrnoException) => {
          throw new CliFailure(err.code === "EEXIST" ? `refusing to overwrite existing file ${output} (pass --force to overwrite)` : err.message);
        });
        await unlink(tmp);
      }
      shown.finish((n, seconds) => `Wrote ${bytes(n)} to ${output} in ${seconds} s`);
      const m = header?.manifest;
      if (this.json) {
        this.printJson({
          path: output,
          bytes: written,
          sha256: digest,
          sections: m?.sections.map((s) => s.name) ?? [],
          files: Number(m?.totalFiles ?? 0),
          excluded: (header?.excluded ?? []).map((e) => ({ path: e.path, reason: e.reason })),
        });
      } else {
        const out = this.context.stdout;
        out.write(`Backup created successfully\n  Path:     ${output}\n  Size:     ${bytes(written)} (${written})\n  SHA-256:  ${digest}\n`);
        out.write(`  Included: ${m?.sections.map((s) => s.name).join(", ") || "(empty)"} (${formatCount(m?.totalFiles ?? 0, "file")})\n`);
        const excluded = header?.excluded ?? [];
        if (excluded.length > 0) {
          out.write("  Not included (keep these safe separately if you need them):\n");
          for (const e of excluded) out.write(`    ${stripTerminalUnsafe(e.path)}: ${stripTerminalUnsafe(e.reason)}\n`);
        }
      }
      return 0;
    } finally {
      shown.clear();
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      stop.dispose();
    }
  }
}

/** Writing the local output file failed (not the server or the connection). */
class LocalWriteError extends Error {
  constructor(override readonly cause: unknown) {
    super((cause as Error).message);
  }
}

function describeLocalWrite(err: unknown, output: string): string {
  if (isDiskFull(err)) return `${describeDiskFull(err, output, `cannot write ${output}`)}, or choose another --output. Nothing was written`;
  return `cannot write ${output}: ${(err as Error).message}. Nothing was written`;
}
