/** What the backup verbs share: archive files named on the command line, the upload stream, inspecting. */
import { createReadStream } from "node:fs";
import { lstat } from "node:fs/promises";
import { resolve } from "node:path";
import { Option } from "clipanion";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { BackupService, type BackupManifestSummary, type InspectBackupResponse } from "../../../gen/carapace/backup/v1/backup_pb.js";
import { ClientCommand } from "../base.js";
import { bytes } from "../output.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { CliFailure } from "../target.js";
import { problemKindNames } from "../../wire/backup.js";
import { formatCount } from "../../format-count.js";

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

/** The manifest summary as the human lines of `backup verify` and `backup inspect`. */
function manifestLines(m: BackupManifestSummary | undefined): string[] {
  if (!m) return [];
  return [
    `  Created:  ${m.createdAt ? timestampDate(m.createdAt).toISOString() : "?"} on ${stripTerminalUnsafe(m.host)} by cara ${stripTerminalUnsafe(m.caraVersion)} (format v${m.formatVersion})`,
    `  Sections: ${m.sections.map((s) => `${s.name} (${formatCount(s.fileCount, "file")}, ${bytes(Number(s.bytes))})`).join(", ") || "(none)"}`,
    `  Files:    ${formatCount(m.totalFiles, "file")}, ${bytes(Number(m.totalBytes))} uncompressed`,
    ...signatureNote(m).map((note) => `  Note:     ${note}`),
  ];
}

/** What a person should know about the key that signed the manifest (nothing when it is the current one). */
export function signatureNote(m: BackupManifestSummary | undefined): string[] {
  return m?.signedWithPreviousSecret ? [`signed with a previous secret (key id ${m.keyId})`] : [];
}

/** Base of `backup verify` and `backup inspect`: upload the archive to InspectBackup, report. */
export abstract class InspectingCommand extends ClientCommand {
  file = Option.String({ name: "file" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  secretFile = Option.String("--secret-file", {
    description: "Verify here, without a server, also accepting the server secret in this file (an archive made under an earlier secret)",
  });

  protected async inspect(includeFiles: boolean): Promise<InspectBackupResponse> {
    const path = await checkArchiveFile(this.file, this.context.cwd);
    if (this.secretFile !== undefined) return this.inspectLocally(path, this.resolvePath(this.secretFile), includeFiles);
    return this.withClient(BackupService, 3_600_000, (c) => c.inspectBackup(uploadParts({ includeFiles }, path)), { http2: true });
  }

  /** The server's verification, run in this process with the local keys and the secret file's. */
  private async inspectLocally(path: string, secretFile: string, includeFiles: boolean): Promise<InspectBackupResponse> {
    const { create } = await import("@bufbuild/protobuf");
    const { InspectBackupResponseSchema } = await import("../../../gen/carapace/backup/v1/backup_pb.js");
    const { statePaths } = await import("../../state/paths.js");
    const { SecretError } = await import("../../state/secrets.js");
    const { localVerificationKeys } = await import("../../backup/local-keys.js");
    const { readBackupArchive } = await import("../../backup/archive.js");
    const { inspectAnswer } = await import("../../wire/backup-answers.js");
    const keys = await localVerificationKeys(statePaths(this.resolveStateDir(this.stateDir)), this.context.env, secretFile).catch((err: unknown) => {
      throw err instanceof SecretError ? new CliFailure(err.message) : err;
    });
    const res = await readBackupArchive(createReadStream(path), { ...keys, allowForeign: true });
    return create(InspectBackupResponseSchema, inspectAnswer(res, includeFiles));
  }

  protected report(res: InspectBackupResponse, verbose: boolean): number {
    const v = res.verification;
    if (this.json) {
      this.printJson({
        ok: v?.ok ?? false,
        manifest: res.manifest ? { caraVersion: res.manifest.caraVersion, createdAt: res.manifest.createdAt ? timestampDate(res.manifest.createdAt).toISOString() : null, host: res.manifest.host, foreign: res.manifest.foreign, keyId: res.manifest.keyId || null, signedWithPreviousSecret: res.manifest.signedWithPreviousSecret, sections: res.manifest.sections.map((s) => ({ name: s.name, files: Number(s.fileCount), bytes: Number(s.bytes) })), totalFiles: Number(res.manifest.totalFiles), totalBytes: Number(res.manifest.totalBytes), archiveSha256: res.manifest.archiveSha256 ?? null } : null,
        problems: (v?.problems ?? []).map((p) => ({ kind: problemKindNames.name(p.kind) ?? "unspecified", path: p.path, message: p.message })),
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

