// Test helpers for backup archives: a raw tar writer independent of src/backup (so malicious
// archives can hold what our writer never would), a walker to edit real archives, and a populated
// state dir.
import { createHash } from "node:crypto";
import { chmod, mkdir, readdir, writeFile, lstat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { signManifest, summarizeSections, type Manifest, type ManifestFile } from "../../src/backup/manifest.js";
import { readBackupArchive, type ReadBackupOptions, type ReadBackupResult } from "../../src/backup/archive.js";

export const SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
export const OTHER_SECRET = "another-deployment-secret-0123456789-abcdefghij";
export const CREATED = "2026-01-02T03:04:05.678Z";

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, "0")}\0`;
}

export interface RawEntry {
  /** Name bytes as written in the ustar name field (≤ 100 bytes). */
  name: string | Buffer;
  /** Typeflag, default "0". */
  type?: string;
  content?: string | Buffer;
  /** Header size field, default content length (for lying headers). */
  size?: number;
  mode?: number;
  linkname?: string;
  /** Corrupt the header checksum. */
  badChecksum?: boolean;
}

/** One ustar header block written by hand. */
export function rawHeader(e: RawEntry & { size: number }): Buffer {
  const block = Buffer.alloc(512);
  const name = Buffer.isBuffer(e.name) ? e.name : Buffer.from(e.name, "utf8");
  if (name.length > 100) throw new Error("rawHeader: name over 100 bytes");
  name.copy(block, 0);
  block.write(octal(e.mode ?? 0o644, 8), 100, "latin1");
  block.write(octal(0, 8), 108, "latin1");
  block.write(octal(0, 8), 116, "latin1");
  block.write(octal(e.size, 12), 124, "latin1");
  block.write(octal(1767323045, 12), 136, "latin1");
  block.write(e.type ?? "0", 156, "latin1");
  if (e.linkname) block.write(e.linkname, 157, "utf8");
  block.write("ustar\u000000", 257, "latin1");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  if (e.badChecksum) sum += 1;
  block.write(`${octal(sum, 7)} `, 148, "latin1");
  return block;
}

function padded(content: Buffer): Buffer {
  const pad = (512 - (content.length % 512)) % 512;
  return Buffer.concat([content, Buffer.alloc(pad)]);
}

/** A pax extended header ('x') whose records apply to the next entry. Values may hold any bytes. */
export function paxEntry(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from("\n")]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  const data = Buffer.concat(parts);
  return Buffer.concat([rawHeader({ name: "PaxHeader/x", type: "x", size: data.length }), padded(data)]);
}

/** A GNU long-name ('L') header for the next entry. */
export function longNameEntry(name: string): Buffer {
  const data = Buffer.from(`${name}\0`);
  return Buffer.concat([rawHeader({ name: "././@LongLink", type: "L", size: data.length }), padded(data)]);
}

/** Blocks of one entry (header + padded content). */
export function entryBlocks(e: RawEntry): Buffer {
  const content = e.content === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content);
  return Buffer.concat([rawHeader({ ...e, size: e.size ?? content.length }), padded(content)]);
}

export const END = Buffer.alloc(1024);

export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface LegitFile {
  path: string;
  content: string | Buffer;
  mode?: number;
}

export function manifestFor(files: readonly LegitFile[], secret = SECRET, overrides: Partial<Manifest> = {}): Manifest {
  const list: ManifestFile[] = files.map((f) => ({
    path: f.path,
    size: Buffer.byteLength(f.content),
    mode: f.mode ?? 0o600,
    sha256: sha256(f.content),
  }));
  const { hmac: _h, ...rest } = overrides;
  return signManifest(
    {
      format: "carapace-backup",
      formatVersion: 2,
      caraVersion: "0.1.0",
      createdAt: CREATED,
      host: "test-host",
      sections: summarizeSections(list),
      files: list,
      ...rest,
    },
    secret,
  );
}

export const MARKER = `carapace-backup v1\ncreated=${CREATED}\n`;

/** Marker + manifest (of `files`) + the files, as tar blocks (no end marker). */
export function backupBlocks(files: readonly LegitFile[], options: { secret?: string; manifest?: unknown } = {}): Buffer {
  const manifest = options.manifest ?? manifestFor(files, options.secret);
  return Buffer.concat([
    entryBlocks({ name: ".carapace-backup", content: MARKER }),
    entryBlocks({ name: "manifest.json", content: JSON.stringify(manifest) }),
    ...files.map((f) => entryBlocks({ name: f.path, content: f.content, mode: f.mode ?? 0o600 })),
  ]);
}

export const LEGIT: LegitFile[] = [
  { path: "config/config.json", content: '{"port":18789}\n' },
  { path: "tasks/queue.json", content: '{"tasks":[]}\n' },
];

/** A gzip'd archive: marker, manifest of LEGIT (+ extra listed files), LEGIT, then `extra` raw blocks, end. */
export function maliciousArchive(extra: Buffer[], listed: LegitFile[] = []): Buffer {
  const files = [...LEGIT, ...listed];
  return gzipSync(Buffer.concat([backupBlocks(LEGIT, { manifest: manifestFor(files) }), ...extra, END]));
}

/** Feeds a buffer in 64 KiB chunks. */
export function streamOf(buf: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) parts.push(buf.subarray(i, i + chunk));
  return Readable.from(parts);
}

export function readBuffer(buf: Buffer, options: Partial<ReadBackupOptions> = {}): Promise<ReadBackupResult> {
  return readBackupArchive(streamOf(buf), { secret: SECRET, ...options });
}

/** Entries of an uncompressed tar (pax path applied), for editing real archives. */
export interface TarSpan {
  name: string;
  type: string;
  size: number;
  /** Offset of the first header block of the entry (including a preceding pax header). */
  start: number;
  dataStart: number;
  /** Offset after the padded data. */
  end: number;
}

export function walkTar(tar: Buffer): TarSpan[] {
  const out: TarSpan[] = [];
  let off = 0;
  let paxPath: string | undefined;
  let start = 0;
  while (off + 512 <= tar.length) {
    const block = tar.subarray(off, off + 512);
    if (block.every((b) => b === 0)) break;
    const name = block.toString("utf8", 0, 100).replace(/\0.*$/s, "");
    const prefix = block.toString("utf8", 345, 500).replace(/\0.*$/s, "");
    const size = parseInt(block.toString("latin1", 124, 136).replace(/\0.*$/s, "").trim() || "0", 8);
    const type = String.fromCharCode(block[156]!) || "0";
    const dataStart = off + 512;
    const end = dataStart + Math.ceil(size / 512) * 512;
    if (paxPath === undefined) start = off;
    if (type === "x") {
      const records = tar.toString("utf8", dataStart, dataStart + size);
      const m = /\d+ path=([^\n]*)\n/.exec(records);
      paxPath = m ? m[1]! : "";
    } else {
      out.push({ name: paxPath ?? (prefix ? `${prefix}/${name}` : name), type, size, start, dataStart, end });
      paxPath = undefined;
    }
    off = end;
  }
  return out;
}

export function gunzip(buf: Buffer): Buffer {
  return gunzipSync(buf);
}

/** A state dir with every section, excluded entries and awkward files. */
export async function populateState(dir: string): Promise<Record<string, { content: Buffer; mode: number }>> {
  const files: Record<string, { content: Buffer; mode: number }> = {};
  const put = async (rel: string, content: string | Buffer, mode = 0o600) => {
    const abs = join(dir, rel);
    await mkdir(join(abs, ".."), { recursive: true, mode: 0o700 });
    await writeFile(abs, content);
    await chmod(abs, mode);
    files[rel] = { content: Buffer.isBuffer(content) ? content : Buffer.from(content), mode };
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await put("config.json", '{"port":18789}\n');
  await put("tasks/queue.json", '{"version":1,"tasks":[]}\n');
  await put("tasks/queue.journal", '{"op":"create"}\n', 0o644);
  await put("tasks/empty", "");
  await put("sessions/s1/meta.json", '{"id":"s1"}\n');
  await put("sessions/s1/history.jsonl", Buffer.from(Array.from({ length: 2000 }, (_, i) => `{"turn":${i},"text":"hello world"}\n`).join("")));
  const longDir = `sessions/${"d".repeat(60)}/${"e".repeat(60)}`;
  await put(`${longDir}/naïve-ünïcödé-${"f".repeat(40)}.json`, "{}\n", 0o640);
  const random = Buffer.alloc(300 * 1024);
  for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + (i >> 5) * 31) & 0xff;
  await put("memory/blob.bin", random);
  await put("memory/large.bin", Buffer.concat(Array.from({ length: 6 }, () => random)), 0o400);
  await put("cron/jobs.json", '{"jobs":[]}\n');
  await put("usage.json", '{"tokens":42}\n');
  // never archived
  await mkdir(join(dir, "auth"), { mode: 0o700 });
  await writeFile(join(dir, "auth", "token"), "tok\n", { mode: 0o600 });
  await writeFile(join(dir, "auth", "server-secret"), "sec\n", { mode: 0o600 });
  await writeFile(join(dir, "cara.lock"), "123\n");
  await mkdir(join(dir, "updates"));
  await writeFile(join(dir, "updates", "transaction.json"), "{}");
  await mkdir(join(dir, "backups"));
  await writeFile(join(dir, "backups", "old.tar.gz"), "x");
  await mkdir(join(dir, "logs"));
  await writeFile(join(dir, "logs", "cara.log"), "log\n");
  await writeFile(join(dir, "notes.txt"), "operator notes\n");
  await writeFile(join(dir, ".config.json.tmp-123-abcdef"), "partial");
  await writeFile(join(dir, "tasks", ".queue.json.tmp-9-0a1b"), "partial");
  return files;
}

/** Every path under dir (relative, dirs with a trailing slash), sorted. */
export async function tree(dir: string, base = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, base), { withFileTypes: true })) {
    const rel = base === "" ? e.name : `${base}/${e.name}`;
    if (e.isDirectory()) out.push(`${rel}/`, ...(await tree(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
