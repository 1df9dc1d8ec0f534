/**
 * The file side of an artifact download: `<dest>.part` (0600, opened with O_NOFOLLOW; a symlink
 * is refused) with the running SHA-256 of its bytes, resumed from an earlier attempt, written
 * chunk by chunk (ChunkWriter), then fsync -> rename to `dest` -> fsync of the directory.
 */
import { createHash, type Hash } from "node:crypto";
import { constants, writeSync } from "node:fs";
import { lstat, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { fsyncDir } from "../state/durable.js";

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes reused from a partial file left by an earlier attempt. */
  resumedFrom: number;
}

export class DownloadError extends Error {
  readonly retryable: boolean;
  readonly status?: number;
  /** From a Retry-After header (429/503), when the server sent one. */
  readonly retryAfterMs?: number;

  constructor(message: string, options: { retryable: boolean; status?: number; retryAfterMs?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DownloadError";
    this.retryable = options.retryable;
    if (options.status !== undefined) this.status = options.status;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

const CHUNK = 1024 * 1024;
/** Reads at least this large are written as they are; smaller ones are gathered up to CHUNK. */
const SMALL_READ = 256 * 1024;

export function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

/** Refuses a symlink (or anything but a regular file) at `path`; returns its size, or undefined if absent. */
export async function regularFileSize(path: string, what: string): Promise<number | undefined> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new DownloadError(`cannot inspect ${what} ${path}: ${reasonOf(err)}`, { retryable: false, cause: err });
  }
  if (st.isSymbolicLink()) throw new DownloadError(`refusing to write ${what} ${path}: it is a symbolic link`, { retryable: false });
  if (!st.isFile()) throw new DownloadError(`refusing to write ${what} ${path}: it is not a regular file`, { retryable: false });
  return st.size;
}

/** Writes all of `buf` at `position`, finishing any short write. */
function writeFullySync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Hashes the first `length` bytes of an open file. */
async function hashPrefix(handle: FileHandle, length: number): Promise<Hash> {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(length, 1)));
  let pos = 0;
  while (pos < length) {
    const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash;
}

/**
 * `<dest>.part`: the bytes received so far (by this attempt and earlier ones) and their running
 * SHA-256. Write-back starts early (one datasync at a time, every 8 MiB, see ChunkWriter) so that
 * the final fsync has little left to flush; its error is kept, because on Linux a write-back error
 * is reported once per descriptor, so the final fsync could not be trusted to see it again.
 */
export class PartFile {
  hash: Hash = createHash("sha256");
  /** Bytes in the file (and in `hash`). */
  offset = 0;
  /** Bytes reused from an earlier attempt. */
  resumedFrom = 0;
  /** Keep the file for the next attempt when this one fails (false once its content is known bad). */
  keep = true;
  private renamed = false;
  private syncing = false;
  private syncError: unknown;
  private background: Promise<void> = Promise.resolve();

  private constructor(
    readonly handle: FileHandle,
    readonly path: string,
  ) {}

  static async open(path: string): Promise<PartFile> {
    try {
      return new PartFile(await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600), path);
    } catch (err) {
      throw new DownloadError(`cannot open ${path}: ${reasonOf(err)}`, { retryable: false, cause: err });
    }
  }

  /** Continues from what an earlier attempt left (its bytes are hashed first); one over `limit` starts over. */
  async resume(limit: number): Promise<void> {
    const st = await this.handle.stat();
    if (!st.isFile()) throw new DownloadError(`refusing to write partial download ${this.path}: it is not a regular file`, { retryable: false });
    await this.handle.chmod(0o600);
    let size = st.size;
    if (size > limit) {
      await this.handle.truncate(0);
      size = 0;
    }
    this.offset = size;
    this.resumedFrom = size;
    if (size > 0) this.hash = await hashPrefix(this.handle, size);
  }

  async startOver(): Promise<void> {
    await this.handle.truncate(0);
    this.offset = 0;
    this.resumedFrom = 0;
    this.hash = createHash("sha256");
  }

  /** Writes `buf` at `position` with a synchronous positioned write (into the page cache). */
  write(buf: Buffer, position: number): void {
    try {
      writeFullySync(this.handle.fd, buf, position);
    } catch (err) {
      throw new DownloadError(`cannot write ${this.path}: ${reasonOf(err)}`, { retryable: false, cause: err });
    }
  }

  /** Starts a datasync unless one is running; false when one was. */
  syncInBackground(): boolean {
    if (this.syncing) return false;
    this.syncing = true;
    this.background = this.handle
      .datasync()
      .catch((err: unknown) => void (this.syncError ??= err))
      .finally(() => (this.syncing = false));
    return true;
  }

  /** The download is complete at `size` bytes: fsync, then rename to `dest` and fsync its directory. */
  async finish(dest: string, size: number): Promise<DownloadResult> {
    if (size === 0) {
      this.keep = false;
      throw new DownloadError("downloaded artifact is empty", { retryable: false });
    }
    try {
      await this.background;
      await this.handle.truncate(size);
      await this.handle.sync();
      if (this.syncError !== undefined) throw this.syncError;
      // The dest was checked at the start; check again right before the rename.
      await regularFileSize(dest, "artifact");
      await rename(this.path, dest);
      this.renamed = true;
      await fsyncDir(dirname(dest));
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      throw new DownloadError(`cannot store ${dest}: ${reasonOf(err)}`, { retryable: false, cause: err });
    }
    return { path: dest, bytes: size, sha256: this.hash.digest("hex"), resumedFrom: this.resumedFrom };
  }

  /** Closes the file; removes it unless it was renamed or holds bytes worth resuming from. */
  async close(): Promise<void> {
    await this.background;
    // An empty part is worth nothing to the next attempt.
    if (this.keep && !this.renamed) this.keep = ((await this.handle.stat().catch(() => undefined))?.size ?? 0) > 0;
    await this.handle.close().catch(() => undefined);
    if (!this.keep && !this.renamed) await unlink(this.path).catch(() => undefined);
  }
}

/**
 * One response's body into the part file. Each chunk is hashed and written before the next is
 * taken, by synchronous positioned writes into the page cache (a write on the thread pool would
 * need a copy and a thread hop, which costs more on 2 vCPUs than it saves). Large chunks are
 * written as they are; small ones (TLS hands over 16 KiB at a time, chunked bodies can be tiny)
 * are gathered first, so one write carries up to 1 MiB. Gathered bytes are written before any
 * error is reported: the .part always holds exactly the bytes received, a clean prefix for the
 * next attempt.
 */
export class ChunkWriter {
  /** Received and hashed. */
  received: number;
  /** On disk. */
  private written: number;
  private stage: Buffer | undefined;
  private staged = 0;
  private lastSync: number;
  private lastProgress: number;

  constructor(
    private readonly part: PartFile,
    private readonly total: number | undefined,
    private readonly onProgress: ((done: number, total: number | undefined) => void) | undefined,
  ) {
    this.received = this.written = this.lastSync = this.lastProgress = part.offset;
  }

  take(chunk: Buffer): void {
    this.part.hash.update(chunk);
    this.received += chunk.length;
    if (chunk.length >= SMALL_READ) {
      this.flush();
      this.put(chunk);
      return;
    }
    if (this.staged + chunk.length > CHUNK) this.flush();
    this.stage ??= Buffer.allocUnsafe(CHUNK);
    chunk.copy(this.stage, this.staged);
    this.staged += chunk.length;
  }

  flush(): void {
    if (this.staged === 0) return;
    const n = this.staged;
    this.staged = 0;
    this.put(this.stage!.subarray(0, n));
  }

  /** The last progress report, unless the last write made it. */
  done(): void {
    if (this.written > this.lastProgress) this.onProgress?.(this.written, this.total);
  }

  private put(buf: Buffer): void {
    this.part.write(buf, this.written);
    this.written += buf.length;
    if (this.written - this.lastSync >= 8 * CHUNK && this.part.syncInBackground()) this.lastSync = this.written;
    if (this.written - this.lastProgress >= CHUNK) {
      this.lastProgress = this.written;
      this.onProgress?.(this.written, this.total);
    }
  }
}
