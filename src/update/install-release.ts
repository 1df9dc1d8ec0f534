import { existsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { DownloadError, downloadFile } from "./download.js";
import { UpdateError } from "./errors.js";
import { ensureExecutableLayout, ensureLayout, installForm, stageExecutable, switchCurrent, unpackRelease, type ReleaseForm } from "./install-layout.js";
import { artifactFor, releaseAssetsOf, verifyStagedRelease } from "./verify-staged-release.js";
import { refreshFailureNote, resolveTrustedRoot, type ResolvedTrustedRoot, type TrustedRootOrigin } from "./trust-root.js";
import { ReleaseSource, ReleaseSourceError, type Release } from "./releases.js";
import type { UpdateSettings } from "./settings.js";
import { normalizeVersion, parseChannel } from "./release-versions.js";

export interface InstallRequest {
  installDir: string;
  version?: string;
  channel?: string;
  settings: UpdateSettings;
  userAgent: string;
  /** The release form to install: the tarball (run by the host's Node) or this host's platform executable. */
  form: ReleaseForm;
  onProgress?: (message: string, done?: number, total?: number) => void;
}

export interface InstallResult {
  version: string;
  form: ReleaseForm;
  /** The release asset that was installed (`carapace-<v>.tar.gz`, `cara-x86_64-linux`). */
  asset: string;
  installDir: string;
  installPath: string;
  launcher: string;
  sha256: string;
  signingIdentity: string;
  previous?: string;
  /** Which trusted root verified the release, and why a TUF refresh failed when it did. */
  trustedRoot: TrustedRootOrigin;
  trustRefreshError?: string;
}

/**
 * `cara install --dir DIR`: creates (or adds a version to) a managed install from a verified
 * release, through the same download and verification path as `cara update`.
 */
export async function installRelease(req: InstallRequest): Promise<InstallResult> {
  const installDir = resolve(req.installDir);
  if (existsSync(installDir)) {
    const entries = await readdir(installDir);
    if (entries.length > 0 && !entries.includes("versions")) {
      throw new UpdateError("precondition", `${installDir} is not empty and is not a cara install (no versions/); pick an empty or new directory`, false);
    }
    // One form per install: its launcher runs either scripts with the host's Node or executables.
    const existing = await installForm(installDir);
    if (existing && existing !== req.form)
      throw new UpdateError(
        "precondition",
        `${installDir} is an install of the ${existing} form, and this would add the ${req.form} form; install into another directory (or pass --form ${existing})`,
        false,
      );
  }
  const source = new ReleaseSource({ baseUrl: req.settings.releasesUrl, userAgent: req.userAgent });
  let release: Release;
  try {
    release = req.version ? await source.byVersion(normalizeVersion(req.version)) : await source.newest(parseChannel(req.channel ?? req.settings.channel));
  } catch (err) {
    if (err instanceof ReleaseSourceError)
      throw new UpdateError(err.kind === "not_found" ? "not_found" : err.retryable ? "unavailable" : "precondition", err.message, err.retryable);
    throw err;
  }
  const version = normalizeVersion(release.version);
  if (req.version && version !== normalizeVersion(req.version))
    throw new UpdateError("precondition", `release source answered ${release.tag} when asked for v${normalizeVersion(req.version)}; refusing it`, false);
  const names = releaseAssetsOf(artifactFor(version, req.form));
  const downloads = join(installDir, ".downloads");
  await mkdir(downloads, { recursive: true, mode: 0o700 });
  const paths: Record<string, string> = {};
  let sha256 = "";
  // Every asset is checked before anything is downloaded (an executable is ~100 MB).
  for (const name of [names.artifact, names.bundle, names.sums, names.sumsBundle]) {
    if (!release.assets.some((a) => a.name === name)) {
      const what = req.form === "executable" && name === names.artifact ? ", the platform executable for this host" : "";
      throw new UpdateError(
        "not_found",
        `release ${release.tag} has no asset '${name}'${what} (available: ${release.assets.map((a) => a.name).join(", ") || "none"}); nothing was installed`,
        false,
      );
    }
  }
  for (const name of [names.artifact, names.bundle, names.sums, names.sumsBundle]) {
    const asset = release.assets.find((a) => a.name === name)!;
    const dest = join(downloads, name === names.sums || name === names.sumsBundle ? name.replace("SHA256SUMS", `SHA256SUMS-${version}`) : name);
    try {
      const r = await downloadFile({
        url: asset.url,
        dest,
        ...(asset.size > 0 ? { expectedSize: asset.size } : {}),
        userAgent: req.userAgent,
        onProgress: (done, total) => req.onProgress?.(`downloading ${name}`, done, total),
      });
      if (name === names.artifact) sha256 = r.sha256;
    } catch (err) {
      throw new UpdateError(
        err instanceof DownloadError && !err.retryable ? "precondition" : "unavailable",
        (err as Error).message,
        err instanceof DownloadError ? err.retryable : true,
      );
    }
    paths[name] = dest;
  }
  if (req.settings.tuf?.refresh) req.onProgress?.("refreshing the Sigstore trusted root through TUF");
  let signed;
  let root: ResolvedTrustedRoot | undefined;
  try {
    // The TUF cache and the refreshed root live in .downloads, removed with it: the installed
    // server refreshes into its own state dir before its first update.
    root = await resolveTrustedRoot(req.settings, downloads, { refresh: true });
    if (root.refresh?.ok === false) req.onProgress?.(`could not refresh the trusted root through TUF (${root.refresh.reason}); using the ${root.origin} one`);
    req.onProgress?.(`verifying the Sigstore bundles and SHA256SUMS.txt (${root.origin} trusted root)`);
    signed = await verifyStagedRelease(
      { version, assetName: names.artifact, sha256, bundle: paths[names.bundle]!, sums: paths[names.sums]!, sumsBundle: paths[names.sumsBundle]! },
      req.settings,
      root.source,
    );
  } catch (err) {
    await rm(downloads, { recursive: true, force: true });
    throw new UpdateError("precondition", `${(err as Error).message}${root ? refreshFailureNote(root) : ""}; nothing was installed`, false);
  }
  const into = join(installDir, "versions", version);
  let unpacked: { path: string };
  if (req.form === "executable") {
    req.onProgress?.(`installing ${names.artifact} into ${into}`);
    unpacked = await stageExecutable(paths[names.artifact]!, installDir, version, sha256);
    await ensureExecutableLayout(installDir, version, { replaceUnknown: true });
  } else {
    req.onProgress?.(`unpacking into ${into}`);
    unpacked = await unpackRelease(paths[names.artifact]!, installDir, version, sha256);
    await ensureLayout(installDir);
  }
  const switched = await switchCurrent(installDir, version);
  await rm(downloads, { recursive: true, force: true });
  return {
    version,
    form: req.form,
    asset: names.artifact,
    installDir,
    installPath: unpacked.path,
    launcher: join(installDir, "bin", "cara"),
    sha256,
    signingIdentity: signed.identity,
    ...(switched.from && switched.from !== version ? { previous: switched.from } : {}),
    trustedRoot: root.origin,
    ...(root.refresh?.ok === false ? { trustRefreshError: root.refresh.reason } : {}),
  };
}
