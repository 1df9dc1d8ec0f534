/**
 * Backup archives, by job:
 * - archive-limits.ts: the size limits, the problem kinds a reader reports, the marker entry;
 * - archive-write.ts: writing a `.tar.gz` of state-dir files (two passes: hash, then stream);
 * - archive-read.ts: reading one back with every safety check, in one streaming pass;
 * - archive-input.ts: the reader's input (gzip magic, size and ratio limits, extended tar headers);
 * - archive-staging.ts: restore staging, the selected sections' files written as they stream.
 * This module re-exports what the rest of the backup area, the CLI and the tests use.
 */
export {
  COMPRESSION_LEVEL,
  DEFAULT_LIMITS,
  MANIFEST_MODE,
  MARKER_MODE,
  MAX_ARCHIVE_BYTES,
  MAX_COMPRESSION_RATIO,
  MAX_ENTRIES,
  MAX_FILE_BYTES,
  MAX_MANIFEST_BYTES,
  MAX_MARKER_BYTES,
  MAX_META_BYTES,
  MAX_PROBLEMS,
  MAX_TOTAL_BYTES,
  PROBLEM_KINDS,
  RATIO_GRACE_BYTES,
  RESTORED_FILE_MODE,
  formatLimit,
  markerContent,
  refusalMessage,
  type ArchiveLimits,
  type Problem,
  type ProblemKind,
} from "./archive-limits.js";
export { StagingError } from "./archive-staging.js";
export { BackupTooLargeError, StateChangedError, writeBackupArchive, type WriteBackupOptions, type WriteBackupResult } from "./archive-write.js";
export { readBackupArchive, type ReadBackupOptions, type ReadBackupResult, type VerifiedFile } from "./archive-read.js";
