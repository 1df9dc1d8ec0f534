/**
 * A real local release host for tests: a GitHub-compatible releases API plus asset downloads,
 * on 127.0.0.1 and port 0, with scripted faults and a request log.
 *
 *   {baseUrl}/releases                    all releases, newest (last given) first, drafts included
 *   {baseUrl}/releases/latest             the release marked `latest`, else the last given one
 *                                         that is neither a draft nor a pre-release (GitHub: 404
 *                                         when there is none)
 *   {baseUrl}/releases/tags/<tag>         one release (drafts are not found, as on GitHub)
 *   {baseUrl}/download/<tag>/<name>       the asset bytes: GET and HEAD, single-range `Range`
 *                                         (206 + Content-Range, 416 past the end), Accept-Ranges
 *
 * With `redirectDownloads(true)` a download answers 302 to `{origin}/cdn/<tag>/<name>?X-Token=...`
 * (GitHub sends assets through a signed CDN URL), which serves the same bytes.
 *
 * Faults are queued per path (a RegExp, or a string the request's path ends with) and each one
 * is used by exactly one request, in order: fail() answers statuses, truncateNext() sends the full
 * Content-Length then closes the socket early, ignoreRangeNext() answers 200 with the whole body
 * to a Range request, hangNext() never answers, respond() runs custom code.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface FakeAsset {
  name: string;
  /** Path of a file on disk holding the asset (read at request time). */
  file?: string;
  /** Or the bytes themselves. */
  body?: Buffer | string;
  /** Size announced in the API (default: the real size). */
  size?: number;
}

export interface FakeRelease {
  tag: string;
  prerelease?: boolean;
  draft?: boolean;
  /** Served by /releases/latest even if it is not the last one. */
  latest?: boolean;
  publishedAt?: string;
  assets: FakeAsset[];
}

export interface LoggedRequest {
  method: string;
  /** Path and query as requested. */
  path: string;
  range: string | undefined;
  userAgent: string | undefined;
  accept: string | undefined;
  status: number;
  /** Body bytes sent (after a fault: what actually went out). */
  bytesSent: number;
}

export type ScriptedStatus = number | { status: number; body?: string | Buffer; headers?: Record<string, string> };
export type PathMatch = RegExp | string;

type Fault =
  | { kind: "status"; status: number; body?: string | Buffer; headers?: Record<string, string> }
  | { kind: "truncate"; bytes: number }
  | { kind: "ignoreRange" }
  | { kind: "hang" }
  | { kind: "custom"; handler: (req: IncomingMessage, res: ServerResponse) => void };

export interface ReleaseServer {
  /** The API base, e.g. http://127.0.0.1:PORT/repos/carapace/cara. */
  baseUrl: string;
  origin: string;
  port: number;
  /** Every request answered (or cut off), in arrival order. */
  log: LoggedRequest[];
  setReleases(releases: FakeRelease[]): void;
  /** The download URL the API announces for an asset. */
  assetUrl(tag: string, name: string): string;
  /** The next requests matching `path` get these statuses (429 and 503 with Retry-After: 1). */
  fail(path: PathMatch, statuses: ScriptedStatus[]): void;
  /** The next download matching `path` announces the full length but stops after `bytes`. */
  truncateNext(path: PathMatch, bytes: number): void;
  /** The next `count` requests matching `path` ignore their Range header (200, whole body). */
  ignoreRangeNext(path: PathMatch, count?: number): void;
  /** The next request matching `path` is never answered (until close()). */
  hangNext(path: PathMatch): void;
  /** The next request matching `path` is answered by this function. */
  respond(path: PathMatch, handler: (req: IncomingMessage, res: ServerResponse) => void): void;
  /** Downloads answer 302 to a CDN URL carrying a query string. */
  redirectDownloads(on: boolean): void;
  /** Log entries whose path matches. */
  requests(path?: PathMatch): LoggedRequest[];
  clearLog(): void;
  close(): Promise<void>;
}

const API_PREFIX = "/repos/carapace/cara";

function matches(match: PathMatch, path: string): boolean {
  if (typeof match === "string") return path === match || path.endsWith(match) || path.split("?")[0]!.endsWith(match);
  return match.test(path);
}

function assetSize(a: FakeAsset): number {
  if (a.body !== undefined) return Buffer.byteLength(a.body);
  if (a.file !== undefined) return statSync(a.file).size;
  throw new Error(`asset ${a.name} has neither file nor body`);
}

export async function startReleaseServer(initial: FakeRelease[] = []): Promise<ReleaseServer> {
  let releases: FakeRelease[] = initial;
  let redirect = false;
  const faults: { match: PathMatch; fault: Fault }[] = [];
  const log: LoggedRequest[] = [];
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  let origin = "";
  let base = "";

  const takeFault = (path: string): Fault | undefined => {
    const i = faults.findIndex((f) => matches(f.match, path));
    if (i < 0) return undefined;
    return faults.splice(i, 1)[0]!.fault;
  };

  const toJson = (r: FakeRelease, index: number) => ({
    url: `${base}/releases/${index + 1}`,
    html_url: `${origin}/carapace/cara/releases/tag/${encodeURIComponent(r.tag)}`,
    id: index + 1,
    tag_name: r.tag,
    name: r.tag,
    draft: r.draft ?? false,
    prerelease: r.prerelease ?? false,
    created_at: r.publishedAt ?? new Date(Date.UTC(2026, 0, 1) + index * 86_400_000).toISOString(),
    published_at: r.draft ? null : (r.publishedAt ?? new Date(Date.UTC(2026, 0, 1) + index * 86_400_000).toISOString()),
    body: `Release ${r.tag}`,
    assets: r.assets.map((a, j) => ({
      id: (index + 1) * 1000 + j,
      name: a.name,
      label: null,
      state: "uploaded",
      content_type: "application/octet-stream",
      size: a.size ?? assetSize(a),
      browser_download_url: `${base}/download/${encodeURIComponent(r.tag)}/${encodeURIComponent(a.name)}`,
    })),
  });

  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    const entry: LoggedRequest = {
      method: req.method ?? "GET",
      path,
      range: req.headers.range,
      userAgent: req.headers["user-agent"],
      accept: req.headers.accept,
      status: 0,
      bytesSent: 0,
    };
    log.push(entry);
    const send = (status: number, body: string | Buffer = "", headers: Record<string, string> = {}) => {
      entry.status = status;
      const buf = Buffer.from(body);
      res.writeHead(status, { "Content-Length": String(buf.length), ...headers });
      if (req.method === "HEAD") return res.end();
      entry.bytesSent = buf.length;
      res.end(buf);
    };
    const json = (status: number, value: unknown) => send(status, JSON.stringify(value), { "Content-Type": "application/json; charset=utf-8" });

    const fault = takeFault(path);
    if (fault?.kind === "hang") {
      entry.status = -1;
      hung.add(res);
      return;
    }
    if (fault?.kind === "custom") {
      res.on("finish", () => (entry.status = res.statusCode));
      fault.handler(req, res);
      return;
    }
    if (fault?.kind === "status") {
      const headers: Record<string, string> = { "Content-Type": "application/json; charset=utf-8", ...fault.headers };
      if ((fault.status === 429 || fault.status === 503) && !("Retry-After" in headers)) headers["Retry-After"] = "1";
      return send(fault.status, fault.body ?? JSON.stringify({ message: STATUS_CODES[fault.status] ?? "error" }), headers);
    }

    const pathname = path.split("?")[0]!;
    const visible = releases.filter((r) => !r.draft);
    if (pathname === `${API_PREFIX}/releases`) {
      return json(200, releases.map(toJson).reverse());
    }
    if (pathname === `${API_PREFIX}/releases/latest`) {
      const marked = releases.find((r) => r.latest && !r.draft);
      const latest = marked ?? [...visible].reverse().find((r) => !r.prerelease);
      if (!latest) return json(404, { message: "Not Found" });
      return json(200, toJson(latest, releases.indexOf(latest)));
    }
    const tagMatch = /^\/repos\/carapace\/cara\/releases\/tags\/([^/]+)$/.exec(pathname);
    if (tagMatch) {
      const tag = decodeURIComponent(tagMatch[1]!);
      const r = visible.find((x) => x.tag === tag);
      if (!r) return json(404, { message: "Not Found" });
      return json(200, toJson(r, releases.indexOf(r)));
    }
    const dl = /^\/(?:repos\/carapace\/cara\/download|cdn)\/([^/]+)\/([^/]+)$/.exec(pathname);
    if (dl) {
      const tag = decodeURIComponent(dl[1]!);
      const name = decodeURIComponent(dl[2]!);
      const asset = releases.find((r) => r.tag === tag)?.assets.find((a) => a.name === name);
      if (!asset) return send(404, "Not Found");
      if (redirect && !pathname.startsWith("/cdn/")) {
        return send(302, "", { Location: `${origin}/cdn/${dl[1]}/${dl[2]}?X-Token=secret-${Date.now()}&response-content-disposition=attachment` });
      }
      return serveAsset(req, res, asset, entry, fault);
    }
    return json(404, { message: "Not Found" });
  });

  const serveAsset = (req: IncomingMessage, res: ServerResponse, asset: FakeAsset, entry: LoggedRequest, fault: Fault | undefined) => {
    const size = assetSize(asset);
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = fault?.kind === "ignoreRange" ? undefined : req.headers.range;
    if (range !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range.trim());
      if (m) {
        start = Number(m[1]);
        if (m[2] !== "") end = Math.min(Number(m[2]), size - 1);
        if (start >= size || start > end) {
          entry.status = 416;
          res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Length": "0" });
          res.end();
          return;
        }
        status = 206;
      }
    }
    const length = end - start + 1;
    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(Math.max(length, 0)),
      "Accept-Ranges": "bytes",
    };
    if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    entry.status = status;
    res.writeHead(status, headers);
    if (req.method === "HEAD" || length <= 0) {
      res.end();
      return;
    }
    const limit = fault?.kind === "truncate" ? Math.min(fault.bytes, length) : length;
    const cut = fault?.kind === "truncate";
    const source =
      limit <= 0
        ? []
        : asset.body !== undefined
          ? [Buffer.from(asset.body).subarray(start, start + limit)]
          : createReadStream(asset.file!, { start, end: start + limit - 1, highWaterMark: 1024 * 1024 });
    (async () => {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        entry.bytesSent += chunk.length;
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off("drain", done).off("close", done);
              resolve();
            };
            res.on("drain", done).on("close", done);
          });
        }
        if (res.destroyed) return;
      }
      if (cut) {
        // Let the bytes go out, then drop the connection mid-body.
        res.socket?.end();
        setTimeout(() => res.socket?.destroy(), 50).unref();
      } else {
        res.end();
      }
    })().catch(() => res.destroy());
  };

  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
  base = `${origin}${API_PREFIX}`;

  const push = (match: PathMatch, fault: Fault) => faults.push({ match, fault });
  return {
    baseUrl: base,
    origin,
    port,
    log,
    setReleases(r) {
      releases = r;
    },
    assetUrl: (tag, name) => `${base}/download/${encodeURIComponent(tag)}/${encodeURIComponent(name)}`,
    fail(match, statuses) {
      for (const s of statuses) push(match, typeof s === "number" ? { kind: "status", status: s } : { kind: "status", ...s });
    },
    truncateNext: (match, bytes) => push(match, { kind: "truncate", bytes }),
    ignoreRangeNext(match, count = 1) {
      for (let i = 0; i < count; i++) push(match, { kind: "ignoreRange" });
    },
    hangNext: (match) => push(match, { kind: "hang" }),
    respond: (match, handler) => push(match, { kind: "custom", handler }),
    redirectDownloads(on) {
      redirect = on;
    },
    requests: (match) => (match === undefined ? [...log] : log.filter((e) => matches(match, e.path))),
    clearLog() {
      log.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of hung) r.destroy();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
