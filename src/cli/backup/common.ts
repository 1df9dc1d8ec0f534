/** What the backup verbs share: archive files named on the command line, the upload stream, inspecting. */
import { createReadStream } from "node:fs";
import { lstat, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { Option } from "clipanion";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { BackupService, type InspectBackupResponse } from "../../../gen/carapace/backup/v1/backup_pb.js";
import type { ReadBackupResult } from "../../backup/archive-read.js";
import type { VerificationKey } from "../../backup/manifest.js";
import { statePaths } from "../../state/paths.js";
import { ClientCommand } from "../base.js";
import { bytes } from "../output.js";
import type { Progress } from "../progress.js";
import { describeError, isConnectionRefused, rpcClient } from "../rpc.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { CliFailure, isLoopbackHost } from "../target.js";
import { problemKindNames } from "../../wire/backup.js";
import { formatCount } from "../../format-count.js";

export function parseSections(value: string | undefined): string[] {
  return value === undefined
    ? []
    : value
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
}

/** Streams a local file as "header, then chunks" messages. */
export async function* uploadParts<H>(
  header: H,
  file: string,
  shown?: Progress,
): AsyncGenerator<{ part: { case: "header"; value: H } | { case: "chunk"; value: Uint8Array } }> {
  yield { part: { case: "header", value: header } };
  const total = shown ? (await stat(file)).size : 0;
  let sent = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
    yield { part: { case: "chunk", value: chunk as Uint8Array } };
    sent += (chunk as Uint8Array).length;
    shown?.update(sent, total);
  }
  shown?.finish((n, seconds) => `Uploaded ${bytes(n)} in ${seconds} s`);
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

/** What `backup verify` and `backup inspect` report, whether the server or this process read the archive. */
export interface InspectView {
  ok: boolean;
  /** False with --allow-foreign: the manifest's HMAC was not checked. */
  authenticityChecked: boolean;
  manifest?: {
    caraVersion: string;
    createdAt: string | null;
    host: string;
    formatVersion: number;
    foreign: boolean;
    /** Which key signed the manifest (absent in archives of format 1). */
    keyId: string | null;
    /** Signed with a previous server secret of this deployment (accepted, with a note). */
    signedWithPreviousSecret: boolean;
    sections: { name: string; files: number; bytes: number }[];
    totalFiles: number;
    totalBytes: number;
    archiveSha256: string | null;
  };
  problems: { kind: string; path: string; message: string }[];
  files: { path: string; size: number; mode: number; sha256: string }[];
}

function fromServer(res: InspectBackupResponse): InspectView {
  const m = res.manifest;
  return {
    ok: res.verification?.ok ?? false,
    authenticityChecked: true,
    ...(m
      ? {
          manifest: {
            caraVersion: m.caraVersion,
            createdAt: m.createdAt ? timestampDate(m.createdAt).toISOString() : null,
            host: m.host,
            formatVersion: m.formatVersion,
            foreign: m.foreign,
            keyId: m.keyId || null,
            signedWithPreviousSecret: m.signedWithPreviousSecret,
            sections: m.sections.map((s) => ({ name: s.name, files: Number(s.fileCount), bytes: Number(s.bytes) })),
            totalFiles: Number(m.totalFiles),
            totalBytes: Number(m.totalBytes),
            archiveSha256: m.archiveSha256 ?? null,
          },
        }
      : {}),
    problems: (res.verification?.problems ?? []).map((p) => ({ kind: problemKindNames.name(p.kind) ?? "unspecified", path: p.path, message: p.message })),
    files: res.files.map((f) => ({ path: f.path, size: Number(f.size), mode: f.mode, sha256: f.sha256 })),
  };
}

function fromLocal(res: ReadBackupResult, authenticityChecked: boolean, includeFiles: boolean): InspectView {
  const m = res.manifest;
  return {
    ok: res.ok,
    authenticityChecked,
    ...(m
      ? {
          manifest: {
            caraVersion: m.caraVersion,
            createdAt: m.createdAt,
            host: m.host,
            formatVersion: m.formatVersion,
            foreign: authenticityChecked && res.foreign,
            keyId: m.keyId ?? null,
            signedWithPreviousSecret: res.signedBy?.previous ?? false,
            sections: m.sections.map((s) => ({ name: s.name, files: s.files, bytes: s.bytes })),
            totalFiles: m.files.length,
            totalBytes: m.files.reduce((a, f) => a + f.size, 0),
            archiveSha256: res.archiveSha256 ?? null,
          },
        }
      : {}),
    problems: res.problems.map((p) => ({ kind: p.kind, path: p.path, message: p.message })),
    files: includeFiles ? res.files.map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256 })) : [],
  };
}

/** The manifest summary as the human lines of `backup verify` and `backup inspect`. */
function manifestLines(m: InspectView["manifest"]): string[] {
  if (!m) return [];
  return [
    `  Created:  ${m.createdAt ?? "?"} on ${stripTerminalUnsafe(m.host)} by cara ${stripTerminalUnsafe(m.caraVersion)} (format v${m.formatVersion})`,
    `  Sections: ${m.sections.map((s) => `${s.name} (${formatCount(s.files, "file")}, ${bytes(s.bytes)})`).join(", ") || "(none)"}`,
    `  Files:    ${formatCount(m.totalFiles, "file")}, ${bytes(m.totalBytes)} uncompressed`,
    ...signatureNote(m).map((note) => `  Note:     ${note}`),
  ];
}

/** What a person should know about the key that signed the manifest (nothing when it is the current one). */
export function signatureNote(m: { signedWithPreviousSecret: boolean; keyId: string | null } | undefined): string[] {
  return m?.signedWithPreviousSecret ? [`signed with a previous secret (key id ${m.keyId})`] : [];
}

/**
 * Base of `backup verify` and `backup inspect`: the server reads the archive (uploaded), or, with
 * --offline, --secret-file or when no server answers on this machine, this process reads it with
 * the keys found locally (CARAPACE_SERVER_SECRET or <state>/auth/server-secret, the previous
 * secrets this state dir recorded, and the --secret-file's).
 */
export abstract class InspectingCommand extends ClientCommand {
  file = Option.String({ name: "file" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  offline = Option.Boolean("--offline", false, {
    description: "Read the archive here, with the secret from CARAPACE_SERVER_SECRET or <state>/auth/server-secret (no server needed)",
  });
  secretFile = Option.String("--secret-file", {
    description: "Verify here, without a server, also accepting the server secret in this file (an archive made under an earlier secret)",
  });

  /** False when the manifest's HMAC is not to be checked (verify --allow-foreign): no secret, no server. */
  protected checkAuthenticity(): boolean {
    return true;
  }

  protected async inspect(includeFiles: boolean): Promise<InspectView> {
    const path = await checkArchiveFile(this.file, this.context.cwd);
    if (this.offline || this.secretFile !== undefined || !this.checkAuthenticity()) return this.inspectHere(path, includeFiles, undefined);
    const target = await this.target();
    const answerMs = this.timeoutMs(30_000);
    const client = await rpcClient(BackupService, target, 0, { http2: true, answerMs });
    try {
      return fromServer(await client.inspectBackup(uploadParts({ includeFiles }, path)));
    } catch (err) {
      if (isConnectionRefused(err) && isLoopbackHost(target.host)) return this.inspectHere(path, includeFiles, target.display);
      throw new CliFailure(describeError(err, target, answerMs, this.verb()));
    }
  }

  /** Reads the archive in this process; `down` is the address where no server answered. */
  private async inspectHere(path: string, includeFiles: boolean, down: string | undefined): Promise<InspectView> {
    const { readBackupArchive } = await import("../../backup/archive-read.js");
    const checked = this.checkAuthenticity();
    let secret: string;
    let previousKeys: VerificationKey[] = [];
    if (checked) {
      const { readLocalServerSecret, SecretError } = await import("../../state/secrets.js");
      const { localVerificationKeys } = await import("../../backup/local-keys.js");
      const paths = statePaths(this.resolveStateDir(this.stateDir));
      const found = await readLocalServerSecret(paths, this.context.env);
      if (!found && this.secretFile === undefined) {
        throw new CliFailure(
          `${down ? `no server answers at ${down}, and ` : ""}no server secret to check the backup's authenticity with: set CARAPACE_SERVER_SECRET, or pass the deployment's --state-dir (it holds auth/server-secret)` +
            (this.verb() === "backup verify" ? "; or pass --allow-foreign to check everything but authenticity" : ""),
        );
      }
      const keys = await localVerificationKeys(paths, this.context.env, this.secretFile === undefined ? undefined : this.resolvePath(this.secretFile)).catch(
        (err: unknown) => {
          throw err instanceof SecretError ? new CliFailure(err.message) : err;
        },
      );
      secret = keys.secret;
      previousKeys = keys.previousKeys;
      const from = found ? found.from : `--secret-file ${this.secretFile}`;
      this.context.stderr.write(`(${down ? `no server answers at ${down}: ` : ""}reading the archive here, with the server secret from ${from})\n`);
    } else {
      // Never matched: authenticity is not checked, and the HMAC's result is ignored.
      const { randomBytes } = await import("node:crypto");
      secret = randomBytes(32).toString("hex");
    }
    const res = await readBackupArchive(createReadStream(path), { secret, previousKeys, allowForeign: !checked }).catch((err: Error) => {
      throw new CliFailure(`cannot read ${this.file}: ${err.message}`);
    });
    return fromLocal(res, checked, includeFiles);
  }

  protected report(v: InspectView, verbose: boolean): number {
    if (this.json) {
      this.printJson({
        ok: v.ok,
        authenticityChecked: v.authenticityChecked,
        manifest: v.manifest
          ? {
              caraVersion: v.manifest.caraVersion,
              createdAt: v.manifest.createdAt,
              host: v.manifest.host,
              foreign: v.manifest.foreign,
              keyId: v.manifest.keyId,
              signedWithPreviousSecret: v.manifest.signedWithPreviousSecret,
              sections: v.manifest.sections,
              totalFiles: v.manifest.totalFiles,
              totalBytes: v.manifest.totalBytes,
              archiveSha256: v.manifest.archiveSha256,
            }
          : null,
        problems: v.problems,
        ...(verbose ? { files: v.files.map((f) => ({ path: f.path, size: f.size, mode: f.mode.toString(8), sha256: f.sha256 })) } : {}),
      });
    } else {
      const out = this.context.stdout;
      if (!v.ok) out.write(`NOT OK: ${this.file} failed verification\n`);
      else if (v.authenticityChecked) out.write(`OK: ${this.file} is a complete, untampered backup of this deployment\n`);
      else out.write(`OK: ${this.file} is complete and intact (marker, manifest and every file's SHA-256 match)\n`);
      for (const line of manifestLines(v.manifest)) out.write(`${line}\n`);
      if (v.manifest?.archiveSha256) out.write(`  SHA-256:  ${v.manifest.archiveSha256}\n`);
      for (const p of v.problems) out.write(`  problem: ${stripTerminalUnsafe(p.message)}\n`);
      if (!v.authenticityChecked)
        out.write("  Authenticity NOT checked (--allow-foreign): the manifest's HMAC was not verified, so anyone could have made this archive.\n");
      if (verbose)
        for (const f of v.files) out.write(`  ${f.mode.toString(8).padStart(4, "0")} ${String(f.size).padStart(10)}  ${stripTerminalUnsafe(f.path)}\n`);
    }
    return v.ok ? 0 : 1;
  }
}
