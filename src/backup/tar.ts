/**
 * The tar layer of backup archives.
 *
 * Writing uses node-tar's Header and Pax encoders (ustar headers, a pax `path` record when a name
 * does not fit or is not ASCII). Reading decodes headers here instead of with node-tar's
 * Parser/Header on purpose: those cut names at the first NUL, parse pax records loosely, and
 * silently skip invalid entries, while a restore must see exactly what other tools would see in
 * order to refuse it (NUL bytes inside a name field, a pax path with control characters, a bad
 * header checksum).
 */
import { Header } from "tar/header";
import { Pax } from "tar/pax";

export const BLOCK = 512;
export const ZERO_BLOCK: Buffer = Buffer.alloc(BLOCK);
/** Two zero blocks end a tar archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Bytes of padding after a body of `size` bytes. */
export function paddingOf(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/**
 * The header block(s) of a regular file: a ustar header with uid/gid 0 and no user or group
 * names, preceded by a pax extended header when the path needs one.
 */
export function encodeFileHeader(path: string, size: number, mode: number, mtime: Date): Buffer {
  const fields = { path, mode, uid: 0, gid: 0, size, mtime, type: "File" as const, uname: "", gname: "", linkpath: "" };
  const header = new Header(fields);
  const block = Buffer.alloc(BLOCK);
  header.encode(block, 0);
  if (!header.needPax) return block;
  const pax = new Pax({ path }).encode();
  return Buffer.concat([pax, block]);
}

export interface RawHeader {
  /** Full name (ustar prefix joined), interior NUL bytes kept as "\u0000", invalid UTF-8 as U+FFFD. */
  name: string;
  /** Typeflag character ("0", "2", "x", ...; "\0" is returned as "0"). */
  type: string;
  size: number;
  mode: number;
  linkname: string;
}

export class TarFormatError extends Error {}

/** Decodes a NUL-padded string field; NULs before the last non-NUL byte are kept (and refused later). */
function decodeField(buf: Buffer, off: number, len: number): string {
  let end = off + len;
  while (end > off && buf[end - 1] === 0) end--;
  return buf.toString("utf8", off, end);
}

/** An octal number field (or GNU base-256). */
function decodeNumber(buf: Buffer, off: number, len: number, what: string): number {
  const first = buf[off]!;
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError(`negative ${what}`);
    let value = BigInt(first & 0x7f);
    for (let i = off + 1; i < off + len; i++) value = (value << 8n) | BigInt(buf[i]!);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`${what} is too large`);
    return Number(value);
  }
  const text = buf
    .toString("latin1", off, off + len)
    .replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`${what} is not an octal number`);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new TarFormatError(`${what} is too large`);
  return value;
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/** Decodes one 512-byte header block; throws TarFormatError when it is not a valid ustar header. */
export function decodeHeader(block: Buffer): RawHeader {
  let stored: number;
  try {
    stored = decodeNumber(block, 148, 8, "checksum");
  } catch {
    throw new TarFormatError("header checksum field is unreadable");
  }
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  if (sum !== stored) throw new TarFormatError("header checksum mismatch");
  const magic = block.toString("latin1", 257, 263);
  const posix = magic === "ustar\0";
  if (!posix && magic !== "ustar ") throw new TarFormatError("not a ustar header");
  let name = decodeField(block, 0, 100);
  if (posix && block[345] !== 0) name = `${decodeField(block, 345, 155)}/${name}`;
  const flag = String.fromCharCode(block[156]!);
  return {
    name,
    type: flag === "\0" ? "0" : flag,
    size: decodeNumber(block, 124, 12, "size"),
    mode: decodeNumber(block, 100, 8, "mode") & 0o7777,
    linkname: decodeField(block, 157, 100),
  };
}

/** Parses pax extended header records ("<len> <key>=<value>\n"); throws TarFormatError when malformed. */
export function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) {
      // NUL padding after the last record: tolerated only at the end.
      for (let i = pos; i < data.length; i++) if (data[i] !== 0) throw new TarFormatError("malformed pax header");
      break;
    }
    const space = data.indexOf(0x20, pos);
    if (space < 0 || space - pos > 20) throw new TarFormatError("malformed pax header");
    const lenText = data.toString("latin1", pos, space);
    if (!/^[1-9][0-9]*$/.test(lenText)) throw new TarFormatError("malformed pax header");
    const len = Number(lenText);
    const end = pos + len;
    if (end > data.length || data[end - 1] !== 0x0a) throw new TarFormatError("malformed pax header");
    const eq = data.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= end - 1) throw new TarFormatError("malformed pax header");
    out.set(data.toString("utf8", space + 1, eq), data.toString("utf8", eq + 1, end - 1));
    pos = end;
  }
  return out;
}

/** What an entry of a non-regular type is, for messages ("a symbolic link (to '/etc/passwd')"). */
export function describeType(type: string): string {
  switch (type) {
    case "1":
      return "a hard link";
    case "2":
      return "a symbolic link";
    case "3":
      return "a character device";
    case "4":
      return "a block device";
    case "5":
      return "a directory";
    case "6":
      return "a FIFO";
    case "7":
      return "a contiguous file";
    case "S":
      return "a sparse file";
    case "D":
      return "a GNU dump directory";
    case "V":
      return "a tape volume header";
    case "M":
      return "a multi-volume continuation";
    default: {
      const code = type.charCodeAt(0);
      const shown = code >= 0x20 && code < 0x7f ? type : `\\x${code.toString(16).padStart(2, "0")}`;
      return `an entry of unsupported type '${shown}'`;
    }
  }
}
