/**
 * Which Sigstore trusted root verifies a release, and keeping it current.
 *
 * Order: `update.trustedRoot` from config (the operator's own root; never refreshed), else the
 * root last fetched through TUF from the configured mirror and root of trust, else the root pinned
 * with cara (assets/sigstore/trusted_root.json). Verification itself never needs the network.
 *
 * Everything TUF lives in `<state>/updates/tuf/<host>-<key>/`, the key being a digest of the
 * mirror URL and its root of trust (the @sigstore/tuf seed or `update.tufRoot`'s bytes): a root
 * fetched from one mirror or anchor is never used under another configuration.
 * `trusted_root.json` there is the refreshed root; `metadata/` is the TUF client's cache.
 *
 * Refresh (before an update is verified, best effort, bounded by a timeout): @sigstore/tuf walks
 * the TUF root chain from its seed (or `update.tufRoot`) and the cached metadata, checks the
 * timestamp -> snapshot -> targets signatures,
 * versions and expiry, and downloads trusted_root.json by the length and hashes that targets
 * lists. Only then is the document checked as a trusted root and written with the durable
 * helper. A refresh that fails for any reason changes nothing: verification goes on with the
 * previous root and the reason is reported. Sigstore rotates keys by adding them to the root
 * (old keys keep their validity windows), so the refreshed root also verifies older releases.
 * Refreshes of one directory never overlap (one that timed out is waited for by the next).
 * With `update.trustRefresh: false` a root refreshed earlier for the same mirror and anchor is
 * still used; nothing is fetched.
 */
import { createHash } from "node:crypto";
import { access, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ensurePrivateDir, writeFileDurable } from "../state/durable.js";
import type { UpdateSettings } from "./settings.js";
import { checkTrustedRoot, defaultTrustedRootPath, loadTrustedRoot, type TrustedRootSource } from "./sigstore-bundle.js";

export const DEFAULT_TUF_MIRROR = "https://tuf-repo-cdn.sigstore.dev";
const TRUSTED_ROOT_TARGET = "trusted_root.json";

export type TrustedRootOrigin = "configured" | "refreshed" | "pinned";

export type RefreshResult = { ok: true; changed: boolean } | { ok: false; reason: string };

export interface ResolvedTrustedRoot {
  source: TrustedRootSource;
  origin: TrustedRootOrigin;
  /** Set when a refresh was attempted for this resolution. */
  refresh?: RefreshResult;
}

export interface TufSettings {
  mirrorUrl: string;
  /** Initial root.json of the mirror; undefined → the seed shipped in @sigstore/tuf (public-good only). */
  initialRootPath?: string;
  /** Per request to the mirror; the whole refresh gets three times this. */
  timeoutMs: number;
  /** Whether to refresh before verifying (update.trustRefresh). */
  refresh: boolean;
}

/** `updates/tuf/<host>-<key>`: the TUF directory of one mirror and root of trust. */
export async function tufDir(updatesDir: string, tuf: TufSettings): Promise<string> {
  let anchor = "seed";
  if (tuf.initialRootPath !== undefined) {
    const bytes = await readFile(tuf.initialRootPath).catch(() => undefined);
    anchor = bytes ? createHash("sha256").update(bytes).digest("hex") : `unreadable ${tuf.initialRootPath}`;
  }
  let host = "mirror";
  try {
    host = new URL(tuf.mirrorUrl).host.replace(/[^A-Za-z0-9.-]/g, "_");
  } catch {
    // keep the generic name; the refresh reports the bad URL
  }
  const key = createHash("sha256").update(`${tuf.mirrorUrl}\n${anchor}`).digest("hex").slice(0, 16);
  return join(updatesDir, "tuf", `${host}-${key}`);
}

/** Where the refreshed trusted root of a TUF directory is kept. */
export function refreshedRootPath(dir: string): string {
  return join(dir, TRUSTED_ROOT_TARGET);
}

// @sigstore/tuf wraps tuf-js errors in a TUFError whose own message can be unhelpful
// ("error downloading target undefined"); the code and the cause say what went wrong.
const TUF_STEPS: Record<string, string> = {
  TUF_INIT_CACHE_ERROR: "cannot initialize the TUF cache",
  TUF_REFRESH_METADATA_ERROR: "refreshing the TUF metadata failed",
  TUF_FIND_TARGET_ERROR: `the TUF repository lists no ${TRUSTED_ROOT_TARGET}`,
  TUF_DOWNLOAD_TARGET_ERROR: `downloading ${TRUSTED_ROOT_TARGET} failed`,
  TUF_READ_TARGET_ERROR: `cannot read the cached ${TRUSTED_ROOT_TARGET}`,
};

function reasonOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const step = TUF_STEPS[(err as { code?: string }).code ?? ""];
  const cause = (err as { cause?: unknown }).cause;
  if (step !== undefined) return cause instanceof Error ? `${step}: ${reasonOf(cause)}` : step;
  return cause instanceof Error && cause.message && !err.message.includes(cause.message) ? `${err.message}: ${reasonOf(cause)}` : err.message;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Per TUF directory, the last refresh queued: resolves when its TUF work has ended (even after its caller gave up waiting). */
const inflight = new Map<string, Promise<void>>();

/**
 * Fetches the current trusted root through TUF (metadata cached in `<dir>/metadata`) and, when
 * it is a usable trusted root, stores it at `<dir>/trusted_root.json` with the durable helper.
 * Never throws.
 */
export async function refreshTrustedRoot(o: Omit<TufSettings, "refresh"> & { dir: string }): Promise<RefreshResult> {
  const cacheDir = join(o.dir, "metadata");
  const dest = refreshedRootPath(o.dir);
  // Queue behind the previous refresh of this directory, in call order (registered before any await).
  const previous = inflight.get(o.dir);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  inflight.set(o.dir, gate);
  void gate.then(() => {
    if (inflight.get(o.dir) === gate) inflight.delete(o.dir);
  });
  let work: Promise<string> | undefined;
  try {
    if (o.initialRootPath === undefined && o.mirrorUrl !== DEFAULT_TUF_MIRROR) {
      throw new Error(`update.tufMirror ${o.mirrorUrl} needs update.tufRoot (that repository's initial root.json)`);
    }
    await ensurePrivateDir(dirname(o.dir));
    await ensurePrivateDir(o.dir);
    await ensurePrivateDir(cacheDir);
    if (previous !== undefined) await withTimeout(previous, o.timeoutMs * 3, "the previous TUF refresh");
    work = (async () => {
      const { initTUF } = await import("@sigstore/tuf");
      const client = await initTUF({
        mirrorURL: o.mirrorUrl,
        cachePath: cacheDir,
        ...(o.initialRootPath !== undefined ? { rootPath: o.initialRootPath } : {}),
        timeout: o.timeoutMs,
        retry: { retries: 1 },
      }).catch((err: unknown) => {
        // initTUF's refresh throws tuf-js errors unwrapped.
        if (String((err as { code?: unknown }).code).startsWith("TUF_")) throw err;
        throw Object.assign(new Error("TUF refresh", { cause: err }), { code: "TUF_REFRESH_METADATA_ERROR" });
      });
      return client.getTarget(TRUSTED_ROOT_TARGET);
    })();
    const text = await withTimeout(work, o.timeoutMs * 3, "the TUF refresh");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`the ${TRUSTED_ROOT_TARGET} served by TUF is not JSON (${reasonOf(err)})`);
    }
    await checkTrustedRoot({ path: `${o.mirrorUrl}/targets/${TRUSTED_ROOT_TARGET}`, json });
    const stored = await readFile(dest, "utf8").catch(() => undefined);
    if (stored === text) return { ok: true, changed: false };
    await writeFileDurable(dest, text);
    return { ok: true, changed: true };
  } catch (err) {
    const code = (err as { code?: string }).code;
    // Local metadata that no longer loads keeps failing until the cache is gone.
    const hint = code === "TUF_INIT_CACHE_ERROR" || err instanceof SyntaxError ? ` (remove ${cacheDir} to start again from the root of trust)` : "";
    // Fetch errors quote URLs; a mirror URL may carry credentials.
    return { ok: false, reason: `${reasonOf(err)}${hint}`.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi, "$1") };
  } finally {
    // The next refresh of this directory starts once this one has stored its root, or, when this
    // caller stopped waiting, once its TUF work has ended.
    void (work ?? Promise.resolve()).then(release, release);
  }
}

/** Where the next verification's root comes from, without reading or refreshing it (for status). */
export async function trustedRootLocation(
  settings: UpdateSettings,
  updatesDir: string,
): Promise<{ origin: TrustedRootOrigin; path: string; refreshedAtMs?: number }> {
  if (settings.trustedRootPath !== undefined) return { origin: "configured", path: settings.trustedRootPath };
  if (settings.tuf !== undefined) {
    const dest = refreshedRootPath(await tufDir(updatesDir, settings.tuf));
    const st = await stat(dest).catch(() => undefined);
    if (st) return { origin: "refreshed", path: dest, refreshedAtMs: Math.floor(st.mtimeMs) };
  }
  return { origin: "pinned", path: defaultTrustedRootPath() };
}

/**
 * The trusted root to verify with (see the module comment). With `refresh` (and
 * update.trustRefresh on), a TUF refresh is tried first. A configured or refreshed root that
 * cannot be read or is not a usable trusted root fails closed (the error names the file); only a
 * missing refreshed root falls back to the pinned one.
 */
export async function resolveTrustedRoot(settings: UpdateSettings, updatesDir: string, opts: { refresh: boolean }): Promise<ResolvedTrustedRoot> {
  if (settings.trustedRootPath !== undefined) return { source: await loadTrustedRoot(settings.trustedRootPath), origin: "configured" };
  const pinned = async (refresh?: RefreshResult): Promise<ResolvedTrustedRoot> => ({
    source: await loadTrustedRoot(defaultTrustedRootPath()),
    origin: "pinned",
    ...(refresh ? { refresh } : {}),
  });
  if (settings.tuf === undefined) return pinned();
  const dir = await tufDir(updatesDir, settings.tuf);
  const refresh = opts.refresh && settings.tuf.refresh ? await refreshTrustedRoot({ ...settings.tuf, dir }) : undefined;
  const dest = refreshedRootPath(dir);
  const present = await access(dest).then(
    () => true,
    (err: NodeJS.ErrnoException) => err.code !== "ENOENT",
  );
  if (!present) return pinned(refresh);
  try {
    return { source: await loadTrustedRoot(dest), origin: "refreshed", ...(refresh ? { refresh } : {}) };
  } catch (err) {
    throw new Error(`${(err as Error).message}; remove ${dest} to verify with the root pinned with cara (a later TUF refresh writes it again)`, { cause: err });
  }
}

/** What to add to a verification failure when the TUF refresh before it failed (the likely cause after a key rotation). */
export function refreshFailureNote(root: ResolvedTrustedRoot): string {
  return root.refresh?.ok === false ? ` (verified against the ${root.origin} trusted root; the TUF refresh before it failed: ${root.refresh.reason})` : "";
}
