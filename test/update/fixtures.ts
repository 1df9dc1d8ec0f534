import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as tar from "tar";
import type { FakeAsset, FakeRelease } from "../helpers/release-server.js";
import { TEST_ISSUER, type TestTamper, type TestTrustRoot } from "./sigstore-kit.js";

export const TEST_REPO = "test/cara";
export const identityFor = (version: string, repo = TEST_REPO) => `https://github.com/${repo}/.github/workflows/release.yml@refs/tags/v${version}`;

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/**
 * A tiny release artifact with the real layout (`carapace-<v>/package.json`, `bin/cara.js`), for
 * manager-level tests that never run it. `extra` adds files (e.g. a big one for download tests).
 */
export async function buildFakeArtifact(dir: string, version: string, extra: Record<string, string | Buffer> = {}): Promise<string> {
  const root = join(dir, `src-${version}`);
  const top = `carapace-${version}`;
  await mkdir(join(root, top, "bin"), { recursive: true });
  await writeFile(join(root, top, "package.json"), JSON.stringify({ name: "carapace-cara", version, type: "module" }));
  await writeFile(join(root, top, "bin", "cara.js"), `console.log("cara ${version}");\n`);
  for (const [name, body] of Object.entries(extra)) {
    await mkdir(join(root, top, name, ".."), { recursive: true });
    await writeFile(join(root, top, name), body);
  }
  const out = join(dir, `carapace-${version}.tar.gz`);
  await tar.c({ gzip: true, file: out, cwd: root, portable: true }, [top]);
  return out;
}

export interface SignedReleaseOptions {
  /** Identity put in the certificates (default: the right one for the version). */
  identity?: string;
  issuer?: string;
  /** Tamper the artifact's bundle. */
  tamper?: TestTamper;
  /** Serve these bytes as the artifact instead of the signed file (modified artifact). */
  servedArtifact?: Buffer;
  /** Bytes of the artifact bundle as served (truncated, malformed...). */
  bundleBytes?: Buffer | string;
  /** Leave these assets out of the release. */
  omit?: string[];
  /** SHA256SUMS.txt content to sign and serve (default: the right line). */
  sums?: string;
  prerelease?: boolean;
  /** The artifact's asset name (default the tarball's, `carapace-<v>.tar.gz`; e.g. `cara-x86_64-linux`). */
  assetName?: string;
  /** More signed artifacts of the same release, listed in the same SHA256SUMS.txt (e.g. the tarball beside an executable). */
  more?: { name: string; path: string }[];
}

/** A release of `artifact` signed by the test trust root, as the release server serves it. */
export async function signedRelease(kit: TestTrustRoot, artifactPath: string, version: string, o: SignedReleaseOptions = {}): Promise<FakeRelease> {
  const artifact = await readFile(artifactPath);
  const name = o.assetName ?? `carapace-${version}.tar.gz`;
  const identity = o.identity ?? identityFor(version);
  const issuer = o.issuer ?? TEST_ISSUER;
  const bundle = o.bundleBytes ?? Buffer.from(await kit.sign({ digest: sha256(artifact) }, { identity, issuer, ...(o.tamper ? { tamper: o.tamper } : {}) }));
  const more = await Promise.all((o.more ?? []).map(async (m) => ({ name: m.name, body: await readFile(m.path) })));
  const sums = o.sums ?? [{ name, body: artifact }, ...more].map((a) => `${sha256(a.body)}  ${a.name}\n`).join("");
  const sumsBundle = Buffer.from(await kit.sign({ digest: sha256(Buffer.from(sums)) }, { identity, issuer }));
  const assets: FakeAsset[] = [
    { name, body: o.servedArtifact ?? artifact },
    { name: `${name}.bundle`, body: bundle },
    ...(
      await Promise.all(
        more.map(async (m) => [
          { name: m.name, body: m.body },
          { name: `${m.name}.bundle`, body: Buffer.from(await kit.sign({ digest: sha256(m.body) }, { identity, issuer })) },
        ]),
      )
    ).flat(),
    { name: "SHA256SUMS.txt", body: sums },
    { name: "SHA256SUMS.txt.bundle", body: sumsBundle },
  ];
  return { tag: `v${version}`, ...(o.prerelease ? { prerelease: true } : {}), assets: assets.filter((a) => !(o.omit ?? []).includes(a.name)) };
}
