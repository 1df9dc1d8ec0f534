import { createHash, randomBytes, type Hash } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readdir, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { fsyncDir } from "../state/durable.js";
import { MAX_ARCHIVE_BYTES } from "./archive.js";

/** Largest piece one call may carry (the same bound as the streaming RPCs' chunks). */
export const MAX_UPLOAD_CHUNK_BYTES = 1024 * 1024;

export class UploadError extends Error {
  constructor(
    message: string,
    readonly kind: "invalid" | "precondition" | "exhausted",
  ) {
    super(message);
  }
}

interface OpenUpload {
  id: string;
  path: string;
  handle: FileHandle;
  bytes: number;
  hash: Hash;
  lastUsedMs: number;
  busy: boolean;
}

export interface UploadOptions {
  maxOpen?: number;
  idleMs?: number;
  maxBytes?: number;
  now?: () => number;
}

export interface UploadPiece {
  uploadId: string;
  offset: bigint;
  chunk: Uint8Array;
  finish: boolean;
}

export interface UploadProgress {
  uploadId: string;
  bytesReceived: number;
  /** Set once finished. */
  backupName?: string;
  sha256?: string;
}

/**
 * Archives handed over one piece per call (for clients that cannot stream a request, i.e.
 * browsers). Pieces go to `<backups>/.upload-<id>.partial` (0600, never listed as a backup),
 * strictly in order; the last one syncs the file and renames it to `upload-<time>-<rand>.tar.gz`.
 * Nothing is verified here: the archive is checked like any other stored backup afterwards.
 * Bounded: a few uploads at once, the archive size limit, and uploads idle for `idleMs` (or left
 * by a previous process) are deleted.
 */
export class BackupUploads {
  private readonly open = new Map<string, OpenUpload>();
  private readonly maxOpen: number;
  private readonly idleMs: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private sweptLeftovers = false;

  constructor(
    private readonly dir: string,
    options: UploadOptions = {},
  ) {
    this.maxOpen = options.maxOpen ?? 4;
    this.idleMs = options.idleMs ?? 15 * 60_000;
    this.maxBytes = options.maxBytes ?? MAX_ARCHIVE_BYTES;
    this.now = options.now ?? Date.now;
  }

  /** Uploads open now (tests, status). */
  get openCount(): number {
    return this.open.size;
  }

  async append(piece: UploadPiece): Promise<UploadProgress> {
    await this.sweep();
    if (piece.chunk.length > MAX_UPLOAD_CHUNK_BYTES) {
      throw new UploadError(`chunk of ${piece.chunk.length} bytes exceeds 1 MiB; send the archive in smaller pieces`, "invalid");
    }
    const upload = piece.uploadId === "" ? await this.begin(piece.offset) : this.open.get(piece.uploadId);
    if (!upload) {
      throw new UploadError("unknown upload_id (it finished, or was discarded after being idle): start again with an empty upload_id", "invalid");
    }
    if (upload.busy) throw new UploadError("another piece of this upload is being written; send the next one after its answer", "precondition");
    if (piece.offset !== BigInt(upload.bytes)) {
      throw new UploadError(`offset ${piece.offset} does not match the ${upload.bytes} bytes received; continue from ${upload.bytes}`, "precondition");
    }
    if (upload.bytes + piece.chunk.length > this.maxBytes) {
      await this.discard(upload);
      throw new UploadError(`the archive exceeds the ${this.maxBytes} byte limit; the upload was discarded`, "exhausted");
    }
    upload.busy = true;
    try {
      if (piece.chunk.length > 0) await upload.handle.write(piece.chunk, 0, piece.chunk.length, upload.bytes);
      upload.hash.update(piece.chunk);
      upload.bytes += piece.chunk.length;
      upload.lastUsedMs = this.now();
      if (!piece.finish) return { uploadId: upload.id, bytesReceived: upload.bytes };
      return await this.finish(upload);
    } catch (err) {
      await this.discard(upload);
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") throw new UploadError("the state dir's filesystem is full; the upload was discarded", "exhausted");
      throw err;
    } finally {
      upload.busy = false;
    }
  }

  private async begin(offset: bigint): Promise<OpenUpload> {
    if (offset !== 0n) throw new UploadError(`a new upload starts at offset 0 (got ${offset}); to continue one, pass its upload_id`, "invalid");
    if (this.open.size >= this.maxOpen) throw new UploadError(`${this.open.size} uploads are already open; finish one or wait until they expire`, "exhausted");
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const id = randomBytes(12).toString("hex");
    const path = join(this.dir, `.upload-${id}.partial`);
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    const upload: OpenUpload = { id, path, handle, bytes: 0, hash: createHash("sha256"), lastUsedMs: this.now(), busy: false };
    this.open.set(id, upload);
    return upload;
  }

  private async finish(upload: OpenUpload): Promise<UploadProgress> {
    await upload.handle.sync();
    await upload.handle.close();
    const stamp = new Date(this.now())
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d+Z$/, "Z");
    const name = `upload-${stamp}-${randomBytes(2).toString("hex")}.tar.gz`;
    await rename(upload.path, join(this.dir, name));
    await fsyncDir(this.dir);
    this.open.delete(upload.id);
    return { uploadId: upload.id, bytesReceived: upload.bytes, backupName: name, sha256: upload.hash.digest("hex") };
  }

  private async discard(upload: OpenUpload): Promise<void> {
    this.open.delete(upload.id);
    await upload.handle.close().catch(() => undefined);
    await unlink(upload.path).catch(() => undefined);
  }

  /** Drops idle uploads, and once per process the partial files a previous one left behind. */
  private async sweep(): Promise<void> {
    const cutoff = this.now() - this.idleMs;
    for (const upload of [...this.open.values()]) if (!upload.busy && upload.lastUsedMs < cutoff) await this.discard(upload);
    if (this.sweptLeftovers) return;
    this.sweptLeftovers = true;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      if (/^\.upload-[0-9a-f]+\.partial$/.test(name) && !this.open.has(name.slice(8, -8))) await unlink(join(this.dir, name)).catch(() => undefined);
    }
  }
}
