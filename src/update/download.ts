/**
 * Resumable, size-checked download of one release artifact to a file.
 *
 * The bytes go to `<dest>.part` (0600, opened with O_NOFOLLOW; a symlink at `dest` or `.part` is
 * refused), hashed with SHA-256 while they are written, then fsync -> rename to `dest` -> fsync
 * of the directory. A `.part` left by an interrupted attempt is continued with
 * `Range: bytes=<n>-` (its bytes are hashed first): 206 appends, 200 (Range ignored) starts
 * over, 416 means "already complete" when the part has the expected size and "start over"
 * otherwise. Memory stays flat: the body is streamed to disk.
 *
 * The transfer uses ./http1-get.ts (the socket read into one reused buffer, each chunk hashed and
 * written before the next read) rather than node:http or fetch: on 2 vCPUs that is what keeps the
 * download level with curl (bench/README.md, "self-update"). Redirects (GitHub sends assets
 * through a CDN) are followed by hand, up to 10, http(s) only.
 *
 * One call is one attempt; the caller retries (DownloadError.retryable) with its own backoff.
 * Messages name the artifact's file name, never the URL (CDN URLs carry signed query strings).
 */
import { createHash, type Hash } from "node:crypto";
import { constants, writeSync } from "node:fs";
import { lstat, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { fsyncDir } from "../state/durable.js";
import { http1Get, HttpTimeoutError, HttpTruncatedError, type Http1Response } from "./http1-get.js";

export interface DownloadOptions {
  url: string;
  /** Final path; the download goes to `<dest>.part` first. */
  dest: string;
  /** The size the release announced; any other size is refused. */
  expectedSize?: number;
  /** Largest accepted artifact; default 512 MiB. */
  maxBytes?: number;
  userAgent: string;
  /** Longest wait for the connection, the response headers, or between two body chunks; default 300 s. */
  timeoutMs?: number;
  onProgress?: (done: number, total: number | undefined) => void;
  signal?: AbortSignal;
}

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

export const DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 300_000;
const MAX_REDIRECTS = 10;
const CHUNK = 1024 * 1024;
/** Reads at least this large are written as they are; smaller ones are gathered up to CHUNK. */
const SMALL_READ = 256 * 1024;

/** The artifact's file name for messages: the URL's last path segment, without query or credentials. */
function artifactName(url: URL, dest: string): string {
  const last = url.pathname.split("/").filter(Boolean).pop();
  if (!last) return basename(dest);
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

function retryAfter(headers: Readonly<Record<string, string>>): number | undefined {
  const value = headers["retry-after"];
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Refuses a symlink (or anything but a regular file) at `path`; returns its size, or undefined if absent. */
async function regularFileSize(path: string, what: string): Promise<number | undefined> {
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

/** One GET, following redirects; resolves on the final response's head. */
async function get(url: URL, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal | undefined, name: string, redirects = 0): Promise<Http1Response> {
  const res = await http1Get(url, { headers, timeoutMs, ...(signal ? { signal } : {}) });
  const status = res.status;
  const location = res.headers.location;
  if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
  res.destroy();
  if (redirects >= MAX_REDIRECTS) throw new DownloadError(`artifact download of ${name} redirected more than ${MAX_REDIRECTS} times`, { retryable: false, status });
  let next: URL;
  try {
    next = new URL(location, url);
  } catch {
    throw new DownloadError(`artifact download of ${name} redirected to an invalid URL`, { retryable: false, status });
  }
  if (next.protocol !== "https:" && next.protocol !== "http:") {
    throw new DownloadError(`artifact download of ${name} redirected to a ${next.protocol} URL`, { retryable: false, status });
  }
  return get(next, headers, timeoutMs, signal, name, redirects + 1);
}

/** Download one artifact (see the module comment). */
export async function downloadFile(opts: DownloadOptions): Promise<DownloadResult> {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new DownloadError("artifact URL is not a valid URL", { retryable: false });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new DownloadError(`artifact URL must be http(s), got ${url.protocol}`, { retryable: false });
  const name = artifactName(url, opts.dest);
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const expected = opts.expectedSize;
  const limit = expected !== undefined ? Math.min(expected, maxBytes) : maxBytes;
  const dest = opts.dest;
  const part = `${dest}.part`;
  const tooBig = (size: number) =>
    expected !== undefined && size !== expected
      ? new DownloadError(`artifact ${name} is ${size} bytes, expected ${expected}`, { retryable: false })
      : new DownloadError(`artifact ${name} is larger than the ${maxBytes} byte limit`, { retryable: false });
  if (expected !== undefined && expected > maxBytes) throw tooBig(expected);

  await regularFileSize(dest, "artifact");
  let partSize = (await regularFileSize(part, "partial download")) ?? 0;

  let handle: FileHandle;
  try {
    handle = await open(part, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new DownloadError(`cannot open ${part}: ${reasonOf(err)}`, { retryable: false, cause: err });
  }
  let keepPart = true;
  let renamed = false;
  let syncError: unknown;
  let background: Promise<void> = Promise.resolve();
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new DownloadError(`refusing to write partial download ${part}: it is not a regular file`, { retryable: false });
    await handle.chmod(0o600);
    partSize = st.size;
    if (partSize > limit) {
      await handle.truncate(0);
      partSize = 0;
    }

    let offset = partSize;
    let hash = offset > 0 ? await hashPrefix(handle, offset) : createHash("sha256");
    let resumedFrom = offset;
    const startOver = async () => {
      await handle.truncate(0);
      offset = 0;
      resumedFrom = 0;
      hash = createHash("sha256");
    };

    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { "User-Agent": opts.userAgent, Accept: "application/octet-stream", "Accept-Encoding": "identity" };
      if (offset > 0) headers.Range = `bytes=${offset}-`;
      let response: Http1Response;
      try {
        response = await get(url, headers, timeoutMs, opts.signal, name);
      } catch (err) {
        if (err instanceof DownloadError) throw err;
        throw transportError(err, name, opts.signal, 0);
      }
      // Whatever happens below, the connection does not outlive this attempt (a no-op once the body was read).
      try {
        const status = response.status;

        if (status === 416 && offset > 0 && attempt === 0) {
          const m = /^bytes \*\/(\d+)$/.exec(String(response.headers["content-range"] ?? ""));
          const total = m ? Number(m[1]) : undefined;
          if ((expected !== undefined && offset === expected) || (expected === undefined && total === offset)) {
            return await finish(handle, hash, offset, resumedFrom);
          }
          await startOver();
          continue;
        }
        if (status === 200 && offset > 0) {
          // The server ignored Range: the body is the whole file.
          await startOver();
        } else if (status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(response.headers["content-range"] ?? ""));
          if (!m || Number(m[1]) !== offset) {
            if (attempt > 0) throw new DownloadError(`artifact download of ${name} returned a range that was not asked for`, { retryable: true, status });
            await startOver();
            continue;
          }
          if (m[3] !== "*" && Number(m[3]) > limit) {
            keepPart = false;
            throw tooBig(Number(m[3]));
          }
          if (m[3] !== "*" && expected !== undefined && Number(m[3]) !== expected) {
            keepPart = false;
            throw tooBig(Number(m[3]));
          }
        } else if (status !== 200) {
          const retryable = status === 429 || status === 408 || (status >= 500 && status <= 599);
          const after = retryAfter(response.headers);
          throw new DownloadError(`artifact download returned HTTP ${status} for ${name}`, { retryable, status, ...(after !== undefined ? { retryAfterMs: after } : {}) });
        }

        const bodyLength = response.contentLength;
        const total = bodyLength !== undefined ? offset + bodyLength : expected;
        if (bodyLength !== undefined && offset + bodyLength > limit) {
          keepPart = false;
          throw tooBig(offset + bodyLength);
        }
        if (bodyLength !== undefined && expected !== undefined && offset + bodyLength !== expected) {
          keepPart = false;
          throw tooBig(offset + bodyLength);
        }

        // Each chunk is hashed and written before the next read, by synchronous positioned writes
        // into the page cache (a write on the thread pool would need a copy and a thread hop, which
        // costs more on 2 vCPUs than it saves). Large reads are written straight from the read
        // buffer; small ones (TLS hands over 16 KiB at a time, chunked bodies can be tiny) are
        // gathered first, so one write carries up to 1 MiB and the event loop is never held long.
        // Gathered bytes are written before any error is reported: the .part always holds exactly
        // the bytes received, a clean prefix for the next attempt. Write-back starts early (one
        // datasync at a time, every 8 MiB) so that the final fsync has little left to flush. Its
        // error is kept: on Linux a write-back error is reported once per descriptor, so the final
        // fsync could not be trusted to see it again.
        const fd = handle.fd;
        const currentHash = hash;
        let position = offset; // received and hashed
        let written = offset; // on disk
        let stage: Buffer | undefined;
        let staged = 0;
        let lastSync = offset;
        let lastProgress = offset;
        let syncing = false;
        const put = (buf: Buffer) => {
          try {
            writeFullySync(fd, buf, written);
          } catch (err) {
            throw new DownloadError(`cannot write ${part}: ${reasonOf(err)}`, { retryable: false, cause: err });
          }
          written += buf.length;
          if (written - lastSync >= 8 * CHUNK && !syncing) {
            lastSync = written;
            syncing = true;
            background = handle
              .datasync()
              .catch((err: unknown) => void (syncError ??= err))
              .finally(() => (syncing = false));
          }
          if (written - lastProgress >= CHUNK) {
            lastProgress = written;
            opts.onProgress?.(written, total);
          }
        };
        const flush = () => {
          if (staged === 0) return;
          const n = staged;
          staged = 0;
          put(stage!.subarray(0, n));
        };
        try {
          await response.readBody((chunk) => {
            if (position + chunk.length > limit) {
              keepPart = false;
              throw tooBig(position + chunk.length);
            }
            currentHash.update(chunk);
            position += chunk.length;
            if (chunk.length >= SMALL_READ) {
              flush();
              put(chunk);
              return;
            }
            if (staged + chunk.length > CHUNK) flush();
            stage ??= Buffer.allocUnsafe(CHUNK);
            chunk.copy(stage, staged);
            staged += chunk.length;
          });
          flush();
        } catch (err) {
          if (err instanceof DownloadError) throw err;
          flush();
          if (err instanceof HttpTruncatedError) {
            throw new DownloadError(`artifact download of ${name} was cut off after ${position}${total !== undefined ? ` of ${total}` : ""} bytes`, { retryable: true, status, cause: err });
          }
          throw transportError(err, name, opts.signal, position);
        }
        if (written > lastProgress) opts.onProgress?.(written, total);
        const size = position;
        if (size === 0) {
          keepPart = false;
          throw new DownloadError("downloaded artifact is empty", { retryable: false, status });
        }
        if (expected !== undefined && size !== expected) {
          if (size < expected) throw new DownloadError(`artifact download of ${name} was cut off after ${size} of ${expected} bytes`, { retryable: true, status });
          keepPart = false;
          throw tooBig(size);
        }
        return await finish(handle, hash, size, resumedFrom);
      } finally {
        response.destroy();
      }
    }
  } finally {
    // An empty part is worth nothing to the next attempt.
    await background;
    if (keepPart && !renamed) keepPart = ((await handle.stat().catch(() => undefined))?.size ?? 0) > 0;
    await handle.close().catch(() => undefined);
    if (!keepPart && !renamed) await unlink(part).catch(() => undefined);
  }

  async function finish(h: FileHandle, hash: Hash, size: number, resumedFrom: number): Promise<DownloadResult> {
    if (size === 0) {
      keepPart = false;
      throw new DownloadError("downloaded artifact is empty", { retryable: false });
    }
    try {
      await background;
      await h.truncate(size);
      await h.sync();
      if (syncError !== undefined) throw syncError;
      // The dest was checked at the start; check again right before the rename.
      await regularFileSize(dest, "artifact");
      await rename(part, dest);
      renamed = true;
      await fsyncDir(dirname(dest));
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      throw new DownloadError(`cannot store ${dest}: ${reasonOf(err)}`, { retryable: false, cause: err });
    }
    return { path: dest, bytes: size, sha256: hash.digest("hex"), resumedFrom };
  }
}

function transportError(err: unknown, name: string, signal: AbortSignal | undefined, bytes: number): DownloadError {
  if (signal?.aborted) return new DownloadError(`artifact download of ${name} was cancelled`, { retryable: true, cause: err });
  if (err instanceof HttpTimeoutError) {
    return new DownloadError(`artifact download of ${name} timed out (${err.message}${bytes > 0 ? ` after ${bytes} bytes` : ""})`, { retryable: true, cause: err });
  }
  const what = bytes > 0 ? `was interrupted after ${bytes} bytes` : "failed";
  // Transport errors from node:http carry no URL; the host and port are fine to show.
  return new DownloadError(`artifact download of ${name} ${what}: ${reasonOf(err)}`, { retryable: true, cause: err });
}
