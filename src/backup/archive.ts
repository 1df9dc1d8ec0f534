/**
 * Backup archives: writing a `.tar.gz` from state-dir files, and reading one back with every
 * safety check, optionally staging the files of the selected sections as they stream.
 *
 * Layout (in this order): `.carapace-backup` (marker, mode 0644, "carapace-backup v1\n
 * created=<ISO>\n"), `manifest.json` (mode 0644, see manifest.ts), then every file under its
 * archive path (`config/config.json`, `tasks/queue.json`, ... see sections.ts) in manifest order,
 * with its mode and mtime from disk, uid/gid 0 and no user/group names. gzip level 6
 * (COMPRESSION_LEVEL, gzip's and `tar -czf`'s default).
 *
 * Memory stays flat: the manifest must list every file's SHA-256 but precedes the files, so the
 * writer makes two passes over the files: the first hashes them, the second streams them into the
 * archive and hashes them again. A file whose second-pass size or hash differs fails the backup
 * ("state changed during backup"): the caller keeps writers paused for the whole write (or hands
 * in `readFrom`: snapshot copies to read instead).
 */
import { createHash } from "node:crypto";
import { closeSync, constants, fchmodSync, fstatSync, fsync as fsyncCallback, openSync, readSync, writeSync } from "node:fs";
import { lstat, mkdir, open, unlink, type FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { join, sep } from "node:path";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip, type Gunzip, type ZlibOptions } from "node:zlib";
import {
  MANIFEST_FORMAT,
  MANIFEST_FORMAT_VERSION,
  parseManifest,
  signManifest,
  summarizeSections,
  verifyManifestHmac,
  type Manifest,
  type ManifestFile,
} from "./manifest.js";
import {
  MANIFEST_NAME,
  MARKER_NAME,
  SECTION_NAMES,
  checkSectionNames,
  displayPath,
  isSectionDirectory,
  sectionOf,
  unsafePathRule,
  type SectionName,
  type StateFile,
} from "./sections.js";
import {
  BLOCK,
  END_OF_ARCHIVE,
  TarFormatError,
  ZERO_BLOCK,
  decodeHeader,
  describeType,
  encodeFileHeader,
  isZeroBlock,
  paddingOf,
  parsePax,
} from "./tar.js";

// ---------------------------------------------------------------------------------------------
// Limits

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

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

/** "1 GiB", "64 MiB", "1024 bytes": limits in messages. */
export function formatLimit(n: number): string {
  for (const [unit, size] of [["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

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
  return `refusing archive: ${first.message}` + (problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : "");
}

// ---------------------------------------------------------------------------------------------
// Marker

export const MARKER_MODE = 0o644;
export const MANIFEST_MODE = 0o644;

export function markerContent(createdAt: string): string {
  return `carapace-backup v1\ncreated=${createdAt}\n`;
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface WriteBackupOptions {
  stateDir: string;
  /** The files to archive, from listStateFiles (in its order). */
  files: readonly StateFile[];
  /** Sections present (listStateFiles().sections): listed in the manifest even when empty. */
  sections?: readonly SectionName[];
  /** Server secret: keys the manifest HMAC. */
  secret: string;
  caraVersion: string;
  /** Receives the .tar.gz bytes; ended on success, destroyed on failure (the caller removes a partial file). */
  output: Writable;
  /**
   * Files to read from another path (both passes): state-dir path (`StateFile.absPath`) → path
   * of a snapshot copy taken while writers were held. Read like the others (synchronous calls).
   */
  readFrom?: ReadonlyMap<string, string>;
  /** Reads a file's content as a stream (both passes), instead of the default synchronous reads (tests). */
  readFile?: (absPath: string) => Readable;
  /** Default: os.hostname(). */
  host?: string;
  /** Snapshot time; default now. */
  now?: Date;
  /** maxFileBytes, maxTotalBytes, maxManifestBytes: a backup that could not be restored is refused before writing. */
  limits?: Partial<ArchiveLimits>;
}

export interface WriteBackupResult {
  manifest: Manifest;
  /** SHA-256 (lowercase hex) of the archive bytes written to output. */
  sha256: string;
  /** Archive size (compressed). */
  bytes: number;
  /** Size of the tar stream before compression. */
  uncompressedBytes: number;
}

/** A file changed between listing and the two passes of writeBackupArchive. */
export class StateChangedError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`state changed during backup: ${path} ${detail}; writers must stay paused while a backup is written`);
    this.name = "StateChangedError";
  }
}

/** A backup refused before writing (a file over the per-file limit, total over the limit). */
export class BackupTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupTooLargeError";
  }
}

const READ_CHUNK = 256 * KiB;
/** Synchronous work between two event-loop turns while hashing. */
const MAX_SYNC_SLICE_MS = 10;
const BATCH_BYTES = 256 * KiB;
/** Batch buffers of pass 2 (BatchWriter): BATCH_COUNT × BATCH_BYTES in use at most. */
const BATCH_COUNT = 8;
const HASH_CONCURRENCY = 8;

function openError(file: StateFile, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new StateChangedError(file.relPath, "was removed");
  if (code === "ELOOP") return new StateChangedError(file.relPath, "became a symbolic link");
  return err;
}

/** Where files are read from: state-dir path → path of its snapshot copy (when it has one). */
type Sources = ReadonlyMap<string, string> | undefined;

/** Opens a file (never through a symlink, never blocking on a FIFO) and checks it is still the regular file of `file.size` bytes. */
function openChecked(file: StateFile, sources: Sources): number {
  let fd: number;
  try {
    fd = openSync(sources?.get(file.absPath) ?? file.absPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw openError(file, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new StateChangedError(file.relPath, "is no longer a regular file");
    if (st.size !== file.size) throw new StateChangedError(file.relPath, `changed size from ${file.size} to ${st.size} bytes`);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * A file's bytes in chunks of at most READ_CHUNK, read with synchronous calls: a few microseconds
 * per call for page-cached state instead of thread-pool round trips per file and per chunk, which
 * dominated the time of a backup of thousands of small files (and, interleaved with them, made
 * every chunk of a large file wait for the next event-loop turn). The event loop is blocked for
 * one chunk at a time. With `scratch` every chunk is a view of it (the caller uses each chunk
 * before asking for the next); otherwise each chunk is a new buffer.
 */
function* readChunksSync(file: StateFile, sources: Sources, scratch?: Buffer): Generator<Buffer> {
  const fd = openChecked(file, sources);
  try {
    for (let pos = 0; pos < file.size; ) {
      const want = Math.min(READ_CHUNK, file.size - pos);
      const buf = scratch && scratch.length >= want ? scratch.subarray(0, want) : Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const n = readSync(fd, buf, filled, want - filled, pos + filled);
        if (n === 0) throw new StateChangedError(file.relPath, `shrank from ${file.size} to ${pos + filled} bytes`);
        filled += n;
      }
      pos += want;
      yield buf;
    }
  } finally {
    closeSync(fd);
  }
}

/** Lets the event loop run when more than MAX_SYNC_SLICE_MS of synchronous work went by. */
class Slicer {
  private start = performance.now();
  async pause(): Promise<void> {
    if (performance.now() - this.start <= MAX_SYNC_SLICE_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}

/** A file's bytes from a readFile stream, failing with StateChangedError when its size is not `file.size`. */
async function* fileChunks(file: StateFile, readFile: (absPath: string) => Readable): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of readFile(file.absPath)) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    total += buf.length;
    if (total > file.size) throw new StateChangedError(file.relPath, `grew past ${file.size} bytes`);
    yield buf;
  }
  if (total !== file.size) throw new StateChangedError(file.relPath, `shrank from ${file.size} to ${total} bytes`);
}

/** SHA-256 of a file (pass 1): reads into `scratch` (READ_CHUNK bytes) instead of allocating. */
async function hashFile(file: StateFile, scratch: Buffer, slicer: Slicer, sources: Sources, readFile?: (absPath: string) => Readable): Promise<string> {
  const hash = createHash("sha256");
  if (readFile) {
    for await (const chunk of fileChunks(file, readFile)) hash.update(chunk);
    return hash.digest("hex");
  }
  for (const chunk of readChunksSync(file, sources, scratch)) {
    hash.update(chunk);
    await slicer.pause();
  }
  return hash.digest("hex");
}

/**
 * Pass 2's output: a fixed set of BATCH_COUNT buffers of BATCH_BYTES, filled in place (tar
 * headers, and file contents read straight into them) and handed to gzip in BATCH_BYTES writes
 * (zlib is much faster with few large writes); a buffer is reused once gzip has consumed it
 * (its write callback). Nothing is allocated per file or per chunk, so memory stays flat
 * whatever the state size, and the set keeps zlib fed while the next files are read.
 */
class BatchWriter {
  private readonly free: Buffer[];
  private readonly waiters: (() => void)[] = [];
  private cur: Buffer | undefined;
  private used = 0;
  private error: unknown;
  /** Bytes handed to gzip (the uncompressed tar stream). */
  written = 0;

  constructor(
    private readonly gzip: Writable,
    done: Promise<unknown>,
    private readonly slicer: Slicer,
  ) {
    this.free = Array.from({ length: BATCH_COUNT }, () => Buffer.allocUnsafe(BATCH_BYTES));
    done.catch((err: unknown) => {
      this.error = err ?? new Error("backup output failed");
      for (const w of this.waiters.splice(0)) w();
    });
  }

  private async room(): Promise<Buffer> {
    if (this.error !== undefined) throw this.error;
    if (this.cur) return this.cur;
    while (this.free.length === 0) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      if (this.error !== undefined) throw this.error;
    }
    this.cur = this.free.pop()!;
    this.used = 0;
    return this.cur;
  }

  private release(buf: Buffer): void {
    this.free.push(buf);
    this.waiters.shift()?.();
  }

  private async flush(): Promise<void> {
    const buf = this.cur;
    if (!buf) return;
    this.cur = undefined;
    if (this.used === 0) return this.release(buf);
    this.written += this.used;
    this.gzip.write(buf.subarray(0, this.used), () => this.release(buf));
    await this.slicer.pause();
  }

  async append(data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; ) {
      const buf = await this.room();
      const n = Math.min(buf.length - this.used, data.length - off);
      data.copy(buf, this.used, off, off + n);
      this.used += n;
      off += n;
      if (this.used === buf.length) await this.flush();
    }
  }

  /** Reads the file's `file.size` bytes straight into the batches (synchronous reads); returns their SHA-256. */
  async appendFile(file: StateFile, sources: Sources): Promise<string> {
    const hash = createHash("sha256");
    const fd = openChecked(file, sources);
    try {
      for (let pos = 0; pos < file.size; ) {
        const buf = await this.room();
        const want = Math.min(buf.length - this.used, file.size - pos);
        for (let filled = 0; filled < want; ) {
          const n = readSync(fd, buf, this.used + filled, want - filled, pos + filled);
          if (n === 0) throw new StateChangedError(file.relPath, `shrank from ${file.size} to ${pos + filled} bytes`);
          filled += n;
        }
        hash.update(buf.subarray(this.used, this.used + want));
        this.used += want;
        pos += want;
        if (this.used === buf.length) await this.flush();
      }
    } finally {
      closeSync(fd);
    }
    return hash.digest("hex");
  }

  async end(): Promise<void> {
    await this.flush();
    if (this.error !== undefined) throw this.error;
    this.gzip.end();
  }
}

/**
 * Writes a backup archive of `files` to `output` (see the module comment for layout and the
 * two-pass hashing). Resolves once output has finished; rejects with StateChangedError when a
 * file changed during the backup, BackupTooLargeError when a file or the total is over the
 * limits (before anything is written), or an I/O error. Output is destroyed on failure.
 */
export async function writeBackupArchive(options: WriteBackupOptions): Promise<WriteBackupResult> {
  try {
    return await writeArchive(options);
  } catch (err) {
    if (!options.output.destroyed) options.output.destroy();
    throw err;
  }
}

async function writeArchive(options: WriteBackupOptions): Promise<WriteBackupResult> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const files = options.files;
  let total = 0;
  for (const f of files) {
    if (f.size > limits.maxFileBytes) {
      throw new BackupTooLargeError(`cannot back up ${f.relPath}: it is ${f.size} bytes, over the ${formatLimit(limits.maxFileBytes)} per-file limit of a backup`);
    }
    const rule = unsafePathRule(f.archivePath);
    if (rule || sectionOf(f.archivePath) !== f.section || f.absPath !== join(options.stateDir, ...f.relPath.split("/"))) {
      throw new Error(`cannot back up ${displayPath(f.relPath)}: not a file of section '${f.section}' in ${options.stateDir} (archive path '${displayPath(f.archivePath)}')`);
    }
    total += f.size;
  }
  if (total > limits.maxTotalBytes) {
    throw new BackupTooLargeError(`cannot back up: the state is ${total} bytes, over the ${formatLimit(limits.maxTotalBytes)} limit of a backup`);
  }
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.archivePath)) throw new Error(`cannot back up: ${f.archivePath} is listed twice`);
    seen.add(f.archivePath);
  }

  // Pass 1: hash every file (memory: one read buffer per worker; several workers only matter
  // for readFile streams, the default synchronous reads go one file after the other).
  const hashes: string[] = new Array<string>(files.length);
  let next = 0;
  const slicer = new Slicer();
  const sources = options.readFrom;
  const worker = async () => {
    const scratch = Buffer.allocUnsafe(READ_CHUNK);
    while (next < files.length) {
      const i = next++;
      hashes[i] = await hashFile(files[i]!, scratch, slicer, sources, options.readFile);
      await slicer.pause();
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, files.length) }, worker));

  const createdAt = (options.now ?? new Date()).toISOString();
  const manifestFiles: ManifestFile[] = files.map((f, i) => ({ path: f.archivePath, size: f.size, mode: f.mode, sha256: hashes[i]! }));
  const manifest = signManifest(
    {
      format: MANIFEST_FORMAT,
      formatVersion: MANIFEST_FORMAT_VERSION,
      caraVersion: options.caraVersion,
      createdAt,
      host: options.host ?? hostname(),
      sections: summarizeSections(manifestFiles, options.sections ?? []),
      files: manifestFiles,
    },
    options.secret,
  );

  const manifestJson = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`);
  if (manifestJson.length > limits.maxManifestBytes) {
    throw new BackupTooLargeError(`cannot back up: the manifest of ${files.length} files is ${manifestJson.length} bytes, over the ${formatLimit(limits.maxManifestBytes)} limit`);
  }
  const createdDate = new Date(createdAt);
  const readFile = options.readFile;
  const archiveHash = createHash("sha256");
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      archiveHash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  // Pass 2: the tar stream, through gzip, to the output. A deep output buffer (1 MiB) keeps zlib
  // busy while the output is written (with the 16 KiB default it waited for every output chunk,
  // and the backup ran at ~0.7× of `tar -czf`; bench/benchmarks/backup.ts).
  const gzip = createGzip({ level: COMPRESSION_LEVEL, chunkSize: 64 * KiB, readableHighWaterMark: 1 * MiB } as ZlibOptions);
  const done = pipeline(gzip, tap, options.output);
  const out = new BatchWriter(gzip, done, slicer);
  const small = (name: string, content: Buffer, mode: number): Buffer => {
    const header = encodeFileHeader(name, content.length, mode, createdDate);
    return Buffer.concat([header, content, ZERO_BLOCK.subarray(0, paddingOf(content.length))]);
  };
  try {
    await out.append(small(MARKER_NAME, Buffer.from(markerContent(createdAt)), MARKER_MODE));
    await out.append(small(MANIFEST_NAME, manifestJson, MANIFEST_MODE));
    for (let i = 0; i < files.length; i++) {
      const file = files[i]!;
      await out.append(encodeFileHeader(file.archivePath, file.size, file.mode, new Date(Math.floor(file.mtimeMs))));
      let digest: string;
      if (readFile) {
        const hash = createHash("sha256");
        for await (const chunk of fileChunks(file, readFile)) {
          hash.update(chunk);
          await out.append(chunk);
        }
        digest = hash.digest("hex");
      } else {
        digest = await out.appendFile(file, sources);
      }
      if (digest !== hashes[i]) throw new StateChangedError(file.relPath, "changed between the hashing and the writing pass");
      const pad = paddingOf(file.size);
      if (pad > 0) await out.append(ZERO_BLOCK.subarray(0, pad));
    }
    await out.append(END_OF_ARCHIVE);
    await out.end();
  } catch (err) {
    gzip.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  const uncompressedBytes = out.written;
  return { manifest, sha256: archiveHash.digest("hex"), bytes, uncompressedBytes };
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface ReadBackupOptions {
  /** Server secret: verifies the manifest HMAC. */
  secret: string;
  /** Accept a manifest whose HMAC does not verify (foreign: true, no FOREIGN problem). */
  allowForeign?: boolean;
  /**
   * An existing directory (created by the caller on the state dir's filesystem, ideally empty)
   * that receives the files of the selected sections as they stream, under their archive paths
   * (`config/config.json`, `tasks/queue.json`, ...): files O_EXCL|O_NOFOLLOW created 0600 (the
   * manifest's mode is recorded, never applied: state files are private whatever the archive
   * says), directories 0700. Writing stops at the
   * first problem; on ANY problem (or a thrown error) the caller must discard the whole
   * directory. Nothing is ever written outside it.
   */
  stagingDir?: string;
  /** Sections to stage (default: all in the archive). Every entry is verified regardless. */
  sections?: readonly string[];
  limits?: Partial<ArchiveLimits>;
  /** fsync staged files and directories (for a restore that renames them into place). */
  fsync?: boolean;
  /**
   * Read only the first two entries, the marker and manifest.json, then stop (listing archives
   * without decompressing them whole). The marker, the manifest and its HMAC are checked as
   * usual; no file entry is read, so `files` is empty, `ok` says nothing about the files, and
   * archiveSha256/archiveBytes are absent. Not with stagingDir.
   */
  headOnly?: boolean;
}

export interface VerifiedFile extends ManifestFile {
  section: SectionName;
  /** Absolute path of the staged copy, when staged. */
  stagedPath?: string;
}

export interface ReadBackupResult {
  /** No problems (a foreign archive without allowForeign has a FOREIGN problem). */
  ok: boolean;
  /** The manifest when it was readable and valid (also for a foreign archive). */
  manifest?: Manifest;
  problems: Problem[];
  /** More problems existed than limits.maxProblems; reading stopped there. */
  problemsTruncated: boolean;
  /** The manifest HMAC does not verify with this secret. */
  foreign: boolean;
  /** Entries whose size and SHA-256 match the manifest, in archive order. */
  files: VerifiedFile[];
  /** SHA-256 and size of the compressed input; absent when reading stopped before its end. */
  archiveSha256?: string;
  archiveBytes?: number;
}

/** A filesystem failure while staging (ENOSPC, EEXIST in a non-empty staging dir, ...): not an archive problem. */
export class StagingError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = "StagingError";
  }
}

/** Reading stops at this problem. */
class Stop extends Error {
  constructor(readonly problem?: Problem) {
    super(problem?.message ?? "stopped");
  }
}

const NOT_GZIP = new Error("not gzip");
const SMALL_FILE_BYTES = 1 * MiB;
/** Staged files up to this size are written with synchronous calls (and fsync'ed in the thread pool). */
const SYNC_WRITE_MAX = 256 * KiB;
const MAX_STAGING_JOBS = 16;
const MAX_STAGING_BYTES = 16 * MiB;

function problem(kind: ProblemKind, path: string, message: string): Problem {
  return { kind, path: path === "" ? "" : displayPath(path), message };
}

/** Decompressed bytes pulled from gunzip, with the total and ratio limits applied. */
class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  uncompressed = 0;
  constructor(
    private readonly it: AsyncIterator<Buffer>,
    private readonly compressed: () => number,
    private readonly limits: ArchiveLimits,
  ) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      this.buf = r.value;
      this.off = 0;
      this.uncompressed += r.value.length;
      if (this.uncompressed > this.limits.maxTotalBytes) {
        throw new Stop(problem("too_large", "", `archive expands past the ${formatLimit(this.limits.maxTotalBytes)} limit on its uncompressed size`));
      }
      const compressed = Math.max(1, this.compressed());
      if (this.uncompressed > this.limits.ratioGraceBytes && this.uncompressed > this.limits.maxCompressionRatio * compressed) {
        throw new Stop(
          problem(
            "too_large",
            "",
            `archive expands more than ${this.limits.maxCompressionRatio}× (${this.uncompressed} bytes from ${compressed} compressed): it looks like a gzip bomb`,
          ),
        );
      }
    }
    return true;
  }

  /**
   * Exactly n bytes, or undefined at a clean end; throws Truncated in between. Without `copy`
   * the result may be a slice of zlib's output (never overwritten, but it keeps the chunk alive).
   */
  async readExact(n: number, what: string, copy = true): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    if (this.buf.length - this.off >= n) {
      const slice = this.buf.subarray(this.off, this.off + n);
      const out = copy ? Buffer.from(slice) : slice;
      this.off += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) throw truncated(what);
      const take = Math.min(n - got, this.buf.length - this.off);
      this.buf.copy(out, got, this.off, this.off + take);
      this.off += take;
      got += take;
    }
    return out;
  }

  /** The next n bytes as slices (valid until the next call). */
  async *take(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw truncated(what);
      const take = Math.min(left, this.buf.length - this.off);
      const slice = this.buf.subarray(this.off, this.off + take);
      this.off += take;
      left -= take;
      yield slice;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.take(n, what)) {
      // discard
    }
  }

  /** True when everything left is zero bytes (reads to the end). */
  async restIsZero(): Promise<boolean> {
    while (await this.fill()) {
      for (let i = this.off; i < this.buf.length; i++) if (this.buf[i] !== 0) return false;
      this.off = this.buf.length;
    }
    return true;
  }
}

function truncated(what: string): Stop {
  return new Stop(problem("corrupt_archive", "", `archive is truncated: it ends inside ${what}`));
}

/** Bounded set of concurrent small-file writes: hides per-file syscall latency, memory ≤ 16 MiB. */
class WritePool {
  private inflight = new Set<Promise<void>>();
  private bytes = 0;
  private error: unknown;

  async add(bytes: number, job: () => Promise<void>): Promise<void> {
    while (this.inflight.size >= MAX_STAGING_JOBS || (this.bytes + bytes > MAX_STAGING_BYTES && this.inflight.size > 0)) {
      await Promise.race(this.inflight);
    }
    this.check();
    this.bytes += bytes;
    const p: Promise<void> = job()
      .catch((err: unknown) => {
        this.error ??= err;
      })
      .finally(() => {
        this.bytes -= bytes;
        this.inflight.delete(p);
      });
    this.inflight.add(p);
  }

  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  /** Waits for every write; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
    this.check();
  }
}

function stagingError(err: unknown, what: string): StagingError {
  if (err instanceof StagingError) return err;
  const e = err as NodeJS.ErrnoException;
  const detail =
    e.code === "ENOSPC" ? "the staging filesystem is full" : e.code === "EEXIST" ? "it already exists (the staging directory must be empty)" : e.message;
  return new StagingError(`cannot stage ${what}: ${detail}`, e.code);
}

/** Writes staged files under one root, never following symlinks and never leaving it. */
class Stager {
  private readonly dirs = new Set<string>();
  readonly pool = new WritePool();
  constructor(
    readonly root: string,
    private readonly fsync: boolean,
  ) {}

  static async open(root: string, fsync: boolean): Promise<Stager> {
    const st = await lstat(root);
    if (!st.isDirectory()) throw new StagingError(`staging path ${root} is not a directory`, undefined);
    return new Stager(root, fsync);
  }

  /** Absolute target of a (safe) archive path, after creating its parent directories. */
  async prepare(path: string): Promise<string> {
    const segments = path.split("/");
    let rel = "";
    for (let i = 0; i < segments.length - 1; i++) {
      rel = rel === "" ? segments[i]! : `${rel}/${segments[i]}`;
      if (this.dirs.has(rel)) continue;
      const abs = join(this.root, rel);
      try {
        await mkdir(abs, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw stagingError(err, path);
        const st = await lstat(abs);
        if (!st.isDirectory()) throw new StagingError(`cannot stage ${path}: ${rel} exists and is not a directory`, "ENOTDIR");
      }
      this.dirs.add(rel);
    }
    const target = join(this.root, ...segments);
    if (!target.startsWith(this.root + sep)) throw new StagingError(`cannot stage ${path}: it resolves outside the staging directory`, undefined);
    return target;
  }

  async create(target: string, path: string): Promise<FileHandle> {
    try {
      return await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw stagingError(err, path);
    }
  }

  async finish(handle: FileHandle, mode: number, path: string): Promise<void> {
    try {
      await handle.chmod(mode);
      if (this.fsync) await handle.sync();
    } catch (err) {
      throw stagingError(err, path);
    } finally {
      await handle.close();
    }
  }

  async writeWhole(target: string, content: Buffer, mode: number, path: string): Promise<void> {
    const handle = await this.create(target, path);
    try {
      let off = 0;
      while (off < content.length) off += (await handle.write(content, off, content.length - off)).bytesWritten;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw stagingError(err, path);
    }
    await this.finish(handle, mode, path);
  }

  /**
   * Small files: open, write and chmod with synchronous calls (microseconds instead of
   * thread-pool round trips, which dominate with thousands of small files); with fsync, only the
   * fsync goes to the thread pool (callback API, a few at a time through the pool), then the
   * descriptor is closed.
   */
  async writeWholeSync(target: string, content: Buffer, mode: number, path: string): Promise<void> {
    let fd: number;
    try {
      fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw stagingError(err, path);
    }
    try {
      let off = 0;
      while (off < content.length) off += writeSync(fd, content, off, content.length - off);
      fchmodSync(fd, mode);
    } catch (err) {
      closeSync(fd);
      throw stagingError(err, path);
    }
    if (!this.fsync) {
      closeSync(fd);
      return;
    }
    let started = false;
    try {
      await this.pool.add(0, () => {
        started = true;
        return new Promise<void>((resolve, reject) =>
          fsyncCallback(fd, (err) => {
            closeSync(fd);
            if (err) reject(stagingError(err, path));
            else resolve();
          }),
        );
      });
    } catch (err) {
      if (!started) closeSync(fd); // an earlier write failed: the job never ran
      throw err;
    }
  }

  async syncDirs(): Promise<void> {
    if (!this.fsync) return;
    for (const rel of ["", ...this.dirs]) {
      const handle = await open(join(this.root, rel), constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }
}

const MARKER_RE = /^carapace-backup v(\d+)\ncreated=([^\n]*)\n$/;

/**
 * Reads a backup archive from `input` in one streaming pass and verifies it (see ReadBackupResult
 * and the problem kinds): marker first, manifest second and valid, HMAC (FOREIGN unless
 * allowForeign), every entry's path, type, uniqueness, section, manifest membership, size and
 * SHA-256, nothing missing, and the size / ratio limits. Problems are returned, not thrown; some
 * (corrupt or truncated gzip, limits, no marker) stop reading, and then `input` is destroyed.
 * Throws only for invalid options, an `input` error, or a staging filesystem error
 * (StagingError). With `stagingDir`, see ReadBackupOptions: the caller discards the staging dir
 * unless the result is ok.
 */
export async function readBackupArchive(input: Readable, options: ReadBackupOptions): Promise<ReadBackupResult> {
  const limits: ArchiveLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const selected = new Set<SectionName>(options.sections && options.sections.length > 0 ? checkSectionNames(options.sections) : SECTION_NAMES);
  if (options.headOnly && options.stagingDir !== undefined) throw new Error("readBackupArchive: headOnly cannot stage files");
  const stager = options.stagingDir !== undefined ? await Stager.open(options.stagingDir, options.fsync ?? false) : undefined;

  const problems: Problem[] = [];
  let problemsTruncated = false;
  const add = (p: Problem) => {
    if (problems.length >= limits.maxProblems) {
      problemsTruncated = true;
      throw new Stop();
    }
    problems.push(p);
  };

  // Input → (count, hash, gzip magic, size limit) → gunzip.
  // Large output chunks and read-ahead let zlib inflate while the entries are hashed and written
  // (with the 16 KiB defaults inflate and processing alternate, and throughput halves).
  // (Reading only the head: small buffers, so little more than the head is read and inflated.)
  const gunzip: Gunzip = createGunzip(
    (options.headOnly
      ? { chunkSize: 16 * KiB, readableHighWaterMark: 16 * KiB, writableHighWaterMark: 16 * KiB }
      : { chunkSize: 256 * KiB, readableHighWaterMark: 1 * MiB, writableHighWaterMark: 256 * KiB }) as ZlibOptions,
  );
  const archiveHash = createHash("sha256");
  let compressed = 0;
  let inputError: unknown;
  let inputEnded = false;
  let stopped = false;
  let head = Buffer.alloc(0);
  let archiveTooLarge = false;
  const pump = (async () => {
    try {
      for await (const raw of input) {
        if (stopped) return;
        const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
        compressed += chunk.length;
        archiveHash.update(chunk);
        if (compressed > limits.maxArchiveBytes) {
          archiveTooLarge = true;
          gunzip.destroy(NOT_GZIP);
          return;
        }
        if (head.length < 2) {
          head = Buffer.concat([head, chunk.subarray(0, 2)]);
          if (head.length >= 2 && (head[0] !== 0x1f || head[1] !== 0x8b)) {
            gunzip.destroy(NOT_GZIP);
            return;
          }
        }
        if (gunzip.destroyed) return;
        if (!gunzip.write(chunk)) {
          if (gunzip.destroyed) return;
          try {
            await new Promise<void>((resolve, reject) => {
              const cleanup = () => {
                gunzip.off("drain", onDrain);
                gunzip.off("close", onClose);
              };
              const onDrain = () => (cleanup(), resolve());
              const onClose = () => (cleanup(), reject(new Error("closed")));
              gunzip.on("drain", onDrain);
              gunzip.on("close", onClose);
            });
          } catch {
            return; // gunzip failed or was stopped: the reader reports it
          }
        }
      }
      inputEnded = true;
      if (gunzip.destroyed) return;
      if (head.length < 2) gunzip.destroy(NOT_GZIP);
      else gunzip.end();
    } catch (err) {
      if (!stopped) {
        inputError = err;
        gunzip.destroy(err as Error);
      }
    }
  })();

  const source = new ByteSource(gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>, () => compressed, limits);
  let manifest: Manifest | undefined;
  let manifestFiles: Map<string, ManifestFile> | undefined;
  let foreign = false;
  let markerCreated: string | undefined;
  let complete = false;
  /** headOnly: the marker and the manifest were read, reading stopped there. */
  let headRead = false;
  const seen = new Set<string>();
  /** Directory entries seen (files and directories share one namespace). */
  const seenDirs = new Set<string>();
  const verified: VerifiedFile[] = [];
  let staging = stager !== undefined;

  const processEntries = async () => {
    let index = 0;
    let pending: { path?: string; size?: number; linkpath?: string } = {};
    let last = "the first header";
    for (;;) {
      const block = await source.readExact(BLOCK, `the header after ${last}`);
      if (block === undefined) {
        throw new Stop(problem("corrupt_archive", "", `archive is truncated: it ends after ${last} without the end-of-archive marker`));
      }
      if (isZeroBlock(block)) {
        if (pending.path !== undefined || pending.size !== undefined) throw truncated(`the extended header of the entry after ${last}`);
        if (!(await source.restIsZero())) throw new Stop(problem("corrupt_archive", "", `archive has data after its end-of-archive marker`));
        return;
      }
      let header;
      try {
        header = decodeHeader(block);
      } catch (err) {
        if (!(err instanceof TarFormatError)) throw err;
        throw new Stop(problem("corrupt_archive", "", `archive is corrupt: the tar header after ${last} is invalid (${err.message})`));
      }
      if (["x", "g", "L", "K"].includes(header.type)) {
        if (header.size > MAX_META_BYTES) {
          throw new Stop(problem("too_large", "", `archive has an extended header of ${header.size} bytes after ${last}, over the ${formatLimit(MAX_META_BYTES)} limit`));
        }
        const data = (await source.readExact(header.size + paddingOf(header.size), `an extended header after ${last}`)) ?? Buffer.alloc(0);
        if (data.length < header.size) throw truncated(`an extended header after ${last}`);
        const body = data.subarray(0, header.size);
        if (header.type === "x") {
          let records: Map<string, string>;
          try {
            records = parsePax(body);
          } catch (err) {
            throw new Stop(problem("corrupt_archive", "", `archive is corrupt: the pax header after ${last} is invalid (${(err as Error).message})`));
          }
          const p = records.get("path");
          if (p !== undefined) pending.path = p;
          const l = records.get("linkpath");
          if (l !== undefined) pending.linkpath = l;
          const s = records.get("size");
          if (s !== undefined) {
            if (!/^[0-9]{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) {
              throw new Stop(problem("corrupt_archive", "", `archive is corrupt: the pax header after ${last} has an invalid size`));
            }
            pending.size = Number(s);
          }
        } else if (header.type === "L") {
          pending.path = body.toString("utf8").replace(/\0+$/, "");
        } else if (header.type === "K") {
          pending.linkpath = body.toString("utf8").replace(/\0+$/, "");
        } // "g": global headers are ignored (they never rename or resize an entry here)
        continue;
      }
      const entry = {
        path: pending.path ?? header.name,
        size: pending.size ?? header.size,
        type: header.type,
        linkpath: pending.linkpath ?? header.linkname,
      };
      pending = {};
      if (index >= limits.maxEntries) {
        throw new Stop(problem("too_large", "", `archive has more than ${limits.maxEntries} entries`));
      }
      await processEntry(entry, index++);
      last = `entry '${displayPath(entry.path)}'`;
      if (options.headOnly && index === 2) {
        headRead = true;
        return;
      }
    }
  };

  const skipBody = (e: { size: number; path: string }) => source.skip(e.size + paddingOf(e.size), `entry '${displayPath(e.path)}'`);

  const readBody = async (e: { size: number; path: string }, copy = true): Promise<Buffer> => {
    const what = `entry '${displayPath(e.path)}'`;
    const data = e.size === 0 ? Buffer.alloc(0) : await source.readExact(e.size, what, copy);
    if (data === undefined) throw truncated(what);
    await source.skip(paddingOf(e.size), what);
    return data;
  };

  const processEntry = async (e: { path: string; size: number; type: string; linkpath: string }, index: number) => {
    const regular = e.type === "0";
    if (index === 0) {
      if (e.path !== MARKER_NAME) {
        throw new Stop(
          problem("marker_invalid", e.path, `archive does not start with the '${MARKER_NAME}' marker (first entry is '${displayPath(e.path)}'): not a cara backup`),
        );
      }
      seen.add(MARKER_NAME);
      if (!regular) {
        add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' is ${describeType(e.type)}, not a regular file`));
        return skipBody(e);
      }
      if (e.size > MAX_MARKER_BYTES) {
        add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' is ${e.size} bytes, over the ${formatLimit(MAX_MARKER_BYTES)} limit`));
        return skipBody(e);
      }
      const text = (await readBody(e)).toString("utf8");
      const m = MARKER_RE.exec(text);
      if (!m) {
        add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' does not say "carapace-backup v1" and "created=<time>"`));
      } else if (m[1] !== "1") {
        add(problem("version_unsupported", e.path, `marker says backup format v${m[1]}, newer than this cara understands (v1); upgrade cara to read this backup`));
      } else {
        markerCreated = m[2];
      }
      return;
    }
    if (index === 1 && e.path === MANIFEST_NAME) {
      seen.add(MANIFEST_NAME);
      if (!regular) {
        add(problem("manifest_invalid", e.path, `manifest.json is ${describeType(e.type)}, not a regular file`));
        return skipBody(e);
      }
      if (e.size > limits.maxManifestBytes) {
        add(problem("too_large", e.path, `manifest.json is ${e.size} bytes, over the ${formatLimit(limits.maxManifestBytes)} limit`));
        return skipBody(e);
      }
      const parsed = parseManifest(await readBody(e));
      if (!parsed.ok) {
        add(problem(parsed.kind, e.path, parsed.message));
        return;
      }
      manifest = parsed.manifest;
      foreign = !verifyManifestHmac(manifest, options.secret);
      if (foreign && !options.allowForeign) {
        add(
          problem(
            "foreign",
            e.path,
            "manifest HMAC does not match this deployment's key: the backup was made by another deployment, or manifest.json was changed after signing",
          ),
        );
      }
      if (markerCreated !== undefined && markerCreated !== manifest.createdAt) {
        add(problem("manifest_invalid", e.path, `manifest.json createdAt (${manifest.createdAt}) differs from the marker's (${displayPath(markerCreated, 60)})`));
      }
      const declared = manifest.files.reduce((sum, f) => sum + f.size, 0);
      if (declared > limits.maxTotalBytes) {
        throw new Stop(problem("too_large", e.path, `manifest.json lists ${declared} bytes, over the ${formatLimit(limits.maxTotalBytes)} limit`));
      }
      manifestFiles = new Map(manifest.files.map((f) => [f.path, f]));
      return;
    }
    if (index === 1) {
      add(problem("manifest_invalid", e.path, `manifest.json must be the second entry (found '${displayPath(e.path)}')`));
    }
    if (e.path === MARKER_NAME || e.path === MANIFEST_NAME) {
      if (seen.has(e.path)) add(problem("duplicate_path", e.path, `entry '${e.path}' appears more than once`));
      else add(problem(e.path === MARKER_NAME ? "marker_invalid" : "manifest_invalid", e.path, `entry '${e.path}' must be entry number ${e.path === MARKER_NAME ? 1 : 2}, not ${index + 1}`));
      return skipBody(e);
    }

    const isDir = e.type === "5";
    const path = isDir && e.path.endsWith("/") ? e.path.slice(0, -1) : e.path;
    const rule = unsafePathRule(path);
    if (rule) {
      add(problem("unsafe_path", e.path, `entry '${displayPath(e.path)}' ${rule}`));
      return skipBody(e);
    }
    if (isDir) {
      // A directory and a file at one path (either order) is a duplicate like any other.
      if (seen.has(path) || seenDirs.has(path)) add(problem("duplicate_path", e.path, `entry '${displayPath(path)}' appears more than once`));
      seenDirs.add(path);
      if (!isSectionDirectory(path)) add(problem("outside_sections", e.path, `directory entry '${displayPath(e.path)}' is outside every backup section`));
      return skipBody(e);
    }
    if (!regular) {
      const to = e.type === "1" || e.type === "2" ? ` (to '${displayPath(e.linkpath, 100)}')` : "";
      add(problem("unsafe_type", e.path, `entry '${displayPath(e.path)}' is ${describeType(e.type)}${to}; only regular files are allowed`));
      return skipBody(e);
    }
    if (e.size > limits.maxFileBytes) {
      throw new Stop(problem("too_large", e.path, `entry '${displayPath(e.path)}' is ${e.size} bytes, over the ${formatLimit(limits.maxFileBytes)} per-file limit`));
    }
    if (seen.has(path) || seenDirs.has(path)) {
      add(problem("duplicate_path", e.path, `entry '${displayPath(path)}' appears more than once`));
      return skipBody(e);
    }
    seen.add(path);
    const section = sectionOf(path);
    if (section === undefined) {
      add(problem("outside_sections", e.path, `entry '${displayPath(path)}' is outside every backup section (${SECTION_NAMES.join(", ")})`));
      return skipBody(e);
    }
    if (!manifestFiles) return skipBody(e); // no usable manifest: nothing to compare with
    const listed = manifestFiles.get(path);
    if (!listed) {
      add(problem("entry_unexpected", e.path, `entry '${displayPath(path)}' is not listed in the manifest`));
      return skipBody(e);
    }
    if (e.size !== listed.size) {
      add(problem("size_mismatch", e.path, `entry '${displayPath(path)}' is ${e.size} bytes but the manifest says ${listed.size}`));
      return skipBody(e);
    }

    const what = `entry '${displayPath(path)}'`;
    const stage = staging && problems.length === 0 && selected.has(section);
    const hash = createHash("sha256");
    let stagedPath: string | undefined;
    if (stage && stager && e.size <= SMALL_FILE_BYTES) {
      const content = await readBody(e, e.size > SYNC_WRITE_MAX);
      hash.update(content);
      const digest = hash.digest("hex");
      if (digest === listed.sha256) {
        const target = await stager.prepare(path);
        if (content.length <= SYNC_WRITE_MAX) {
          await stager.writeWholeSync(target, content, RESTORED_FILE_MODE, path);
        } else {
          stager.pool.check();
          await stager.pool.add(content.length, () => stager.writeWhole(target, content, RESTORED_FILE_MODE, path));
        }
        stagedPath = target;
      }
      return finishEntry(digest, listed, section, stagedPath);
    }
    if (stage && stager) {
      const target = await stager.prepare(path);
      const handle = await stager.create(target, path);
      let ok = false;
      try {
        for await (const chunk of source.take(e.size, what)) {
          hash.update(chunk);
          try {
            let off = 0;
            while (off < chunk.length) off += (await handle.write(chunk, off, chunk.length - off)).bytesWritten;
          } catch (err) {
            throw stagingError(err, path);
          }
        }
        ok = true;
      } finally {
        if (!ok) await handle.close().catch(() => undefined);
      }
      const digest = hash.digest("hex");
      if (digest === listed.sha256) {
        await stager.finish(handle, RESTORED_FILE_MODE, path);
        stagedPath = target;
      } else {
        await handle.close();
        await unlink(target).catch(() => undefined);
      }
      await source.skip(paddingOf(e.size), what);
      return finishEntry(digest, listed, section, stagedPath);
    }
    for await (const chunk of source.take(e.size, what)) hash.update(chunk);
    await source.skip(paddingOf(e.size), what);
    return finishEntry(hash.digest("hex"), listed, section, undefined);
  };

  const finishEntry = (digest: string, listed: ManifestFile, section: SectionName, stagedPath: string | undefined) => {
    if (digest !== listed.sha256) {
      add(problem("hash_mismatch", listed.path, `entry '${displayPath(listed.path)}' does not match its SHA-256 in the manifest`));
      return;
    }
    verified.push(stagedPath === undefined ? { ...listed, section } : { ...listed, section, stagedPath });
  };

  let thrown: unknown;
  try {
    await processEntries();
    complete = !headRead;
  } catch (err) {
    if (err instanceof Stop) {
      if (err.problem) {
        if (problems.length < limits.maxProblems) problems.push(err.problem);
        else problemsTruncated = true;
      }
    } else if (inputError !== undefined) {
      thrown = inputError;
    } else if (err === NOT_GZIP) {
      if (archiveTooLarge) {
        problems.push(problem("too_large", "", `archive is larger than the ${formatLimit(limits.maxArchiveBytes)} limit`));
      } else {
        problems.push(
          problem("corrupt_archive", "", compressed === 0 ? "archive is empty" : "archive is not a gzip file (a cara backup is a .tar.gz)"),
        );
      }
    } else if (typeof (err as NodeJS.ErrnoException)?.code === "string" && (err as NodeJS.ErrnoException).code!.startsWith("Z_")) {
      const e = err as NodeJS.ErrnoException;
      problems.push(
        problem(
          "corrupt_archive",
          "",
          e.code === "Z_BUF_ERROR"
            ? "archive is truncated: the gzip stream ends early"
            : `archive is corrupt: the gzip data is damaged (${e.message})`,
        ),
      );
    } else {
      thrown = err;
    }
  } finally {
    staging = false;
    if (!complete) {
      stopped = true;
      gunzip.destroy();
      if (!inputEnded) input.destroy();
    }
    await pump;
    if (stager) {
      try {
        await stager.pool.drain();
        if (thrown === undefined && complete) await stager.syncDirs();
      } catch (err) {
        thrown ??= err;
      }
    }
  }
  if (thrown !== undefined) throw thrown;
  if (inputError !== undefined) throw inputError;

  if (complete && manifest && !problemsTruncated) {
    for (const f of manifest.files) {
      if (!seen.has(f.path)) {
        if (problems.length >= limits.maxProblems) {
          problemsTruncated = true;
          break;
        }
        problems.push(problem("entry_missing", f.path, `file '${displayPath(f.path)}' is listed in the manifest but missing from the archive`));
      }
    }
  }
  if ((complete || headRead) && !manifest && !problems.some((p) => p.kind === "manifest_invalid" || p.kind === "version_unsupported" || p.kind === "too_large")) {
    problems.push(problem("manifest_invalid", "", "archive has no manifest.json"));
  }

  const result: ReadBackupResult = { ok: problems.length === 0 && !problemsTruncated, problems, problemsTruncated, foreign, files: verified };
  if (manifest) result.manifest = manifest;
  if (complete) {
    result.archiveSha256 = archiveHash.digest("hex");
    result.archiveBytes = compressed;
  }
  return result;
}
