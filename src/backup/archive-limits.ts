/**
 * What every backup archive obeys: the size limits (a reader refuses past them, a writer refuses
 * to write an archive a reader would refuse), the kinds of problem a reader reports, and the
 * marker entry that opens every archive. Shared by the writer (archive-write.ts) and the reader
 * (archive-read.ts).
 */
import { formatLimit } from "../format-bytes.js";
import { displayPath } from "./sections.js";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** Every restored file is private to the server's user, whatever mode the archive records. */
export const RESTORED_FILE_MODE = 0o600;
/** gzip level of written archives (the benchmark compares with `tar -czf` at the same level). */
export const COMPRESSION_LEVEL = 6;
/** Largest single file in an archive. */
export const MAX_FILE_BYTES = 1 * GiB;
/** Largest uncompressed tar stream (all headers and files). */
export const MAX_TOTAL_BYTES = 10 * GiB;
/** Largest compressed archive read. */
export const MAX_ARCHIVE_BYTES = 10 * GiB;
/** Uncompressed/compressed ratio past which an archive is refused as a gzip bomb... */
export const MAX_COMPRESSION_RATIO = 200;
/** ...once this many bytes were decompressed (small archives of tiny files compress well). */
export const RATIO_GRACE_BYTES = 8 * MiB;
/** Largest manifest.json (≈ 400k files). */
export const MAX_MANIFEST_BYTES = 64 * MiB;
/** Largest marker entry. */
export const MAX_MARKER_BYTES = 4 * KiB;
/** Largest pax extended header or GNU long name. */
export const MAX_META_BYTES = 1 * MiB;
/** Most entries read from one archive. */
export const MAX_ENTRIES = 1_000_000;
/** Most problems reported (then reading stops, `problemsTruncated`). */
export const MAX_PROBLEMS = 100;

export interface ArchiveLimits {
  maxFileBytes: number;
  maxTotalBytes: number;
  maxArchiveBytes: number;
  maxCompressionRatio: number;
  ratioGraceBytes: number;
  maxManifestBytes: number;
  maxEntries: number;
  maxProblems: number;
}

export const DEFAULT_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxFileBytes: MAX_FILE_BYTES,
  maxTotalBytes: MAX_TOTAL_BYTES,
  maxArchiveBytes: MAX_ARCHIVE_BYTES,
  maxCompressionRatio: MAX_COMPRESSION_RATIO,
  ratioGraceBytes: RATIO_GRACE_BYTES,
  maxManifestBytes: MAX_MANIFEST_BYTES,
  maxEntries: MAX_ENTRIES,
  maxProblems: MAX_PROBLEMS,
});

export { formatLimit };

// ---------------------------------------------------------------------------------------------
// Problems

/** Problem kinds, 1:1 with the proto enum BackupProblemKind (upper-cased: "unsafe_path" ⇄ UNSAFE_PATH). */
export const PROBLEM_KINDS = [
  "marker_invalid",
  "manifest_invalid",
  "version_unsupported",
  "foreign",
  "hash_mismatch",
  "size_mismatch",
  "entry_missing",
  "entry_unexpected",
  "unsafe_path",
  "unsafe_type",
  "duplicate_path",
  "outside_sections",
  "too_large",
  "corrupt_archive",
] as const;
export type ProblemKind = (typeof PROBLEM_KINDS)[number];

export interface Problem {
  kind: ProblemKind;
  /** The entry as written in the archive, control characters escaped; "" for the archive as a whole. */
  path: string;
  /** A sentence naming the entry and the rule: "entry 'tasks/../../x' escapes the state directory". */
  message: string;
}

/** The one-line refusal for an archive with problems: "refusing archive: <first problem>". */
export function refusalMessage(problems: readonly Problem[]): string {
  const first = problems[0];
  if (!first) return "refusing archive";
  return `refusing archive: ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Marker

export const MARKER_MODE = 0o644;
export const MANIFEST_MODE = 0o644;

export function markerContent(createdAt: string): string {
  return `carapace-backup v1\ncreated=${createdAt}\n`;
}

/** What a reader accepts as the marker's content (markerContent's shape, any format version). */
export const MARKER_RE = /^carapace-backup v(\d+)\ncreated=([^\n]*)\n$/;

/** A problem; the path as shown in messages (control characters escaped), "" for the archive as a whole. */
export function problem(kind: ProblemKind, path: string, message: string): Problem {
  return { kind, path: path === "" ? "" : displayPath(path), message };
}
