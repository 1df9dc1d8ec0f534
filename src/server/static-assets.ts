import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join } from "node:path";
import type { EmbeddedDirectory } from "../package-files.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** One file of the console, held in memory with its precompressed variants. */
export interface Asset {
  readonly type: string;
  readonly cacheControl: string;
  readonly identity: Variant;
  readonly gzip?: Variant;
  readonly br?: Variant;
}

interface Variant {
  readonly body: Buffer;
  readonly etag: string;
}

/** The console's files by URL path ("/assets/app-5XQ2MZ3B.js"); `index` is the page itself. */
export interface AssetSet {
  readonly index: Asset;
  readonly files: ReadonlyMap<string, Asset>;
  /** Bytes held in memory over all variants. */
  readonly bytes: number;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/**
 * Every response of the console carries these. The page loads only its own files (no inline
 * script or style, so no 'unsafe-inline'), talks only to its own origin, and cannot be framed.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
};

const IMMUTABLE = "public, max-age=31536000, immutable";
/** Names the build gives content-addressed files: `<name>-<8+ base32 chars>.<ext>`. */
const HASHED_NAME = /-[A-Z0-9]{8,}\.[a-z0-9]+$/;
/** Bounds on what is read at start: the console is a few hundred KB; refuse to hold a surprise. */
const MAX_FILES = 200;
const MAX_BYTES = 32 * 1024 * 1024;

export class AssetError extends Error {}

const etagOf = (body: Buffer, suffix: string) => `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}${suffix}"`;

/** Reads a regular file without following a symlink at its last component. */
async function readRegular(path: string): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") return undefined;
    throw err;
  }
  try {
    if (!(await handle.stat()).isFile()) return undefined;
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Loads the built console (`dist/web`) into memory: `index.html` and the regular files under
 * `assets/`, each with its `.gz` / `.br` sibling when the build made one. Symlinks and anything
 * that is not a regular file are skipped, so the set can only ever contain files that were in
 * the directory at start; requests are answered from this map and never touch the disk.
 * `from` is the directory, or (in a platform executable) the embedded copy of it.
 * Returns undefined when there is no built console there.
 */
export async function loadAssetSet(from: string | EmbeddedDirectory): Promise<AssetSet | undefined> {
  const files = typeof from === "string" ? directoryFiles(from) : from;
  const where = typeof from === "string" ? from : from.label;
  const indexBody = await files.read("index.html");
  if (!indexBody) return undefined;
  let bytes = 0;
  const load = async (rel: string, cacheControl: string): Promise<Asset> => {
    const body = rel === "index.html" ? indexBody : await files.read(rel);
    if (!body) throw new AssetError(`console asset ${join(where, rel)} vanished while loading`);
    const identity = { body, etag: etagOf(body, "") };
    const asset: { -readonly [K in keyof Asset]: Asset[K] } = { type: TYPES[extname(rel)] ?? "application/octet-stream", cacheControl, identity };
    const gz = await files.read(`${rel}.gz`);
    if (gz) asset.gzip = { body: gz, etag: etagOf(body, ".gz") };
    const br = await files.read(`${rel}.br`);
    if (br) asset.br = { body: br, etag: etagOf(body, ".br") };
    bytes += body.length + (gz?.length ?? 0) + (br?.length ?? 0);
    if (bytes > MAX_BYTES) throw new AssetError(`console assets in ${where} exceed ${MAX_BYTES} bytes; is that the built console?`);
    return asset;
  };
  const index = await load("index.html", "no-cache");
  const assets = new Map<string, Asset>();
  for (const name of (await files.list("assets")).sort()) {
    if (name.endsWith(".gz") || name.endsWith(".br") || name.startsWith(".")) continue;
    if (!/^[A-Za-z0-9._-]+$/.test(name)) continue;
    if (assets.size >= MAX_FILES) throw new AssetError(`more than ${MAX_FILES} files in ${join(where, "assets")}; is that the built console?`);
    // Only content-hashed names may be cached for a year; anything else is revalidated.
    assets.set(`/assets/${name}`, await load(`assets/${name}`, HASHED_NAME.test(name) ? IMMUTABLE : "no-cache"));
  }
  return { index, files: assets, bytes };
}

/** The console's directory on disk, read without following symlinks. */
function directoryFiles(dir: string): Pick<EmbeddedDirectory, "read" | "list"> {
  return {
    read: (rel) => readRegular(join(dir, rel)),
    list: async (rel) => {
      const entries = await readdir(join(dir, rel), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return [];
        throw err;
      });
      const names: string[] = [];
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const st = await lstat(join(dir, rel, entry.name));
        if (st.isFile()) names.push(entry.name);
      }
      return names;
    },
  };
}

/** Paths that show the page: `/`, `/console` and its deep links (`/console/tasks/<id>`). */
const PAGE_PATH = /^\/(?:console(?:\/[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*)*\/?)?$/;

/** Accept-Encoding → the codings the client takes (q > 0). */
function acceptedCodings(header: string | undefined): Set<string> {
  const out = new Set<string>();
  for (const part of (header ?? "").split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    if (name && !(q && Number(q.slice(2)) <= 0)) out.add(name);
  }
  return out;
}

/** If-None-Match names one of this asset's representations (or `*`). */
function notModified(header: string | undefined, asset: Asset): boolean {
  if (!header) return false;
  const tags = new Set([asset.identity.etag, asset.gzip?.etag, asset.br?.etag]);
  return header.split(",").some((t) => {
    const tag = t.trim().replace(/^W\//, "");
    return tag === "*" || tags.has(tag);
  });
}

function send(req: Req, res: Res, status: number, headers: Record<string, string>, body?: Buffer): void {
  res.writeHead(status, { ...SECURITY_HEADERS, ...headers });
  (res as http.ServerResponse).end(req.method === "HEAD" ? undefined : body);
}

/**
 * GET/HEAD routes of the console: the page at `/` and `/console/...`, its files at `/assets/...`.
 * Answers only from the in-memory set (a name not in it is a 404, whatever `..`, `%2e%2e`, `//`
 * or absolute form it uses). Returns false for requests that are not the console's.
 */
export function consoleRoutes(assets: AssetSet | undefined): (req: Req, res: Res) => boolean {
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const url = req.url ?? "";
    const path = url.split("?", 1)[0] ?? "";
    const isPage = PAGE_PATH.test(path);
    if (!isPage && !path.startsWith("/assets/") && !path.startsWith("/console/")) return false;
    if (!assets) {
      const body = Buffer.from("The console is not built. Run `npm run build` where cara is installed, then restart.\n");
      send(req, res, 503, { "content-type": "text/plain; charset=utf-8", "content-length": String(body.length), "cache-control": "no-store" }, body);
      return true;
    }
    const asset = isPage ? assets.index : assets.files.get(path);
    if (!asset) {
      const body = Buffer.from("not found\n");
      send(req, res, 404, { "content-type": "text/plain; charset=utf-8", "content-length": String(body.length), "cache-control": "no-store" }, body);
      return true;
    }
    const base: Record<string, string> = { "content-type": asset.type, "cache-control": asset.cacheControl, vary: "Accept-Encoding" };
    const accepted = acceptedCodings(req.headers["accept-encoding"] as string | undefined);
    const [variant, coding] =
      asset.br && accepted.has("br")
        ? [asset.br, "br"]
        : asset.gzip && (accepted.has("gzip") || accepted.has("*"))
          ? [asset.gzip, "gzip"]
          : [asset.identity, undefined];
    if (notModified(req.headers["if-none-match"] as string | undefined, asset)) {
      send(req, res, 304, { "cache-control": asset.cacheControl, vary: "Accept-Encoding", etag: variant.etag });
      return true;
    }
    send(
      req,
      res,
      200,
      { ...base, etag: variant.etag, "content-length": String(variant.body.length), ...(coding ? { "content-encoding": coding } : {}) },
      variant.body,
    );
    return true;
  };
}

/** Where the console is, for the start-up line: the bound address, or localhost for a wildcard bind. */
export function consoleUrl(bind: string, port: number, tls: boolean): string {
  const host = bind === "0.0.0.0" || bind === "::" ? "localhost" : bind.includes(":") ? `[${bind}]` : bind;
  return `${tls ? "https" : "http"}://${host}:${port}/`;
}
