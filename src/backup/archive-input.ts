/**
 * The input side of reading an archive: the compressed bytes (counted, hashed, checked for the
 * gzip magic and the archive size limit) pumped into gunzip, the decompressed bytes pulled from
 * it with the total and ratio limits applied (a gzip bomb stops early), and the extended tar
 * headers (pax, GNU long names) that rename or resize the next entry.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { createGunzip, type Gunzip, type ZlibOptions } from "node:zlib";
import { KiB, MAX_META_BYTES, MiB, formatLimit, problem, type ArchiveLimits, type Problem } from "./archive-limits.js";
import { paddingOf, parsePax } from "./tar.js";

/** Reading stops at this problem. */
export class Stop extends Error {
  constructor(readonly problem?: Problem) {
    super(problem?.message ?? "stopped");
  }
}

/** gunzip is destroyed with this when the input is not gzip or is over the size limit. */
export const NOT_GZIP = new Error("not gzip");

export function truncated(what: string): Stop {
  return new Stop(problem("corrupt_archive", "", `archive is truncated: it ends inside ${what}`));
}

/**
 * Input → (count, hash, gzip magic, size limit) → gunzip, pumped from the constructor on.
 * Large output chunks and read-ahead let zlib inflate while the entries are hashed and written
 * (with the 16 KiB defaults inflate and processing alternate, and throughput halves); reading
 * only the head uses small buffers, so little more than the head is read and inflated.
 */
export class GzipInput {
  readonly gunzip: Gunzip;
  readonly hash = createHash("sha256");
  /** Compressed bytes read so far. */
  compressed = 0;
  /** The input failed (not a gunzip failure): the reader throws it. */
  error: unknown;
  /** The input was read to its end. */
  ended = false;
  /** The input was over maxArchiveBytes (gunzip was destroyed with NOT_GZIP). */
  tooLarge = false;
  private stopped = false;
  private head = Buffer.alloc(0);
  private readonly pumped: Promise<void>;

  constructor(
    private readonly input: Readable,
    private readonly maxArchiveBytes: number,
    headOnly: boolean,
  ) {
    this.gunzip = createGunzip(
      (headOnly
        ? { chunkSize: 16 * KiB, readableHighWaterMark: 16 * KiB, writableHighWaterMark: 16 * KiB }
        : { chunkSize: 256 * KiB, readableHighWaterMark: 1 * MiB, writableHighWaterMark: 256 * KiB }) as ZlibOptions,
    );
    this.pumped = this.pump();
  }

  /** Stops reading before the end (the reader is done or failed); settle() then waits for the pump. */
  stop(): void {
    this.stopped = true;
    this.gunzip.destroy();
    if (!this.ended) this.input.destroy();
  }

  settle(): Promise<void> {
    return this.pumped;
  }

  private async pump(): Promise<void> {
    const gunzip = this.gunzip;
    try {
      for await (const raw of this.input) {
        if (this.stopped) return;
        const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
        if (!this.accept(chunk) || gunzip.destroyed) return;
        if (!gunzip.write(chunk) && !(await this.drained())) return;
      }
      this.ended = true;
      if (gunzip.destroyed) return;
      if (this.head.length < 2) gunzip.destroy(NOT_GZIP);
      else gunzip.end();
    } catch (err) {
      if (!this.stopped) {
        this.error = err;
        gunzip.destroy(err as Error);
      }
    }
  }

  /** Counts and hashes a chunk and checks the size limit and the gzip magic; false stops the pump. */
  private accept(chunk: Buffer): boolean {
    this.compressed += chunk.length;
    this.hash.update(chunk);
    if (this.compressed > this.maxArchiveBytes) {
      this.tooLarge = true;
      this.gunzip.destroy(NOT_GZIP);
      return false;
    }
    if (this.head.length < 2) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 2)]);
      if (this.head.length >= 2 && (this.head[0] !== 0x1f || this.head[1] !== 0x8b)) {
        this.gunzip.destroy(NOT_GZIP);
        return false;
      }
    }
    return true;
  }

  /** Waits for gunzip to drain; false when it closed instead (it failed or was stopped: the reader reports it). */
  private async drained(): Promise<boolean> {
    const gunzip = this.gunzip;
    if (gunzip.destroyed) return false;
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
      return true;
    } catch {
      return false;
    }
  }
}

/** Decompressed bytes pulled from gunzip, with the total and ratio limits applied. */
export class ByteSource {
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

/** Overrides from pax ("x") and GNU long-name ("L", "K") headers for the next entry. */
export interface PendingMeta {
  path?: string;
  size?: number;
  linkpath?: string;
}

/** A pax ("x"), global pax ("g", ignored: it never renames or resizes an entry here) or GNU long-name ("L", "K") header. */
export async function readMetaHeader(source: ByteSource, type: string, size: number, pending: PendingMeta, last: string): Promise<void> {
  if (size > MAX_META_BYTES) {
    throw new Stop(problem("too_large", "", `archive has an extended header of ${size} bytes after ${last}, over the ${formatLimit(MAX_META_BYTES)} limit`));
  }
  const data = (await source.readExact(size + paddingOf(size), `an extended header after ${last}`)) ?? Buffer.alloc(0);
  if (data.length < size) throw truncated(`an extended header after ${last}`);
  const body = data.subarray(0, size);
  if (type === "x") pax(body, pending, last);
  else if (type === "L") pending.path = body.toString("utf8").replace(/\0+$/, "");
  else if (type === "K") pending.linkpath = body.toString("utf8").replace(/\0+$/, "");
}

function pax(body: Buffer, pending: PendingMeta, last: string): void {
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
}
