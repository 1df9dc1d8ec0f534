/**
 * The updater's one HTTP client: undici (the library behind Node's own `fetch`), pinned in
 * package.json because Node 20 does not expose its bundled copy's agents. Release JSON goes
 * through undici's `fetch`, artifact downloads through its `request` (a Node stream, no web-stream
 * layer on a 100 MB body); both share one dispatcher, so both honour the proxy variables:
 *
 * - `HTTPS_PROXY` / `https_proxy` for https URLs, `HTTP_PROXY` / `http_proxy` for http URLs (and
 *   for https when no https proxy is set), as `http://[user:pass@]host:port`; the proxy is asked
 *   for a CONNECT tunnel, so TLS stays end to end;
 * - `NO_PROXY` / `no_proxy`: comma- or space-separated host names (a leading `.` or `*.` matches
 *   subdomains), `host:port`, or `*` for none.
 *
 * The variables are read at each request (a changed environment gets a new dispatcher). Redirects
 * are not followed here: `fetch` follows them for release JSON, and download.ts applies its own
 * rules (at most 10, http(s) only) to artifact downloads.
 */
import type { Dispatcher, RequestInit, Response } from "undici";

export type FetchResponse = Response;

const importUndici = () => import("undici");
/** undici takes ~80 ms to load: it is loaded on the first request, not with the server. */
let undici: ReturnType<typeof importUndici> | undefined;
function loadUndici(): ReturnType<typeof importUndici> {
  undici ??= importUndici();
  return undici;
}

let cached: { key: string; dispatcher: Dispatcher } | undefined;

function proxyEnv(env: NodeJS.ProcessEnv): { httpProxy?: string; httpsProxy?: string; noProxy?: string } {
  const pick = (name: string) => env[name.toLowerCase()] || env[name] || undefined;
  const out: { httpProxy?: string; httpsProxy?: string; noProxy?: string } = {};
  const http = pick("HTTP_PROXY");
  const https = pick("HTTPS_PROXY");
  const no = pick("NO_PROXY");
  if (http) out.httpProxy = http;
  if (https) out.httpsProxy = https;
  if (no) out.noProxy = no;
  return out;
}

/** The dispatcher for the current environment: direct, or through the proxy the variables name. */
export async function updateDispatcher(env: NodeJS.ProcessEnv = process.env): Promise<Dispatcher> {
  const { Agent, EnvHttpProxyAgent } = await loadUndici();
  const proxies = proxyEnv(env);
  const key = JSON.stringify(proxies);
  if (cached?.key === key) return cached.dispatcher;
  const previous = cached?.dispatcher;
  // EnvHttpProxyAgent is only made when a proxy is configured: it prints an "experimental" warning once.
  const dispatcher = proxies.httpProxy || proxies.httpsProxy ? new EnvHttpProxyAgent({ ...proxies, noProxy: proxies.noProxy ?? "" }) : new Agent();
  cached = { key, dispatcher };
  // Requests still running on the old one finish; it closes after them.
  void previous?.close().catch(() => undefined);
  return dispatcher;
}

/** undici's fetch through the updater's dispatcher (release JSON: redirects followed). */
export async function fetchThrough(url: URL, init: Omit<RequestInit, "dispatcher">): Promise<FetchResponse> {
  const { fetch } = await loadUndici();
  return fetch(url, { ...init, dispatcher: await updateDispatcher() });
}

/** Credentials in a URL go out as Basic authorization (undici refuses them in the URL), never printed. */
export function splitCredentials(url: URL): { url: URL; authorization?: string } {
  if (url.username === "" && url.password === "") return { url };
  const bare = new URL(url.href);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`;
  bare.username = "";
  bare.password = "";
  return { url: bare, authorization };
}

export interface GetResponse {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Readonly<Record<string, string>>;
  /** The body's length when the server sent Content-Length. */
  contentLength: number | undefined;
  body: Dispatcher.ResponseData["body"];
}

export interface GetOptions {
  headers: Record<string, string>;
  /** Longest wait for the response head, or between two body chunks. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** One GET (no redirect followed); resolves on the response head. Destroy `body` when it is not read. */
export async function httpGet(target: URL, opts: GetOptions): Promise<GetResponse> {
  const { url, authorization } = splitCredentials(target);
  const headers = authorization ? { ...opts.headers, Authorization: authorization } : opts.headers;
  const { request } = await loadUndici();
  const res = await request(url, {
    method: "GET",
    headers,
    dispatcher: await updateDispatcher(),
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const flat: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(", ") : value;
  const cl = flat["content-length"];
  return { status: res.statusCode, headers: flat, contentLength: cl !== undefined && /^\d{1,15}$/.test(cl) ? Number(cl) : undefined, body: res.body };
}

/** Drops a body that is not (or no longer) read: the connection is closed unless the body had ended. */
export function discardBody(res: GetResponse): void {
  const body = res.body;
  if (body.destroyed) return;
  // undici's body reports an abort as an error event; nobody is listening for it any more.
  body.on("error", () => undefined);
  body.destroy();
}

/** undici's error codes for "nothing arrived in time" (connecting, the head, or between body chunks). */
export function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" || code === "UND_ERR_CONNECT_TIMEOUT";
}

/** The connection closed before the body's announced end (Content-Length or the last chunk). */
export function isCutOff(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === "UND_ERR_SOCKET" || code === "UND_ERR_RES_CONTENT_LENGTH_MISMATCH";
}

const NO_ROUTE = new Set(["ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH", "ENETDOWN"]);

/**
 * "cannot reach <host> (no network?)" when the request never reached the host (no DNS answer, no
 * route) and "cannot reach <host> (connection refused)" when nothing listens there; undefined for
 * any other failure. fetch wraps the system error in `cause` (an AggregateError when both
 * address families failed), so the chain is searched.
 */
export function unreachable(err: unknown, host: string): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const e = queue.shift();
    if (!e || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NO_ROUTE.has(code)) return `cannot reach ${host} (${code}: no network?)`;
    if (code === "ECONNREFUSED") return `cannot reach ${host} (connection refused)`;
    queue.push((e as { cause?: unknown }).cause, ...((e as { errors?: unknown[] }).errors ?? []));
  }
  return undefined;
}
