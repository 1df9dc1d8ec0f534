/**
 * The updater's verification (src/update/verify-staged-release.ts) wants the artifact's signature:
 * a build provenance bundle in its place is refused, even one the same workflow signed and
 * logged that names the artifact (operators check provenance with `cara update verify`).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { UpdateError } from "../../src/update/errors.js";
import { resolveUpdateSettings } from "../../src/update/settings.js";
import type { TrustedRootSource } from "../../src/update/sigstore-bundle.js";
import { releaseAssets, verifyStagedRelease, type StagedRelease } from "../../src/update/verify-staged-release.js";
import { createTestTrustRoot, slsaStatement, TEST_ISSUER, type TestTrustRoot } from "./sigstore-kit.js";

const VERSION = "1.0.0";
const IDENTITY = `https://github.com/o/r/.github/workflows/release.yml@refs/tags/v${VERSION}`;
const settings = resolveUpdateSettings({ update: { repository: "o/r" } });
const names = releaseAssets(VERSION);
const ARTIFACT = "carapace release bytes\n";
const digest = createHash("sha256").update(ARTIFACT).digest("hex");

let kit: TestTrustRoot;
let root: TrustedRootSource;
let dir: string;
let staged: StagedRelease;

before(async () => {
  kit = await createTestTrustRoot();
  root = { path: "<test root>", json: kit.trustedRootJson };
  dir = await mkdtemp(join(tmpdir(), "cara-staged-"));
  const sums = `${digest}  ${names.artifact}\n`;
  const sumsDigest = createHash("sha256").update(sums).digest("hex");
  staged = {
    version: VERSION,
    assetName: names.artifact,
    sha256: digest,
    bundle: join(dir, names.bundle),
    sums: join(dir, names.sums),
    sumsBundle: join(dir, names.sumsBundle),
  };
  await writeFile(staged.sums, sums);
  await writeFile(staged.sumsBundle, await kit.sign({ digest: sumsDigest }, { identity: IDENTITY, issuer: TEST_ISSUER }));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("the artifact's signature verifies (the identity is the release workflow of the version's tag)", async () => {
  await writeFile(staged.bundle, await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER }));
  assert.equal((await verifyStagedRelease(staged, settings, root)).identity, IDENTITY);
});

test("build provenance in place of the artifact's signature is refused, naming what to use", async () => {
  const statement = slsaStatement({ subjects: [{ name: names.artifact, sha256: digest }], repository: "https://github.com/o/r", ref: `refs/tags/v${VERSION}` });
  await writeFile(staged.bundle, await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER }));
  await assert.rejects(verifyStagedRelease(staged, settings, root), (err: unknown) => {
    assert.ok(err instanceof UpdateError);
    assert.deepEqual(
      [err.kind, err.retryable, err.phase, err.message],
      [
        "precondition",
        false,
        "verified",
        "bundle parse failed: a DSSE bundle (attestation) is not accepted as the artifact's signature; expected a message-signature bundle (cosign sign-blob --bundle). Check build provenance with `cara update verify`",
      ],
    );
    return true;
  });
});
