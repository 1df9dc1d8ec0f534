import { readFile } from "node:fs/promises";
import { checksumFor } from "./checksums.js";
import { executableAssetName } from "../executable-form.js";
import { runFailure, UpdateError } from "./errors.js";
import type { ReleaseForm } from "./install-layout.js";
import { expectedIdentity, type UpdateSettings } from "./settings.js";
import { sha256File, verifyBundle, type TrustedRootSource, type VerifiedSignature } from "./sigstore-bundle.js";

/** The files a release's artifact comes with: its Sigstore bundle, SHA256SUMS.txt and that file's bundle. */
export function releaseAssetsOf(artifact: string) {
  return { artifact, bundle: `${artifact}.bundle`, sums: "SHA256SUMS.txt", sumsBundle: "SHA256SUMS.txt.bundle" };
}

/** Asset names of the tarball form of a release of this project. */
export function releaseAssets(version: string) {
  return releaseAssetsOf(`carapace-${version}.tar.gz`);
}

/**
 * The artifact a managed install of `form` downloads for `version`: the tarball
 * `carapace-<v>.tar.gz`, or the platform executable for this host (`cara-x86_64-linux`, the
 * reference's naming). A host cara has no executable for is refused with its platform named.
 */
export function artifactFor(version: string, form: ReleaseForm, platform: string = process.platform, arch: string = process.arch): string {
  if (form === "tarball") return releaseAssets(version).artifact;
  const name = executableAssetName(platform, arch);
  if (!name)
    throw new UpdateError(
      "precondition",
      `cara has no platform executable for ${platform}/${arch}; use the tarball form (carapace-<version>.tar.gz) with the host's Node`,
      false,
    );
  return name;
}

export interface StagedRelease {
  version: string;
  assetName: string;
  /** SHA-256 of the staged artifact (hashed when it was downloaded). */
  sha256: string;
  bundle: string;
  sums: string;
  sumsBundle: string;
}

/**
 * The one verification path for release files (used by `cara update` and `cara install`):
 * the artifact's Sigstore bundle against its digest, SHA256SUMS.txt's bundle against its digest
 * (same exact identity and issuer, against `root`: see ./trust-root.ts), then the artifact's
 * SHA-256 cross-checked against SHA256SUMS.txt. Throws a non-retryable failure (phase verified).
 *
 * The updater accepts only the artifact's signature (a message-signature bundle, `cosign
 * sign-blob --bundle`) here and refuses a DSSE attestation in its place: the release's build
 * provenance (provenance.sigstore.json) is signed by the same workflow identity, so it would add
 * no authenticity, and older releases do not have it; operators check it with `cara update
 * verify` (which verifies it with the same identity, issuer and transparency-log rules).
 */
export async function verifyStagedRelease(staged: StagedRelease, settings: UpdateSettings, root: TrustedRootSource): Promise<VerifiedSignature> {
  const identity = expectedIdentity(settings, staged.version);
  const verify = async (bundlePath: string, digest: string, what: string) => {
    let bundle: Buffer;
    try {
      bundle = await readFile(bundlePath);
    } catch (err) {
      throw runFailure(`cannot read the staged ${what} bundle: ${(err as Error).message}`, true, "verified");
    }
    try {
      return await verifyBundle({ bundle, digest, identity: { exact: identity }, issuer: settings.issuer, trustedRoot: root });
    } catch (err) {
      throw runFailure(what === "artifact" ? (err as Error).message : `${what}: ${(err as Error).message}`, false, "verified");
    }
  };
  const signed = await verify(staged.bundle, staged.sha256, "artifact");
  await verify(staged.sumsBundle, await sha256File(staged.sums), "SHA256SUMS.txt");
  let listed: string;
  try {
    listed = checksumFor(await readFile(staged.sums, "utf8"), staged.assetName);
  } catch (err) {
    throw runFailure((err as Error).message, false, "verified");
  }
  if (listed !== staged.sha256)
    throw runFailure(`SHA-256 mismatch: SHA256SUMS.txt lists ${listed} for ${staged.assetName}, the artifact is ${staged.sha256}`, false, "verified");
  return signed;
}
