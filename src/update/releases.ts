/**
 * The release source: a GitHub-releases-compatible JSON API (`{base}/releases`,
 * `{base}/releases/latest`, `{base}/releases/tags/<tag>`), GitHub itself by default
 * (`https://api.github.com/repos/<owner>/<repo>`) or any server speaking the same shape.
 *
 * Every failure is a ReleaseSourceError with a kind and a retryable flag (the original Rust
 * cara's rules, with "release source" for "GitHub API"): 429, 403 mentioning a rate limit, 5xx and
 * network errors/timeouts are retryable; 404, 401, other statuses, over-large or malformed
 * bodies are not. Messages never contain credentials or query strings.
 */
import semver from "semver";
import { formatLimit } from "../format-bytes.js";
import { BodyTooLargeError, readCapped } from "../read-capped.js";
import { fetchThrough, splitCredentials, unreachable, type FetchResponse } from "./http-client.js";

export interface ReleaseAsset {
  name: string;
  url: string;
  size: number;
}

export interface Release {
  tag: string;
  /** The tag without one leading "v". */
  version: string;
  prerelease: boolean;
  draft: boolean;
  htmlUrl: string;
  publishedAt?: Date;
  assets: ReleaseAsset[];
}

export type ReleaseErrorKind = "not_found" | "auth" | "rate_limited" | "unavailable" | "bad_response";

export class ReleaseSourceError extends Error {
  readonly kind: ReleaseErrorKind;
  readonly retryable: boolean;
  readonly status?: number;

  constructor(kind: ReleaseErrorKind, message: string, options: { status?: number; retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ReleaseSourceError";
    this.kind = kind;
    this.retryable = options.retryable ?? (kind === "rate_limited" || kind === "unavailable");
    if (options.status !== undefined) this.status = options.status;
  }
}

export interface ReleaseSourceOptions {
  /** e.g. https://api.github.com/repos/<owner>/<repo> (http or https). */
  baseUrl: string;
  userAgent: string;
  /** Whole request including the body; default 15 000 ms. */
  timeoutMs?: number;
  /** Largest accepted response body; default 256 KiB. */
  maxBodyBytes?: number;
}

export type ReleaseChannel = "stable" | "beta";

const DEFAULT_TIMEOUT_MS = 15_000;
const DEFAULT_MAX_BODY = 256 * 1024;

/** The base URL as shown in messages: no credentials, no query, no fragment, no trailing slash. */
function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}

/** Removes anything URL-shaped with credentials from a transport error's text. */
function scrub(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, "$1").replace(/(https?:\/\/[^\s?#]*)[?#][^\s]*/gi, "$1");
}

function reasonOf(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return `timed out after ${timeoutMs} ms`;
  if (err instanceof Error) {
    const cause = err.cause;
    if (cause instanceof Error) {
      if (cause.name === "TimeoutError" || cause.name === "AbortError") return `timed out after ${timeoutMs} ms`;
      if (cause.message) return scrub(cause.message);
    }
    return scrub(err.message);
  }
  return scrub(String(err));
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class ParseError extends Error {}

function parseAsset(raw: unknown, where: string): ReleaseAsset {
  if (!isObject(raw)) throw new ParseError(`${where} is not an object`);
  const { name, browser_download_url: url, size } = raw;
  if (typeof name !== "string" || name === "") throw new ParseError(`${where}.name is not a non-empty string`);
  if (name === "." || name === ".." || /[/\\\u0000-\u001f]/.test(name)) throw new ParseError(`${where}.name ${JSON.stringify(name)} is not a plain file name`);
  if (typeof url !== "string") throw new ParseError(`${where}.browser_download_url is not a string`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ParseError(`${where}.browser_download_url is not a URL`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new ParseError(`${where}.browser_download_url is not an http(s) URL`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw new ParseError(`${where}.size is not a non-negative integer`);
  return { name, url, size };
}

/** One release object of the GitHub API. Throws ParseError naming the bad field. */
export function parseRelease(raw: unknown, where = "release"): Release {
  if (!isObject(raw)) throw new ParseError(`${where} is not an object`);
  const tag = raw.tag_name;
  if (typeof tag !== "string" || tag.trim() === "") throw new ParseError(`${where}.tag_name is missing or not a non-empty string`);
  const bool = (key: string): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== "boolean") throw new ParseError(`${where}.${key} is not a boolean`);
    return v;
  };
  const htmlUrl = raw.html_url;
  if (htmlUrl !== undefined && htmlUrl !== null && typeof htmlUrl !== "string") throw new ParseError(`${where}.html_url is not a string`);
  let publishedAt: Date | undefined;
  const published = raw.published_at;
  if (published !== undefined && published !== null) {
    if (typeof published !== "string" || Number.isNaN(Date.parse(published))) throw new ParseError(`${where}.published_at is not a date`);
    publishedAt = new Date(published);
  }
  const assetsRaw = raw.assets;
  if (assetsRaw !== undefined && assetsRaw !== null && !Array.isArray(assetsRaw)) throw new ParseError(`${where}.assets is not an array`);
  const assets = (assetsRaw ?? []).map((a, i) => parseAsset(a, `${where}.assets[${i}]`));
  const release: Release = {
    tag,
    version: tag.startsWith("v") ? tag.slice(1) : tag,
    prerelease: bool("prerelease"),
    draft: bool("draft"),
    htmlUrl: typeof htmlUrl === "string" ? htmlUrl : "",
    assets,
  };
  if (publishedAt) release.publishedAt = publishedAt;
  return release;
}

/** The asset of a release with exactly this name. */
export function assetUrl(release: Release, name: string): ReleaseAsset | undefined {
  return release.assets.find((a) => a.name === name);
}

/** The tag of a version: "1.2.3" and "v1.2.3" both give "v1.2.3". */
export function tagOf(version: string): string {
  return version.startsWith("v") ? version : `v${version}`;
}

export class ReleaseSource {
  readonly baseUrl: string;
  readonly #base: URL;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #maxBody: number;

  constructor(opts: ReleaseSourceOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      throw new TypeError("release source URL is not a valid URL");
    }
    if (base.protocol !== "https:" && base.protocol !== "http:") throw new TypeError(`release source URL must be http(s), got ${base.protocol}`);
    this.#headers = { Accept: "application/vnd.github+json", "User-Agent": opts.userAgent };
    // fetch refuses URLs with credentials: send them as Basic auth instead, never print them.
    const { url: bare, authorization } = splitCredentials(base);
    if (authorization) this.#headers.Authorization = authorization;
    base = bare;
    base.search = "";
    base.hash = "";
    base.pathname = base.pathname.replace(/\/+$/, "");
    this.#base = base;
    this.baseUrl = displayUrl(base);
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  }

  /** GET {base}/releases/latest. */
  async latest(): Promise<Release> {
    return parseOrThrow((json) => parseRelease(json), await this.#get("/releases/latest"));
  }

  /** GET {base}/releases/tags/v{X}; accepts "1.2.3" or "v1.2.3". */
  async byVersion(version: string): Promise<Release> {
    if (typeof version !== "string" || version === "" || version === "v") throw new ReleaseSourceError("not_found", "no version given");
    const tag = tagOf(version);
    const body = await this.#get(`/releases/tags/${encodeURIComponent(tag)}`, `release ${tag} not found at ${this.baseUrl}`);
    return parseOrThrow((json) => parseRelease(json), body);
  }

  /** GET {base}/releases?per_page=100 (the first page: the 100 newest releases). */
  async list(): Promise<Release[]> {
    const body = await this.#get("/releases?per_page=100");
    return parseOrThrow((json) => {
      if (!Array.isArray(json)) throw new ParseError("expected an array of releases");
      return json.map((r, i) => parseRelease(r, `releases[${i}]`));
    }, body);
  }

  /**
   * The highest semver release of a channel, from list(): drafts and tags that are not semver are
   * ignored; "stable" also skips pre-releases (flagged or with a pre-release version), "beta"
   * includes them.
   */
  async newest(channel: ReleaseChannel): Promise<Release> {
    const best = pickNewest(await this.list(), channel);
    if (!best) throw new ReleaseSourceError("not_found", `no release found on channel ${channel}`);
    return best;
  }

  async #get(path: string, notFound?: string): Promise<string> {
    const url = new URL(this.#base.href);
    const q = path.indexOf("?");
    url.pathname = `${this.#base.pathname}${q < 0 ? path : path.slice(0, q)}`;
    if (q >= 0) url.search = path.slice(q);
    let res: FetchResponse;
    try {
      res = await fetchThrough(url, { headers: this.#headers, redirect: "follow", signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (err) {
      const why = unreachable(err, url.host) ?? reasonOf(err, this.#timeoutMs);
      throw new ReleaseSourceError("unavailable", `failed to fetch release info: ${why}`, { cause: err });
    }
    const status = res.status;
    if (status < 200 || status > 299) {
      // Only a 403 needs its body (to tell a rate limit from a refusal).
      let text = "";
      if (status === 403) text = await readBody(res, this.#maxBody, this.#timeoutMs, "truncate").catch(() => "");
      else await res.body?.cancel().catch(() => undefined);
      throw classify(status, text, notFound);
    }
    const declared = Number(res.headers.get("content-length") ?? Number.NaN);
    if (Number.isFinite(declared) && declared > this.#maxBody) {
      await res.body?.cancel().catch(() => undefined);
      throw tooLarge(this.#maxBody);
    }
    return readBody(res, this.#maxBody, this.#timeoutMs, "throw");
  }
}

function tooLarge(cap: number): ReleaseSourceError {
  return new ReleaseSourceError("bad_response", `release JSON is larger than the ${formatLimit(cap)} limit`);
}

/** The body as UTF-8, at most `cap` bytes: past it, an error (never a silent truncation) unless truncating. */
async function readBody(res: FetchResponse, cap: number, timeoutMs: number, over: "truncate" | "throw"): Promise<string> {
  try {
    return await readCapped(res.body, cap, { over });
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw tooLarge(cap);
    throw new ReleaseSourceError("unavailable", `failed to read release JSON: ${reasonOf(err, timeoutMs)}`, { cause: err });
  }
}

function classify(status: number, body: string, notFound?: string): ReleaseSourceError {
  const msg = (reason: string) => `release source returned HTTP ${status} (${reason})`;
  if (status === 429) return new ReleaseSourceError("rate_limited", msg("rate limited"), { status });
  if (status === 403) {
    const lower = body.toLowerCase();
    if (lower.includes("rate limit") || lower.includes("secondary rate")) return new ReleaseSourceError("rate_limited", msg("rate limited"), { status });
    return new ReleaseSourceError("bad_response", msg("unexpected response"), { status });
  }
  if (status >= 500 && status <= 599) return new ReleaseSourceError("unavailable", msg("unexpected response"), { status });
  if (status === 404) return new ReleaseSourceError("not_found", notFound ?? msg("release not found"), { status });
  if (status === 401) return new ReleaseSourceError("auth", msg("authentication rejected"), { status });
  return new ReleaseSourceError("bad_response", msg("unexpected response"), { status });
}

function parseOrThrow<T>(parse: (json: unknown) => T, body: string): T {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new ReleaseSourceError("bad_response", `failed to parse release JSON: ${(err as Error).message}`);
  }
  try {
    return parse(json);
  } catch (err) {
    if (err instanceof ParseError) throw new ReleaseSourceError("bad_response", `failed to parse release JSON: ${err.message}`);
    throw err;
  }
}

/** A strict semver version as found in a tag after its "v": "1.2.3", "1.3.0-beta.1", "1.2.3+build". */
export function isSemver(version: string): boolean {
  return /^\d/.test(version) && version === version.trim() && semver.valid(version) !== null;
}

/** The highest valid-semver, non-draft release of a channel (see ReleaseSource.newest). */
export function pickNewest(releases: readonly Release[], channel: ReleaseChannel): Release | undefined {
  let best: Release | undefined;
  for (const r of releases) {
    if (r.draft || !isSemver(r.version)) continue;
    if (channel === "stable" && (r.prerelease || semver.prerelease(r.version) !== null)) continue;
    if (!best || semver.gt(r.version, best.version)) best = r;
  }
  return best;
}
