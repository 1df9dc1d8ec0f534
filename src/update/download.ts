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
 * The transfer goes through the updater's HTTP client (./http-client.ts: undici, with the proxy
 * variables honoured); each chunk is hashed and written before the next is taken. Redirects
 * (GitHub sends assets through a CDN) are followed here, by hand, up to 10, http(s) only.
 *
 * One call is one attempt; the caller retries (DownloadError.retryable) with its own backoff.
 * Messages name the artifact's file name, never the URL (CDN URLs carry signed query strings).
 */
import { basename } from "node:path";
import { ChunkWriter, DownloadError, PartFile, reasonOf, regularFileSize, type DownloadResult } from "./download-part.js";
import { discardBody, httpGet, isCutOff, isTimeout, unreachable, type GetResponse } from "./http-client.js";

export interface DownloadOptions {
  url: string;
  /** Final path; the download goes to `<dest>.part` first. */
  dest: string;
  /** The size the release announced; any other size is refused. */
  expectedSize?: number;
  /** Largest accepted artifact; default 512 MiB. */
  maxBytes?: number;
  userAgent: string;
  /** Longest wait for the response headers, or between two body chunks; default 300 s (connecting: 10 s). */
  timeoutMs?: number;
  onProgress?: (done: number, total: number | undefined) => void;
  signal?: AbortSignal;
}

export { DownloadError, type DownloadResult };

export const DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 300_000;
const MAX_REDIRECTS = 10;

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

function retryAfter(headers: Readonly<Record<string, string>>): number | undefined {
  const value = headers["retry-after"];
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** One GET, following redirects; resolves on the final response's head. */
async function get(url: URL, headers: Record<string, string>, plan: Plan, signal: AbortSignal | undefined, redirects = 0): Promise<GetResponse> {
  const res = await httpGet(url, { headers, timeoutMs: plan.timeoutMs, ...(signal ? { signal } : {}) });
  const status = res.status;
  const location = res.headers.location;
  if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
  discardBody(res);
  const name = plan.name;
  if (redirects >= MAX_REDIRECTS)
    throw new DownloadError(`artifact download of ${name} redirected more than ${MAX_REDIRECTS} times`, { retryable: false, status });
  let next: URL;
  try {
    next = new URL(location, url);
  } catch {
    throw new DownloadError(`artifact download of ${name} redirected to an invalid URL`, { retryable: false, status });
  }
  if (next.protocol !== "https:" && next.protocol !== "http:") {
    throw new DownloadError(`artifact download of ${name} redirected to a ${next.protocol} URL`, { retryable: false, status });
  }
  return get(next, headers, plan, signal, redirects + 1);
}

/** What one download is: where from, where to, and the size rules. */
interface Plan {
  url: URL;
  /** The artifact's file name, for messages. */
  name: string;
  dest: string;
  part: string;
  maxBytes: number;
  timeoutMs: number;
  expected: number | undefined;
  /** Largest size accepted: the expected size, capped by maxBytes. */
  limit: number;
}

function planDownload(opts: DownloadOptions): Plan {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new DownloadError("artifact URL is not a valid URL", { retryable: false });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new DownloadError(`artifact URL must be http(s), got ${url.protocol}`, { retryable: false });
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
  const expected = opts.expectedSize;
  const plan: Plan = {
    url,
    name: artifactName(url, opts.dest),
    dest: opts.dest,
    part: `${opts.dest}.part`,
    maxBytes,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    expected,
    limit: expected !== undefined ? Math.min(expected, maxBytes) : maxBytes,
  };
  if (expected !== undefined && expected > maxBytes) throw sizeError(plan, expected);
  return plan;
}

/** An artifact of the wrong size: not the expected one, or over the limit. Final. */
function sizeError(plan: Plan, size: number): DownloadError {
  return plan.expected !== undefined && size !== plan.expected
    ? new DownloadError(`artifact ${plan.name} is ${size} bytes, expected ${plan.expected}`, { retryable: false })
    : new DownloadError(`artifact ${plan.name} is larger than the ${plan.maxBytes} byte limit`, { retryable: false });
}

/** Download one artifact (see the module comment). */
export async function downloadFile(opts: DownloadOptions): Promise<DownloadResult> {
  const plan = planDownload(opts);
  await regularFileSize(plan.dest, "artifact");
  await regularFileSize(plan.part, "partial download");
  const part = await PartFile.open(plan.part);
  try {
    await part.resume(plan.limit);
    return await transfer(plan, part, opts);
  } finally {
    await part.close();
  }
}

/** Requests until the body can be taken (a range the server ignored, or a 416, may need a second request). */
async function transfer(plan: Plan, part: PartFile, opts: DownloadOptions): Promise<DownloadResult> {
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { "User-Agent": opts.userAgent, Accept: "application/octet-stream", "Accept-Encoding": "identity" };
    if (part.offset > 0) headers.Range = `bytes=${part.offset}-`;
    let response: GetResponse;
    try {
      response = await get(plan.url, headers, plan, opts.signal);
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      throw transportError(err, plan, opts.signal, 0);
    }
    // Whatever happens below, the connection does not outlive this attempt (a no-op once the body was read).
    try {
      const next = await acceptResponse(plan, part, response, attempt);
      if (next === "complete") return await part.finish(plan.dest, part.offset);
      if (next === "again") continue;
      const size = await receiveBody(plan, part, response, opts);
      if (size === 0) {
        part.keep = false;
        throw new DownloadError("downloaded artifact is empty", { retryable: false, status: response.status });
      }
      if (plan.expected !== undefined && size !== plan.expected) {
        if (size < plan.expected)
          throw new DownloadError(`artifact download of ${plan.name} was cut off after ${size} of ${plan.expected} bytes`, {
            retryable: true,
            status: response.status,
          });
        part.keep = false;
        throw sizeError(plan, size);
      }
      return await part.finish(plan.dest, size);
    } finally {
      discardBody(response);
    }
  }
}

/**
 * The status and range rules: "body" to read the body (after starting over when the server sent
 * the whole file), "again" for a new request from scratch, "complete" when a 416 says the part
 * already holds the whole file. Throws for any other status and for a size that cannot be right.
 */
async function acceptResponse(plan: Plan, part: PartFile, response: GetResponse, attempt: number): Promise<"body" | "again" | "complete"> {
  const status = response.status;
  const offset = part.offset;
  if (status === 416 && offset > 0 && attempt === 0) {
    const m = /^bytes \*\/(\d+)$/.exec(String(response.headers["content-range"] ?? ""));
    const total = m ? Number(m[1]) : undefined;
    if ((plan.expected !== undefined && offset === plan.expected) || (plan.expected === undefined && total === offset)) return "complete";
    await part.startOver();
    return "again";
  }
  if (status === 200 && offset > 0) {
    // The server ignored Range: the body is the whole file.
    await part.startOver();
  } else if (status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(response.headers["content-range"] ?? ""));
    if (!m || Number(m[1]) !== offset) {
      if (attempt > 0) throw new DownloadError(`artifact download of ${plan.name} returned a range that was not asked for`, { retryable: true, status });
      await part.startOver();
      return "again";
    }
    if (m[3] !== "*" && (Number(m[3]) > plan.limit || (plan.expected !== undefined && Number(m[3]) !== plan.expected))) {
      part.keep = false;
      throw sizeError(plan, Number(m[3]));
    }
  } else if (status !== 200) {
    const retryable = status === 429 || status === 408 || (status >= 500 && status <= 599);
    const after = retryAfter(response.headers);
    throw new DownloadError(`artifact download returned HTTP ${status} for ${plan.name}`, {
      retryable,
      status,
      ...(after !== undefined ? { retryAfterMs: after } : {}),
    });
  }
  const bodyLength = response.contentLength;
  if (bodyLength !== undefined && (part.offset + bodyLength > plan.limit || (plan.expected !== undefined && part.offset + bodyLength !== plan.expected))) {
    part.keep = false;
    throw sizeError(plan, part.offset + bodyLength);
  }
  return "body";
}

/** Reads the body into the part file; returns the part's size after it. */
async function receiveBody(plan: Plan, part: PartFile, response: GetResponse, opts: DownloadOptions): Promise<number> {
  const bodyLength = response.contentLength;
  const total = bodyLength !== undefined ? part.offset + bodyLength : plan.expected;
  const writer = new ChunkWriter(part, total, opts.onProgress);
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (writer.received + chunk.length > plan.limit) {
        part.keep = false;
        throw sizeError(plan, writer.received + chunk.length);
      }
      writer.take(chunk);
    }
    writer.flush();
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    writer.flush();
    if (isCutOff(err) && !opts.signal?.aborted) {
      const of = total !== undefined ? ` of ${total}` : "";
      throw new DownloadError(`artifact download of ${plan.name} was cut off after ${writer.received}${of} bytes`, {
        retryable: true,
        status: response.status,
        cause: err,
      });
    }
    throw transportError(err, plan, opts.signal, writer.received);
  }
  writer.done();
  return writer.received;
}

function transportError(err: unknown, plan: Plan, signal: AbortSignal | undefined, bytes: number): DownloadError {
  const name = plan.name;
  if (signal?.aborted) return new DownloadError(`artifact download of ${name} was cancelled`, { retryable: true, cause: err });
  if (isTimeout(err)) {
    return new DownloadError(`artifact download of ${name} timed out (no data for ${plan.timeoutMs} ms${bytes > 0 ? ` after ${bytes} bytes` : ""})`, {
      retryable: true,
      cause: err,
    });
  }
  const what = bytes > 0 ? `was interrupted after ${bytes} bytes` : "failed";
  // Transport errors carry no URL; the host and port are fine to show.
  return new DownloadError(`artifact download of ${name} ${what}: ${unreachable(err, new URL(plan.url).host) ?? reasonOf(err)}`, {
    retryable: true,
    cause: err,
  });
}
