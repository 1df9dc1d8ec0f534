/**
 * A size-rotating log file: `<dir>/cara.log`, rotated to `cara.log.1` ... `cara.log.<N-1>` when
 * the next write would pass the size limit (default 10 MiB × 5 files). It never stops logging:
 * when full it rotates, and when the directory is not writable it reports the error, drops the
 * lines meant for the file (other outputs keep going) and retries a few seconds later.
 *
 * Writes are buffered and flushed synchronously on the next turn of the event loop (or at 64 KiB),
 * so ordering is exact and `flush()` / `close()` leave everything on disk.
 *
 * Hand-written on purpose (see the report in the PR): pino-roll names files `cara.1.log`,
 * `cara.2.log` with ever-growing numbers (the live file is never `cara.log`), drags in date-fns,
 * and has no recovery from an unwritable directory.
 */
import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export const DEFAULT_LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_FILE_COUNT = 5;

export interface RotatingFileOptions {
  /** The live file, e.g. `<state>/logs/cara.log`; its directory is created (0700) if missing. */
  path: string;
  /** Size limit of one file in bytes (default 10 MiB). */
  maxBytes?: number;
  /** Files kept including the live one (default 5: cara.log and cara.log.1 ... cara.log.4). */
  maxFiles?: number;
  /** Mode of created files (default 0600); an existing file with a looser mode is tightened. */
  mode?: number;
  /** Buffered bytes that trigger an immediate flush (default 64 KiB). */
  flushBytes?: number;
  /** After an I/O error, lines are dropped for this long before the file is tried again (default 5 s). */
  retryMs?: number;
  /** Called when the file becomes unwritable (with the error) and when it recovers (with null). */
  onStateChange?: (error: Error | null, droppedLines: number) => void;
  /** Clock, for tests. */
  now?: () => number;
}

export interface RotatingFileStatus {
  path: string;
  /** Size of the live file in bytes (what was written to it, including pending bytes). */
  size: number;
  maxBytes: number;
  maxFiles: number;
  /** False while the file cannot be written. */
  writable: boolean;
  /** The last I/O error, while not writable. */
  error: string | null;
  /** Lines that never reached the file because of I/O errors, since start. */
  droppedLines: number;
  rotations: number;
}

/** Milliseconds between checks that the live file is still the one at `path` (moved or deleted outside). */
const IDENTITY_CHECK_MS = 5_000;

export class RotatingLogFile {
  readonly path: string;
  readonly maxBytes: number;
  readonly maxFiles: number;
  private readonly mode: number;
  private readonly flushBytes: number;
  private readonly retryMs: number;
  private readonly onStateChange: RotatingFileOptions["onStateChange"];
  private readonly now: () => number;
  private fd = -1;
  private ino = -1;
  private written = 0;
  private pending: string[] = [];
  private pendingChars = 0;
  private scheduled: NodeJS.Immediate | null = null;
  private error: Error | null = null;
  private retryAt = 0;
  private dropped = 0;
  private droppedSinceError = 0;
  private rotations = 0;
  private lastIdentityCheck = 0;
  private closed = false;

  constructor(options: RotatingFileOptions) {
    this.path = options.path;
    this.maxBytes = Math.max(1024, Math.floor(options.maxBytes ?? DEFAULT_LOG_FILE_MAX_BYTES));
    this.maxFiles = Math.max(1, Math.floor(options.maxFiles ?? DEFAULT_LOG_FILE_COUNT));
    this.mode = options.mode ?? 0o600;
    this.flushBytes = options.flushBytes ?? 64 * 1024;
    this.retryMs = options.retryMs ?? 5_000;
    this.onStateChange = options.onStateChange;
    this.now = options.now ?? Date.now;
    try {
      this.open();
      this.removeExtraFiles();
    } catch (err) {
      this.fail(err as Error, 0);
    }
  }

  /** Name of rotated file `n` (1 = newest): `cara.log.1`. */
  rotatedPath(n: number): string {
    return `${this.path}.${n}`;
  }

  /** Queues one line (it should end with "\n"); flushed on the next event-loop turn. */
  write(line: string): void {
    if (this.closed) return;
    if (this.error && this.now() < this.retryAt) {
      this.dropped++;
      this.droppedSinceError++;
      return;
    }
    this.pending.push(line);
    this.pendingChars += line.length;
    if (this.pendingChars >= this.flushBytes) this.flush();
    else if (this.scheduled === null) this.scheduled = setImmediate(() => this.flush());
  }

  /** Writes everything queued, synchronously. */
  flush(): void {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingChars = 0;
    try {
      if (this.error || this.fd < 0) this.recover();
      else this.checkIdentity();
      this.writeChunk(Buffer.from(lines.join(""), "utf8"));
    } catch (err) {
      this.fail(err as Error, lines.length);
    }
  }

  /** Flushes and closes the file; later writes are ignored. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.closeFd();
  }

  status(): RotatingFileStatus {
    return {
      path: this.path,
      size: this.written + this.pendingChars,
      maxBytes: this.maxBytes,
      maxFiles: this.maxFiles,
      writable: this.error === null,
      error: this.error ? this.error.message : null,
      droppedLines: this.dropped,
      rotations: this.rotations,
    };
  }

  /** Size of the live file in bytes, including what is still buffered (approximately, as characters). */
  get size(): number {
    return this.written + this.pendingChars;
  }

  private open(): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, this.mode);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error(`${this.path} is not a regular file`);
      if ((st.mode & 0o777) !== this.mode) fchmodSync(fd, this.mode);
      this.fd = fd;
      this.ino = st.ino;
      this.written = st.size;
      this.lastIdentityCheck = this.now();
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  private closeFd(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // already gone
      }
      this.fd = -1;
    }
  }

  /** Deletes rotated files beyond maxFiles (left over from a larger setting). */
  private removeExtraFiles(): void {
    const prefix = `${basename(this.path)}.`;
    for (const name of readdirSync(dirname(this.path))) {
      if (!name.startsWith(prefix)) continue;
      const n = Number(name.slice(prefix.length));
      if (Number.isInteger(n) && n >= this.maxFiles) unlinkSync(join(dirname(this.path), name));
    }
  }

  /** Reopens when the file at `path` was moved or deleted by someone else. */
  private checkIdentity(): void {
    const now = this.now();
    if (now - this.lastIdentityCheck < IDENTITY_CHECK_MS) return;
    this.lastIdentityCheck = now;
    let ino = -1;
    try {
      ino = statSync(this.path).ino;
    } catch {
      // missing: reopen creates it
    }
    if (ino !== this.ino) {
      this.closeFd();
      this.open();
    }
  }

  private recover(): void {
    this.closeFd();
    this.open();
    if (this.error) {
      const dropped = this.droppedSinceError;
      this.error = null;
      this.droppedSinceError = 0;
      this.onStateChange?.(null, dropped);
    }
  }

  private fail(err: Error, lostLines: number): void {
    this.closeFd();
    this.dropped += lostLines;
    this.droppedSinceError += lostLines;
    this.retryAt = this.now() + this.retryMs;
    const first = this.error === null;
    this.error = err;
    if (first) this.onStateChange?.(err, this.droppedSinceError);
  }

  /** Writes whole lines, rotating before a line that would pass maxBytes. */
  private writeChunk(buf: Buffer): void {
    let offset = 0;
    while (offset < buf.length) {
      const room = this.maxBytes - this.written;
      const rest = buf.length - offset;
      let end: number;
      if (rest <= room) end = buf.length;
      else {
        // The longest run of whole lines that fits; a single line longer than a whole file is
        // written alone into a fresh file.
        const cut = room > 0 ? buf.lastIndexOf(10, offset + room - 1) : -1;
        if (cut >= offset) end = cut + 1;
        else if (this.written > 0) {
          this.rotate();
          continue;
        } else {
          const nl = buf.indexOf(10, offset);
          end = nl < 0 ? buf.length : nl + 1;
        }
      }
      this.writeAll(buf.subarray(offset, end));
      offset = end;
      if (this.written >= this.maxBytes && offset < buf.length) this.rotate();
    }
    if (this.written >= this.maxBytes) this.rotate();
  }

  private writeAll(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    this.written += buf.length;
  }

  /** cara.log.(N-2) → cara.log.(N-1), ..., cara.log → cara.log.1, then a fresh cara.log. */
  private rotate(): void {
    this.closeFd();
    if (this.maxFiles === 1) unlinkIfExists(this.path);
    for (let n = this.maxFiles - 1; n >= 1; n--) {
      const from = n === 1 ? this.path : this.rotatedPath(n - 1);
      try {
        renameSync(from, this.rotatedPath(n));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    this.rotations++;
    this.open();
  }
}

function unlinkIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
