import { createHash, randomBytes } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { link, lstat, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Command, Option } from "clipanion";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { BackupService, type BackupManifestSummary, type InspectBackupResponse } from "../../gen/carapace/backup/v1/backup_pb.js";
import { formatBytes } from "../format-bytes.js";
import { writeFully } from "../state/durable.js";
import { describeDiskFull, isDiskFull } from "../state/disk-full.js";
import { ClientCommand } from "./base.js";
import { describeError, rpcClient } from "./rpc.js";
import { stripTerminalUnsafe } from "./terminal.js";
import { CliFailure, CliUsageError, parseTimeout, resolveTarget } from "./target.js";

/** Kept for the commands that import it from here. */
export const humanBytes = formatBytes;

export function parseSections(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Streams a local file as "header, then chunks" messages. */
export async function* uploadParts<H>(header: H, file: string): AsyncGenerator<{ part: { case: "header"; value: H } | { case: "chunk"; value: Uint8Array } }> {
  yield { part: { case: "header", value: header } };
  for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) yield { part: { case: "chunk", value: chunk as Uint8Array } };
}

/** The absolute path of an archive named on the command line (relative to `cwd`), which must be a regular file. */
export async function checkArchiveFile(file: string, cwd: string | undefined): Promise<string> {
  const path = resolve(cwd ?? process.cwd(), file);
  try {
    const st = await lstat(path);
    if (!st.isFile()) throw new CliFailure(`${file} is not a regular file`);
  } catch (err) {
    if (err instanceof CliFailure) throw err;
    throw new CliFailure(`Backup file not found: ${file}`);
  }
  return path;
}

function manifestLines(m: BackupManifestSummary | undefined): string[] {
  if (!m) return [];
  return [
    `  Created:  ${m.createdAt ? timestampDate(m.createdAt).toISOString() : "?"} on ${stripTerminalUnsafe(m.host)} by cara ${stripTerminalUnsafe(m.caraVersion)} (format v${m.formatVersion})`,
    `  Sections: ${m.sections.map((s) => `${s.name} (${s.fileCount} files, ${humanBytes(Number(s.bytes))})`).join(", ") || "(none)"}`,
    `  Files:    ${m.totalFiles}, ${humanBytes(Number(m.totalBytes))} uncompressed`,
  ];
}

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
  timeout = Option.String("--timeout", "1h", { description: "Give up after this long (default 1h)" });

  async run(): Promise<number> {
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
    const output = this.resolvePath(this.output ?? `./carapace-backup-${stamp}.tar.gz`);
    try {
      const st = await lstat(output);
      if (st.isSymbolicLink()) throw new CliFailure(`refusing to follow symlink at output path ${output} (cara backup writes only to regular files; remove the symlink and re-run)`);
      if (!this.force) throw new CliFailure(`refusing to overwrite existing file ${output} (pass --force to overwrite)`);
      if (!st.isFile()) throw new CliFailure(`${output} exists and is not a regular file`);
    } catch (err) {
      if (err instanceof CliFailure) throw err;
    }
    const target = await this.target();
    const client = await rpcClient(BackupService, target, parseTimeout(this.timeout));
    const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(4).toString("hex")}.partial`);
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch((err: Error) => {
      throw new CliFailure(`cannot write in ${dirname(output)}: ${err.message}`);
    });
    const hash = createHash("sha256");
    let bytes = 0;
    let header: { manifest?: BackupManifestSummary; excluded: { path: string; reason: string }[] } | undefined;
    let trailer: { archiveSha256: string; archiveBytes: bigint } | undefined;
    const tty = (this.context.stderr as { isTTY?: boolean }).isTTY === true && !this.json;
    try {
      try {
        for await (const msg of client.createBackup({ sections: parseSections(this.sections) })) {
          const p = msg.part;
          if (p.case === "header") header = p.value;
          else if (p.case === "chunk") {
            await writeFully(handle, p.value, null).catch((err: unknown) => {
              throw new LocalWriteError(err);
            });
            hash.update(p.value);
            bytes += p.value.length;
            if (tty) this.context.stderr.write(`\r  ${humanBytes(bytes)} written…`);
          } else if (p.case === "trailer") trailer = p.value;
        }
      } catch (err) {
        if (err instanceof LocalWriteError) throw new CliFailure(describeLocalWrite(err.cause, output));
        throw new CliFailure(describeError(err, target));
      }
      if (tty) this.context.stderr.write("\n");
      const digest = hash.digest("hex");
      if (!trailer || trailer.archiveSha256 !== digest || Number(trailer.archiveBytes) !== bytes) {
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
      const m = header?.manifest;
      if (this.json) {
        this.printJson({ path: output, bytes, sha256: digest, sections: m?.sections.map((s) => s.name) ?? [], files: Number(m?.totalFiles ?? 0), excluded: header?.excluded ?? [] });
      } else {
        const out = this.context.stdout;
        out.write(`Backup created successfully\n  Path:     ${output}\n  Size:     ${humanBytes(bytes)} (${bytes})\n  SHA-256:  ${digest}\n`);
        out.write(`  Included: ${m?.sections.map((s) => s.name).join(", ") || "(empty)"} (${m?.totalFiles ?? 0} files)\n`);
        const excluded = header?.excluded ?? [];
        if (excluded.length > 0) {
          out.write("  Not included (keep these safe separately if you need them):\n");
          for (const e of excluded) out.write(`    ${stripTerminalUnsafe(e.path)}: ${stripTerminalUnsafe(e.reason)}\n`);
        }
      }
      return 0;
    } finally {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
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

abstract class InspectingCommand extends ClientCommand {
  file = Option.String({ name: "file" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  protected async inspect(includeFiles: boolean): Promise<InspectBackupResponse> {
    const path = await checkArchiveFile(this.file, this.context.cwd);
    const target = await this.target();
    const client = await rpcClient(BackupService, target, 3_600_000, { http2: true });
    try {
      return await client.inspectBackup(uploadParts({ includeFiles }, path));
    } catch (err) {
      throw new CliFailure(describeError(err, target));
    }
  }

  protected report(res: InspectBackupResponse, verbose: boolean): number {
    const v = res.verification;
    if (this.json) {
      this.printJson({
        ok: v?.ok ?? false,
        manifest: res.manifest ? { caraVersion: res.manifest.caraVersion, createdAt: res.manifest.createdAt ? timestampDate(res.manifest.createdAt).toISOString() : null, host: res.manifest.host, foreign: res.manifest.foreign, sections: res.manifest.sections.map((s) => ({ name: s.name, files: Number(s.fileCount), bytes: Number(s.bytes) })), totalFiles: Number(res.manifest.totalFiles), totalBytes: Number(res.manifest.totalBytes), archiveSha256: res.manifest.archiveSha256 ?? null } : null,
        problems: (v?.problems ?? []).map((p) => ({ path: p.path, message: p.message })),
        ...(verbose ? { files: res.files.map((f) => ({ path: f.path, size: Number(f.size), mode: f.mode.toString(8), sha256: f.sha256 })) } : {}),
      });
    } else {
      const out = this.context.stdout;
      out.write(v?.ok ? `OK: ${this.file} is a complete, untampered backup of this deployment\n` : `NOT OK: ${this.file} failed verification\n`);
      for (const line of manifestLines(res.manifest)) out.write(`${line}\n`);
      if (res.manifest?.archiveSha256) out.write(`  SHA-256:  ${res.manifest.archiveSha256}\n`);
      for (const p of v?.problems ?? []) out.write(`  problem: ${stripTerminalUnsafe(p.message)}\n`);
      if (verbose) for (const f of res.files) out.write(`  ${f.mode.toString(8).padStart(4, "0")} ${String(f.size).padStart(10)}  ${stripTerminalUnsafe(f.path)}\n`);
    }
    return v?.ok ? 0 : 1;
  }
}

export class BackupVerifyCommand extends InspectingCommand {
  static override paths = [["backup", "verify"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Verify a backup without extracting it (marker, manifest, every hash, the HMAC)",
    details: "Exit 0 when the archive is complete, untampered and made by this deployment; 1 otherwise, with every problem named.",
    examples: [["Verify", "cara backup verify ./carapace-backup.tar.gz"]],
  });
  async run(): Promise<number> {
    return this.report(await this.inspect(false), false);
  }
}

export class BackupInspectCommand extends InspectingCommand {
  static override paths = [["backup", "inspect"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Show what a backup holds (sections, files, sizes, versions) and verify it",
    examples: [["Inspect", "cara backup inspect ./carapace-backup.tar.gz"], ["As JSON", "cara backup inspect ./carapace-backup.tar.gz --json"]],
  });
  async run(): Promise<number> {
    return this.report(await this.inspect(true), true);
  }
}

export class BackupListCommand extends ClientCommand {
  static override paths = [["backup", "list"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "List the archives in the server's <state>/backups/ (backup tasks, pre-restore and pre-update backups)",
    details: "One line per archive, newest first: time, size, origin, name and the sections its manifest lists (only the head of each archive is read; use `cara backup verify` to check a whole archive). An archive whose marker or manifest cannot be read is listed as unreadable, with the reason.",
    examples: [["List", "cara backup list"], ["As JSON", "cara backup list --json"]],
  });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  async run(): Promise<number> {
    const target = await this.target();
    const client = await rpcClient(BackupService, target, 30_000);
    let res;
    try {
      res = await client.listBackups({});
    } catch (err) {
      throw new CliFailure(describeError(err, target));
    }
    if (this.json) {
      this.printJson({
        directory: res.directory,
        backups: res.backups.map((b) => ({
          name: b.name,
          path: b.path,
          bytes: Number(b.sizeBytes),
          createdAt: b.createdAt ? timestampDate(b.createdAt).toISOString() : null,
          origin: b.origin,
          sections: b.sections,
          caraVersion: b.caraVersion ?? null,
          error: b.error ?? null,
        })),
      });
      return 0;
    }
    const out = this.context.stdout;
    if (res.backups.length === 0) out.write(`No backups in ${res.directory}.\n`);
    for (const b of res.backups) {
      const what = b.error !== undefined ? `unreadable: ${stripTerminalUnsafe(b.error)}` : b.sections.join(",") || "(no sections)";
      out.write(`${b.createdAt ? timestampDate(b.createdAt).toISOString() : "?"}  ${humanBytes(Number(b.sizeBytes)).padStart(10)}  ${b.origin.padEnd(11)}  ${stripTerminalUnsafe(b.name)}  ${what}\n`);
    }
    return 0;
  }
}

export { CliUsageError };
