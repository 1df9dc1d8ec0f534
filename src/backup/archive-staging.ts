/**
 * Restore staging: the files of the selected sections, written as they stream out of an archive
 * into a staging directory (which a restore then swaps into place, see swap.ts). Never follows a
 * symlink, never writes outside the staging root, and reports filesystem failures as
 * StagingError (not as archive problems).
 */
import type { Hash } from "node:crypto";
import { closeSync, constants, fchmodSync, fsync as fsyncCallback, openSync, writeSync } from "node:fs";
import { lstat, mkdir, open, unlink, type FileHandle } from "node:fs/promises";
import { join, sep } from "node:path";
import { KiB, MiB } from "./archive-limits.js";

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

/** Staged files up to this size are written with synchronous calls (and fsync'ed in the thread pool). */
export const SYNC_WRITE_MAX = 256 * KiB;
const MAX_STAGING_JOBS = 16;
const MAX_STAGING_BYTES = 16 * MiB;

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

export function stagingError(err: unknown, what: string): StagingError {
  if (err instanceof StagingError) return err;
  const e = err as NodeJS.ErrnoException;
  const detail =
    e.code === "ENOSPC" ? "the staging filesystem is full" : e.code === "EEXIST" ? "it already exists (the staging directory must be empty)" : e.message;
  return new StagingError(`cannot stage ${what}: ${detail}`, e.code);
}

async function writeAll(handle: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await handle.write(buf, off, buf.length - off)).bytesWritten;
}

/** Writes staged files under one root, never following symlinks and never leaving it. */
export class Stager {
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
      await writeAll(handle, content);
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

  /** A whole small file: written at once (synchronously up to SYNC_WRITE_MAX, else through the pool). Returns where. */
  async stageWhole(path: string, content: Buffer, mode: number): Promise<string> {
    const target = await this.prepare(path);
    if (content.length <= SYNC_WRITE_MAX) {
      await this.writeWholeSync(target, content, mode, path);
    } else {
      this.pool.check();
      await this.pool.add(content.length, () => this.writeWhole(target, content, mode, path));
    }
    return target;
  }

  /**
   * A large file as it streams: each chunk goes into `hash` and the file. Kept (chmod, fsync)
   * when the digest is `sha256`, else removed. Returns the digest and, when kept, where.
   */
  async stageStream(path: string, chunks: AsyncIterable<Buffer>, hash: Hash, sha256: string, mode: number): Promise<{ digest: string; stagedPath?: string }> {
    const target = await this.prepare(path);
    const handle = await this.create(target, path);
    let ok = false;
    try {
      for await (const chunk of chunks) {
        hash.update(chunk);
        try {
          await writeAll(handle, chunk);
        } catch (err) {
          throw stagingError(err, path);
        }
      }
      ok = true;
    } finally {
      if (!ok) await handle.close().catch(() => undefined);
    }
    const digest = hash.digest("hex");
    if (digest !== sha256) {
      await handle.close();
      await unlink(target).catch(() => undefined);
      return { digest };
    }
    await this.finish(handle, mode, path);
    return { digest, stagedPath: target };
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
