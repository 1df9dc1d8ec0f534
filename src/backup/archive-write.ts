/**
 * Writing a backup archive: a `.tar.gz` of state-dir files.
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
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip, type ZlibOptions } from "node:zlib";
import { COMPRESSION_LEVEL, DEFAULT_LIMITS, KiB, MANIFEST_MODE, MARKER_MODE, MiB, formatLimit, markerContent, type ArchiveLimits } from "./archive-limits.js";
import { MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, signManifest, summarizeSections, type Manifest, type ManifestFile } from "./manifest.js";
import { MANIFEST_NAME, MARKER_NAME, displayPath, sectionOf, unsafePathRule, type SectionName, type StateFile } from "./sections.js";
import { END_OF_ARCHIVE, ZERO_BLOCK, encodeFileHeader, paddingOf } from "./tar.js";

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
  checkFiles(options, limits);
  const slicer = new Slicer();
  const hashes = await hashFiles(options, slicer);
  const createdAt = (options.now ?? new Date()).toISOString();
  const manifest = buildManifest(options, hashes, createdAt);
  const manifestJson = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`);
  if (manifestJson.length > limits.maxManifestBytes) {
    throw new BackupTooLargeError(
      `cannot back up: the manifest of ${options.files.length} files is ${manifestJson.length} bytes, over the ${formatLimit(limits.maxManifestBytes)} limit`,
    );
  }
  const written = await writeTarGz(options, { createdAt, manifestJson, hashes }, slicer);
  return { manifest, ...written };
}

/** Refuses, before anything is written, files over the limits, outside their section or listed twice. */
function checkFiles(options: WriteBackupOptions, limits: ArchiveLimits): void {
  let total = 0;
  for (const f of options.files) {
    if (f.size > limits.maxFileBytes) {
      throw new BackupTooLargeError(
        `cannot back up ${f.relPath}: it is ${f.size} bytes, over the ${formatLimit(limits.maxFileBytes)} per-file limit of a backup`,
      );
    }
    const rule = unsafePathRule(f.archivePath);
    if (rule || sectionOf(f.archivePath) !== f.section || f.absPath !== join(options.stateDir, ...f.relPath.split("/"))) {
      throw new Error(
        `cannot back up ${displayPath(f.relPath)}: not a file of section '${f.section}' in ${options.stateDir} (archive path '${displayPath(f.archivePath)}')`,
      );
    }
    total += f.size;
  }
  if (total > limits.maxTotalBytes) {
    throw new BackupTooLargeError(`cannot back up: the state is ${total} bytes, over the ${formatLimit(limits.maxTotalBytes)} limit of a backup`);
  }
  const seen = new Set<string>();
  for (const f of options.files) {
    if (seen.has(f.archivePath)) throw new Error(`cannot back up: ${f.archivePath} is listed twice`);
    seen.add(f.archivePath);
  }
}

/**
 * Pass 1: the SHA-256 of every file, in order (memory: one read buffer per worker; several
 * workers only matter for readFile streams, the default synchronous reads go one file after the
 * other).
 */
async function hashFiles(options: WriteBackupOptions, slicer: Slicer): Promise<string[]> {
  const files = options.files;
  const hashes: string[] = new Array<string>(files.length);
  let next = 0;
  const worker = async () => {
    const scratch = Buffer.allocUnsafe(READ_CHUNK);
    while (next < files.length) {
      const i = next++;
      hashes[i] = await hashFile(files[i]!, scratch, slicer, options.readFrom, options.readFile);
      await slicer.pause();
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, files.length) }, worker));
  return hashes;
}

/** The signed manifest of the files and their pass-1 hashes. */
function buildManifest(options: WriteBackupOptions, hashes: readonly string[], createdAt: string): Manifest {
  const manifestFiles: ManifestFile[] = options.files.map((f, i) => ({ path: f.archivePath, size: f.size, mode: f.mode, sha256: hashes[i]! }));
  return signManifest(
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
}

interface ArchiveHead {
  createdAt: string;
  manifestJson: Buffer;
  /** Pass-1 SHA-256 of each file, in order. */
  hashes: readonly string[];
}

/** Pass 2: the tar stream, through gzip, to the output; the archive's SHA-256 and sizes. */
async function writeTarGz(options: WriteBackupOptions, head: ArchiveHead, slicer: Slicer): Promise<Omit<WriteBackupResult, "manifest">> {
  const archiveHash = createHash("sha256");
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      archiveHash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  // A deep output buffer (1 MiB) keeps zlib busy while the output is written (with the 16 KiB
  // default it waited for every output chunk, and the backup ran at ~0.7× of `tar -czf`;
  // bench/benchmarks/backup.ts).
  const gzip = createGzip({ level: COMPRESSION_LEVEL, chunkSize: 64 * KiB, readableHighWaterMark: 1 * MiB } as ZlibOptions);
  const done = pipeline(gzip, tap, options.output);
  const out = new BatchWriter(gzip, done, slicer);
  try {
    await writeEntries(out, options, head);
    await out.end();
  } catch (err) {
    gzip.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  return { sha256: archiveHash.digest("hex"), bytes, uncompressedBytes: out.written };
}

/** The marker, the manifest, every file (checked against its pass-1 hash), the end-of-archive blocks. */
async function writeEntries(out: BatchWriter, options: WriteBackupOptions, head: ArchiveHead): Promise<void> {
  const createdDate = new Date(head.createdAt);
  const small = (name: string, content: Buffer, mode: number): Buffer => {
    const header = encodeFileHeader(name, content.length, mode, createdDate);
    return Buffer.concat([header, content, ZERO_BLOCK.subarray(0, paddingOf(content.length))]);
  };
  await out.append(small(MARKER_NAME, Buffer.from(markerContent(head.createdAt)), MARKER_MODE));
  await out.append(small(MANIFEST_NAME, head.manifestJson, MANIFEST_MODE));
  for (let i = 0; i < options.files.length; i++) {
    const file = options.files[i]!;
    await out.append(encodeFileHeader(file.archivePath, file.size, file.mode, new Date(Math.floor(file.mtimeMs))));
    const digest = await appendContent(out, file, options);
    if (digest !== head.hashes[i]) throw new StateChangedError(file.relPath, "changed between the hashing and the writing pass");
    const pad = paddingOf(file.size);
    if (pad > 0) await out.append(ZERO_BLOCK.subarray(0, pad));
  }
  await out.append(END_OF_ARCHIVE);
}

/** Appends a file's content (from readFile, else read straight into the batches); returns its SHA-256. */
async function appendContent(out: BatchWriter, file: StateFile, options: WriteBackupOptions): Promise<string> {
  if (!options.readFile) return out.appendFile(file, options.readFrom);
  const hash = createHash("sha256");
  for await (const chunk of fileChunks(file, options.readFile)) {
    hash.update(chunk);
    await out.append(chunk);
  }
  return hash.digest("hex");
}
