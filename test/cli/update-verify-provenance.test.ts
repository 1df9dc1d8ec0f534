/**
 * `cara update verify` with build provenance: a DSSE in-toto bundle signed and logged by the test
 * Sigstore (test/update/sigstore-kit.ts), verified through the real CLI with that trusted root;
 * the builder, source repository and ref are shown (human and --json); refusals exit 1.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "../helpers/cli.js";
import { createTestTrustRoot, slsaStatement, TEST_ISSUER } from "../update/sigstore-kit.js";

const REPO = "https://github.com/o/r";
const REF = "refs/tags/v1.0.0";
const RUNNER = "https://github.com/actions/runner/github-hosted";
const IDENTITY = `${REPO}/.github/workflows/release.yml@${REF}`;
const BYTES = "cara-x86_64-linux bytes\n";
const digest = createHash("sha256").update(BYTES).digest("hex");

let dir: string;
let root: string;
let artifact: string;
let provenance: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "cara-verify-provenance-"));
  const kit = await createTestTrustRoot();
  root = join(dir, "trusted_root.json");
  await kit.writeTo(root);
  artifact = join(dir, "cara-x86_64-linux");
  await writeFile(artifact, BYTES);
  provenance = join(dir, "provenance.sigstore.json");
  const statement = slsaStatement({ subjects: [{ name: "cara-x86_64-linux", sha256: digest }], repository: REPO, ref: REF });
  await writeFile(provenance, await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER }));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const args = (...extra: string[]) => [
  "update",
  "verify",
  artifact,
  "--bundle",
  provenance,
  "--certificate-identity",
  IDENTITY,
  "--certificate-oidc-issuer",
  TEST_ISSUER,
  "--trusted-root",
  root,
  ...extra,
];

test("cara update verify: a provenance bundle verifies the artifact and shows builder, source repository and ref", async () => {
  const json = await runCli(args("--json"));
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual(doc.provenance, {
    predicateType: "https://slsa.dev/provenance/v1",
    subject: "cara-x86_64-linux",
    builderId: RUNNER,
    buildType: "https://actions.github.io/buildtypes/workflow/v1",
    sourceRepository: REPO,
    sourceRef: REF,
    workflowPath: ".github/workflows/release.yml",
  });
  assert.deepEqual([doc.verified, doc.digest, doc.identity, doc.issuer, doc.trustedRoot], [true, digest, IDENTITY, TEST_ISSUER, root]);

  const human = await runCli(args());
  assert.deepEqual([human.code, human.stderr], [0, ""]);
  assert.equal(
    human.stdout,
    [
      "Verified OK",
      `  Artifact SHA-256:  ${digest}`,
      `  Identity:          ${IDENTITY}`,
      `  Issuer:            ${TEST_ISSUER}`,
      "  Provenance:        https://slsa.dev/provenance/v1 (subject cara-x86_64-linux)",
      `  Builder:           ${RUNNER}`,
      `  Source repository: ${REPO}`,
      `  Source ref:        ${REF}`,
      `  Transparency log:  index ${doc.logIndex} at ${doc.integratedTime}`,
      `  Trusted root:      ${root}`,
      "",
    ].join("\n"),
  );
});

test("cara update verify: provenance of another artifact, or of a predicate type not allowed, fails (exit 1)", async () => {
  const other = join(dir, "other");
  await writeFile(other, "other bytes\n");
  const otherDigest = createHash("sha256").update("other bytes\n").digest("hex");
  const wrong = await runCli(args().map((a) => (a === artifact ? other : a)));
  assert.deepEqual([wrong.code, wrong.stdout], [1, ""]);
  assert.equal(
    wrong.stderr,
    `Verification failed: bundle verification failed: no subject of the attestation has the artifact's SHA-256 (artifact sha256:${otherDigest}; subjects: cara-x86_64-linux sha256:${digest})\n`,
  );

  const notAllowed = await runCli(args("--predicate-type", "https://example.com/other/v1"));
  assert.deepEqual([notAllowed.code, notAllowed.stdout], [1, ""]);
  assert.equal(
    notAllowed.stderr,
    "Verification failed: bundle verification failed: the attestation's predicate type 'https://slsa.dev/provenance/v1' is not allowed (allowed: https://example.com/other/v1)\n",
  );

  const usage = await runCli(args("--predicate-type", "slsa provenance"));
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--predicate-type 'slsa provenance' is not a URI \(e\.g\. https:\/\/slsa\.dev\/provenance\/v1\)/);
});
