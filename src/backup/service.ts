import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { createReadStream } from "node:fs";
import { once } from "node:events";
import { PassThrough, type Readable } from "node:stream";
import type { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { BackupTooLargeError, StagingError, StateChangedError } from "./archive.js";
import { type BackupManager, BackupPreconditionError, BackupRefusedError, RestoreRolledBackError, type BackupSummary, type RestoreOutcome } from "./backups.js";
import { MANIFEST_FORMAT_VERSION } from "./manifest.js";
import { StateListingError, UnknownSectionError, type Exclusion } from "./sections.js";
import { BackupUploads, UploadError } from "./uploads.js";
import { describeDiskFull, isDiskFull } from "../state/disk-full.js";
import { TaskStoreWriteError } from "../tasks/task-store.js";
import { invalidField, rpcError } from "../wire/error-details.js";
import { errorTable, on, onMatch, type WireFault } from "../wire/error-table.js";
import { inspectAnswer, manifestSummary } from "../wire/backup-answers.js";

const UPLOAD_FAULTS: Record<UploadError["kind"], Pick<WireFault, "code" | "reason">> = {
  invalid: { code: Code.InvalidArgument, reason: "BACKUP_UPLOAD_INVALID" },
  precondition: { code: Code.FailedPrecondition, reason: "BACKUP_UPLOAD_PRECONDITION" },
  exhausted: { code: Code.ResourceExhausted, reason: "BACKUP_UPLOAD_LIMIT" },
};

const isErrno = (code: string) => (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code === code;

/**
 * Backup errors on the wire. `directory` is the backups dir (named when the disk is full and the
 * error does not say where); `sectionsField` is where the calling RPC takes section names.
 */
function backupErrors(directory: string, sectionsField: string) {
  return errorTable(
    [
      on(BackupRefusedError, (e) => {
        if (e.problems.some((p) => p.kind === "too_large")) return { code: Code.ResourceExhausted, reason: "BACKUP_TOO_LARGE" };
        if (e.problems.length > 0 && e.problems.every((p) => p.kind === "foreign")) return { code: Code.FailedPrecondition, reason: "BACKUP_FOREIGN" };
        return { code: Code.InvalidArgument, reason: "BACKUP_REFUSED" };
      }),
      on(StagingError, (e) =>
        e.code === "ENOSPC"
          ? { code: Code.ResourceExhausted, reason: "DISK_FULL", message: `${e.message}; free space on the state dir's filesystem` }
          : undefined,
      ),
      on(BackupTooLargeError, { code: Code.FailedPrecondition, reason: "BACKUP_TOO_LARGE" }),
      on(BackupPreconditionError, { code: Code.FailedPrecondition, reason: "BACKUP_PRECONDITION" }),
      on(StateListingError, { code: Code.FailedPrecondition, reason: "BACKUP_PRECONDITION" }),
      on(StateChangedError, { code: Code.Aborted, reason: "BACKUP_STATE_CHANGED", retryAfterMs: 1000 }),
      on(RestoreRolledBackError, { code: Code.Aborted, reason: "RESTORE_ROLLED_BACK" }),
      on(UnknownSectionError, { code: Code.InvalidArgument, reason: "BACKUP_SECTION_UNKNOWN", field: sectionsField }),
      // The task database (PostgreSQL store) could not be read or written: nothing was changed.
      on(TaskStoreWriteError, { code: Code.Unavailable, reason: "TASK_STORE_UNAVAILABLE", retryAfterMs: 1000 }),
      on(UploadError, (e) => UPLOAD_FAULTS[e.kind]),
      onMatch(isDiskFull, (err) => ({
        code: Code.ResourceExhausted,
        reason: "DISK_FULL",
        message: `${describeDiskFull(err, directory, "backup failed")}; nothing was changed`,
      })),
      onMatch(isErrno("EIO"), {
        code: Code.Unavailable,
        reason: "STATE_DIR_UNAVAILABLE",
        message: "the state dir's filesystem failed (EIO); nothing was changed",
      }),
    ],
    (err) => ({ code: Code.Internal, reason: "INTERNAL", message: `backup failed: ${(err as Error).message}` }),
  );
}

function summaryHeader(s: BackupSummary, keyId: string) {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    caraVersion: s.caraVersion,
    createdAt: timestampFromDate(s.createdAt),
    host: s.host,
    sections: s.sections.map((x) => ({ name: x.name, fileCount: BigInt(x.files), bytes: BigInt(x.bytes) })),
    totalFiles: BigInt(s.totalFiles),
    totalBytes: BigInt(s.totalBytes),
    foreign: false,
    keyId,
  };
}

/** A stream of the archive named `name` in the backups dir; a bad name is InvalidArgument, an unknown one NotFound. */
async function openStored(manager: BackupManager, name: string, field: string): Promise<Readable> {
  let path: string;
  try {
    path = manager.backupPath(name);
  } catch (err) {
    throw invalidField((err as Error).message, "BACKUP_NAME_INVALID", field);
  }
  const body = createReadStream(path);
  await once(body, "open").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw rpcError(`no backup named '${name}' (see cara backup list)`, Code.NotFound, { reason: "BACKUP_NOT_FOUND" });
    throw rpcError(err.message, Code.Internal, { reason: "INTERNAL" });
  });
  return body;
}

type Part<H> = { part: { case: "header"; value: H } | { case: "chunk"; value: Uint8Array } | { case: undefined; value?: undefined } };

/**
 * Reads a client stream "header, then chunks": returns the header and a Readable of the
 * chunks (or of the named archive in the backups dir), with backpressure.
 */
async function headerAndBody<H extends { backupName?: string | undefined }>(
  requests: AsyncIterable<Part<H>>,
  manager: BackupManager,
): Promise<{ header: H; body: Readable; pump: Promise<void> }> {
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.part.case !== "header") throw invalidField("the first message must be the header", "BACKUP_STREAM_INVALID", "header");
  const header = first.value.part.value;
  if (header.backupName !== undefined) return { header, body: await openStored(manager, header.backupName, "header.backup_name"), pump: Promise.resolve() };
  const body = new PassThrough();
  const pump = (async () => {
    try {
      for (let r = await it.next(); !r.done; r = await it.next()) {
        if (r.value.part.case !== "chunk") throw invalidField("after the header, only chunks may follow", "BACKUP_STREAM_INVALID", "chunk");
        if (!body.write(r.value.part.value)) await once(body, "drain");
      }
      body.end();
    } catch (err) {
      body.destroy(err as Error);
    }
  })();
  return { header, body, pump };
}

/** RestoreBackupResponse for a restore (or its dry run). */
function restoreAnswer(res: RestoreOutcome) {
  const cap = (l: string[]) => l.slice(0, 1000);
  return {
    dryRun: res.dryRun,
    manifest: manifestSummary(res.manifest, res.foreign, res.signedBy),
    diffs: res.diffs.map((d) => ({
      section: d.section,
      addedCount: d.added.length,
      changedCount: d.changed.length,
      removedCount: d.removed.length,
      unchangedCount: d.unchanged,
      added: cap(d.added),
      changed: cap(d.changed),
      removed: cap(d.removed),
      truncated: d.added.length > 1000 || d.changed.length > 1000 || d.removed.length > 1000,
    })),
    restoredSections: res.restoredSections,
    ...(res.tasks ? { tasks: res.tasks } : {}),
    ...(res.config ? { config: res.config } : {}),
    keptFiles: res.keptFiles,
    ...(res.preRestoreBackupPath ? { preRestoreBackupPath: res.preRestoreBackupPath } : {}),
  };
}

/** BackupEntry.origin, from the file name: what made the archive. */
export function backupOrigin(name: string): "task" | "pre-restore" | "pre-update" | "upload" | "other" {
  if (name.startsWith("upload-")) return "upload";
  if (name.startsWith("scheduled-")) return "task";
  if (name.startsWith("pre-restore-")) return "pre-restore";
  if (name.startsWith("pre-update-")) return "pre-update";
  return "other";
}

/** Adapts the backup manager to `carapace.backup.v1.BackupService`. */
export function backupService(manager: BackupManager, onStreamed?: (sha256: string, bytes: number) => void): ServiceImpl<typeof BackupService> {
  const uploads = new BackupUploads(manager.directory);
  const errors = backupErrors(manager.directory, "sections");
  const restoreErrors = backupErrors(manager.directory, "header.sections");
  return {
    async *createBackup(req) {
      const out = new PassThrough();
      type Header = [BackupSummary, Exclusion[]];
      let resolveHeader!: (h: Header) => void;
      const header = new Promise<Header>((r) => (resolveHeader = r));
      const done = manager.createBackup(out, { sections: req.sections, onHeader: (s, ex) => resolveHeader([s, ex]) });
      // The failure reaches the caller through `done`; the stream's own error event must not go
      // unheard (an unhandled 'error' would take the whole server down: an unknown section
      // name, or a snapshot on a full disk failing before the first chunk).
      out.on("error", () => undefined);
      done.catch((err: Error) => out.destroy(err));
      try {
        const first = await Promise.race([header, done.then(() => undefined)]);
        if (first)
          yield {
            part: {
              case: "header" as const,
              value: { manifest: summaryHeader(first[0], manager.keyId), excluded: first[1].map((e) => ({ path: e.path, reason: e.reason })) },
            },
          };
        for await (const chunk of out) yield { part: { case: "chunk" as const, value: chunk as Uint8Array } };
        const res = await done;
        onStreamed?.(res.sha256, res.bytes);
        yield { part: { case: "trailer" as const, value: { archiveSha256: res.sha256, archiveBytes: BigInt(res.bytes) } } };
      } catch (err) {
        throw errors.map(err);
      }
    },
    async inspectBackup(requests) {
      try {
        const { header, body, pump } = await headerAndBody(requests, manager);
        const res = await manager.inspect(body);
        await pump;
        return inspectAnswer(res, header.includeFiles);
      } catch (err) {
        throw errors.map(err);
      }
    },
    async restoreBackup(requests) {
      try {
        const { header, body, pump } = await headerAndBody(requests, manager);
        const res = await manager.restore(body, { dryRun: header.dryRun, sections: header.sections, force: header.force, allowForeign: header.allowForeign });
        await pump;
        return restoreAnswer(res);
      } catch (err) {
        throw restoreErrors.map(err);
      }
    },
    async inspectStoredBackup(req) {
      try {
        const res = await manager.inspect(await openStored(manager, req.backupName, "backup_name"));
        return { result: inspectAnswer(res, req.includeFiles) };
      } catch (err) {
        throw errors.map(err);
      }
    },
    async restoreStoredBackup(req) {
      try {
        const body = await openStored(manager, req.backupName, "backup_name");
        return {
          result: restoreAnswer(await manager.restore(body, { dryRun: req.dryRun, sections: req.sections, force: req.force, allowForeign: req.allowForeign })),
        };
      } catch (err) {
        throw errors.map(err);
      }
    },
    async uploadBackup(req) {
      try {
        const res = await uploads.append({ uploadId: req.uploadId, offset: req.offset, chunk: req.chunk, finish: req.finish });
        return { uploadId: res.uploadId, bytesReceived: BigInt(res.bytesReceived), backupName: res.backupName ?? "", sha256: res.sha256 ?? "" };
      } catch (err) {
        throw errors.map(err);
      }
    },
    async listBackups() {
      try {
        const list = await manager.list();
        return {
          directory: manager.directory,
          backups: list.map((b) => ({
            name: b.name,
            path: b.path,
            sizeBytes: BigInt(b.size),
            createdAt: timestampFromMs((b.createdAt ?? b.mtime).getTime()),
            origin: backupOrigin(b.name),
            sections: b.sections ?? [],
            ...(b.caraVersion !== undefined ? { caraVersion: b.caraVersion } : {}),
            ...(b.error !== undefined ? { error: b.error } : {}),
          })),
        };
      } catch (err) {
        throw errors.map(err);
      }
    },
  };
}
