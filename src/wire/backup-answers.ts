/** The backup API's answers built from the domain's results (shared by the service and the CLI's local verification). */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { BackupProblemKind } from "../../gen/carapace/backup/v1/backup_pb.js";
import type { Problem, ReadBackupResult } from "../backup/archive.js";
import type { Manifest } from "../backup/manifest.js";
import { problemKindNames } from "./backup.js";

const problemKind = (p: Problem) => problemKindNames.toWire(p.kind);

/** BackupManifestSummary of a manifest (with the archive's hash and size when it was read whole). */
export function manifestSummary(
  m: Manifest,
  foreign: boolean,
  signedBy: { previous: boolean } | undefined,
  archive?: { sha256?: string | undefined; bytes?: number | undefined },
) {
  return {
    formatVersion: m.formatVersion,
    caraVersion: m.caraVersion,
    createdAt: timestampFromDate(new Date(m.createdAt)),
    host: m.host,
    sections: m.sections.map((s) => ({ name: s.name, fileCount: BigInt(s.files), bytes: BigInt(s.bytes) })),
    totalFiles: BigInt(m.files.length),
    totalBytes: BigInt(m.files.reduce((a, f) => a + f.size, 0)),
    foreign,
    keyId: m.keyId ?? "",
    signedWithPreviousSecret: signedBy?.previous ?? false,
    ...(archive?.sha256 ? { archiveSha256: archive.sha256 } : {}),
    ...(archive?.bytes !== undefined ? { archiveBytes: BigInt(archive.bytes) } : {}),
  };
}

/** InspectBackupResponse for a verified archive. */
export function inspectAnswer(res: ReadBackupResult, includeFiles: boolean) {
  return {
    ...(res.manifest ? { manifest: manifestSummary(res.manifest, res.foreign, res.signedBy, { sha256: res.archiveSha256, bytes: res.archiveBytes }) } : {}),
    verification: {
      ok: res.ok && !res.foreign,
      problems: [
        ...res.problems.map((p) => ({ kind: problemKind(p), path: p.path, message: p.message })),
        ...(res.foreign && res.ok
          ? [
              {
                kind: BackupProblemKind.FOREIGN,
                path: "manifest.json",
                message:
                  "the manifest's HMAC does not match this deployment's server secret: the backup was made by another deployment (or the manifest was changed)",
              },
            ]
          : []),
      ],
      problemsTruncated: res.problemsTruncated,
    },
    files: includeFiles ? res.files.map((f) => ({ path: f.path, size: BigInt(f.size), mode: f.mode, sha256: f.sha256 })) : [],
  };
}
