/**
 * Build provenance (an in-toto statement in a DSSE bundle, as GitHub artifact attestations make it)
 * verified by the production verifier (src/update/sigstore-bundle.ts + provenance-statement.ts)
 * against bundles the test Sigstore (./sigstore-kit.ts) signs and logs for real: accepted with the
 * same identity, issuer and transparency-log rules as a signature; each refusal exact. And a real
 * GitHub artifact attestation (public-good Sigstore) against the pinned trusted root.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadTrustedRoot, UpdateVerificationError, verifyBundle, type TrustedRootSource, type VerifyBundleInput } from "../../src/update/sigstore-bundle.js";
import { createTestTrustRoot, slsaStatement, TEST_ISSUER, type TestTamper, type TestTrustRoot } from "./sigstore-kit.js";

const REPO = "https://github.com/o/r";
const REF = "refs/tags/v1.0.0";
const RUNNER = "https://github.com/actions/runner/github-hosted";
const IDENTITY = `${REPO}/.github/workflows/release.yml@${REF}`;
const SLSA = "https://slsa.dev/provenance/v1";
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const digest = sha("cara-x86_64-linux bytes\n");
const otherDigest = sha("carapace-1.0.0.tar.gz bytes\n");
const statement = slsaStatement({
  subjects: [
    { name: "carapace-1.0.0.tar.gz", sha256: otherDigest },
    { name: "cara-x86_64-linux", sha256: digest },
  ],
  repository: REPO,
  ref: REF,
});

let kit: TestTrustRoot;
let trustedRoot: TrustedRootSource;

before(async () => {
  kit = await createTestTrustRoot();
  trustedRoot = { path: "<test root>", json: kit.trustedRootJson };
});

const verify = (bundle: Uint8Array, over: Partial<VerifyBundleInput> = {}) =>
  verifyBundle({ bundle, digest, identity: { exact: IDENTITY }, issuer: TEST_ISSUER, trustedRoot, attestation: { predicateTypes: [SLSA] }, ...over });

/** The refusal of fn: an UpdateVerificationError with exactly this kind, code and message. */
async function refusedWith(fn: () => Promise<unknown>, kind: UpdateVerificationError["kind"], code: string, message: string): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof UpdateVerificationError, String(err));
    assert.deepEqual([err.kind, err.code, err.message], [kind, code, message]);
    return true;
  });
}

const VERIFY = "bundle verification failed: ";

describe("provenance bundles (in-toto DSSE)", () => {
  test("a SLSA provenance v1 bundle naming the artifact verifies, and says who built it from what", async () => {
    const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const r = await verify(bundle);
    const { logIndex, integratedTime, ...rest } = r;
    assert.deepEqual(rest, {
      identity: IDENTITY,
      issuer: TEST_ISSUER,
      digest,
      tlogEntries: 1,
      timestamps: 1,
      provenance: {
        predicateType: SLSA,
        subject: "cara-x86_64-linux",
        builderId: RUNNER,
        buildType: "https://actions.github.io/buildtypes/workflow/v1",
        sourceRepository: REPO,
        sourceRef: REF,
        workflowPath: ".github/workflows/release.yml",
      },
    });
    assert.match(logIndex ?? "", /^\d+$/);
    assert.ok(Math.abs(Date.parse(integratedTime ?? "") - Date.now()) < 120_000);
    // The other subject of the same statement verifies for its own digest.
    assert.equal((await verify(bundle, { digest: otherDigest })).provenance?.subject, "carapace-1.0.0.tar.gz");
  });

  test("an intoto 0.0.2 log entry (older Rekor entries of attestations) verifies too", async () => {
    const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER, logKind: "intoto" });
    assert.equal((await verify(bundle)).provenance?.builderId, RUNNER);
  });

  test("an attestation logged as a hashedrekord entry is refused", async () => {
    const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER, logKind: "hashedrekord" });
    await refusedWith(
      () => verify(bundle),
      "bundle_verify",
      "TLOG_BODY_ERROR",
      `${VERIFY}transparency-log entry of kind 'hashedrekord 0.0.1' is not accepted for an attestation (expected dsse 0.0.1 or intoto 0.0.2)`,
    );
  });

  test("without an attestation policy (the updater), a DSSE bundle is refused as the artifact's signature", async () => {
    const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const { attestation: _, ...withoutPolicy } = { bundle, digest, identity: { exact: IDENTITY }, issuer: TEST_ISSUER, trustedRoot, attestation: undefined };
    await refusedWith(
      () => verifyBundle(withoutPolicy),
      "bundle_parse",
      "BUNDLE_DSSE",
      "bundle parse failed: a DSSE bundle (attestation) is not accepted as the artifact's signature; expected a message-signature bundle (cosign sign-blob --bundle). Check build provenance with `cara update verify`",
    );
  });

  test("no subject with the artifact's digest: refused naming the artifact's digest and every subject's", async () => {
    const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const stranger = sha("something else");
    await refusedWith(
      () => verify(bundle, { digest: stranger }),
      "bundle_verify",
      "SUBJECT_DIGEST_MISMATCH",
      `${VERIFY}no subject of the attestation has the artifact's SHA-256 (artifact sha256:${stranger}; subjects: carapace-1.0.0.tar.gz sha256:${otherDigest}, cara-x86_64-linux sha256:${digest})`,
    );
  });

  test("a predicate type that is not allowed is refused naming it and the allowed ones; an allowed list accepts it", async () => {
    const vsa = { ...statement, predicateType: "https://slsa.dev/verification_summary/v1" };
    const bundle = await kit.attest({ payload: vsa }, { identity: IDENTITY, issuer: TEST_ISSUER });
    await refusedWith(
      () => verify(bundle),
      "bundle_verify",
      "PREDICATE_TYPE_NOT_ALLOWED",
      `${VERIFY}the attestation's predicate type 'https://slsa.dev/verification_summary/v1' is not allowed (allowed: https://slsa.dev/provenance/v1)`,
    );
    const r = await verify(bundle, { attestation: { predicateTypes: [SLSA, "https://slsa.dev/verification_summary/v1"] } });
    // Only SLSA provenance is read for a builder and a source.
    assert.deepEqual(r.provenance, { predicateType: "https://slsa.dev/verification_summary/v1", subject: "cara-x86_64-linux" });
  });

  test("a payload type other than in-toto's is refused naming it", async () => {
    const bundle = await kit.attest({ payload: statement, payloadType: "application/json" }, { identity: IDENTITY, issuer: TEST_ISSUER });
    await refusedWith(
      () => verify(bundle),
      "bundle_verify",
      "DSSE_PAYLOAD_TYPE",
      `${VERIFY}the DSSE payload type 'application/json' is not accepted (expected application/vnd.in-toto+json, an in-toto statement)`,
    );
  });

  const unparseable: [string, unknown, string][] = [
    ["a payload that is not JSON", Buffer.from("not json"), "the payload is not UTF-8 JSON (Unexpected token 'o', \"not json\" is not valid JSON)"],
    ["a JSON array", [], "the payload is not a JSON object"],
    [
      "an in-toto v0.1 statement",
      { ...statement, _type: "https://in-toto.io/Statement/v0.1" },
      '_type is "https://in-toto.io/Statement/v0.1", expected "https://in-toto.io/Statement/v1"',
    ],
    ["no subject", { ...statement, subject: [] }, "subject is missing or empty"],
    ["a subject without a digest", { ...statement, subject: [{ name: "x" }] }, "subject[0].digest is missing"],
    ["a malformed sha256", { ...statement, subject: [{ name: "x", digest: { sha256: "abc" } }] }, "subject[0].digest.sha256 is not 64 hex characters"],
    ["no predicate type", { ...statement, predicateType: undefined }, "predicateType is missing"],
    ["no predicate", { ...statement, predicate: undefined }, "predicate is missing or not an object"],
  ];
  for (const [name, payload, why] of unparseable) {
    test(`a statement that is not parseable is refused: ${name}`, async () => {
      const bundle = await kit.attest({ payload }, { identity: IDENTITY, issuer: TEST_ISSUER });
      await refusedWith(
        () => verify(bundle),
        "bundle_verify",
        "STATEMENT_PARSE_ERROR",
        `${VERIFY}the attestation's in-toto statement is not parseable: ${why}`,
      );
    });
  }

  test("SLSA provenance without a builder id is refused", async () => {
    const noBuilder = structuredClone(statement) as { predicate: { runDetails: { builder: Record<string, unknown> } } };
    delete noBuilder.predicate.runDetails.builder.id;
    const bundle = await kit.attest({ payload: noBuilder }, { identity: IDENTITY, issuer: TEST_ISSUER });
    await refusedWith(
      () => verify(bundle),
      "bundle_verify",
      "PREDICATE_ERROR",
      `${VERIFY}the SLSA provenance has no runDetails.builder.id (who built the artifact)`,
    );
  });

  test("the same identity and issuer rules as a signature", async () => {
    const other = `${REPO}/.github/workflows/other.yml@${REF}`;
    const bundle = await kit.attest({ payload: statement }, { identity: other, issuer: TEST_ISSUER });
    await refusedWith(
      () => verify(bundle),
      "bundle_verify",
      "UNTRUSTED_SIGNER_ERROR",
      `${VERIFY}certificate identity '${other}' does not match expected '${IDENTITY}'`,
    );
    const google = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: "https://accounts.google.com" });
    await refusedWith(
      () => verify(google),
      "bundle_verify",
      "UNTRUSTED_SIGNER_ERROR",
      `${VERIFY}certificate issuer 'https://accounts.google.com' does not match expected '${TEST_ISSUER}'`,
    );
  });

  test("a statement changed after signing (its subject swapped for the artifact's) is refused", async () => {
    const json = JSON.parse(
      Buffer.from(
        await kit.attest(
          { payload: slsaStatement({ subjects: [{ name: "x", sha256: otherDigest }], repository: REPO, ref: REF }) },
          { identity: IDENTITY, issuer: TEST_ISSUER },
        ),
      ).toString(),
    ) as { dsseEnvelope: { payload: string } };
    json.dsseEnvelope.payload = Buffer.from(JSON.stringify(slsaStatement({ subjects: [{ name: "x", sha256: digest }], repository: REPO, ref: REF }))).toString(
      "base64",
    );
    await refusedWith(
      () => verify(Buffer.from(JSON.stringify(json))),
      "bundle_verify",
      "TLOG_BODY_ERROR",
      `${VERIFY}the transparency-log entry does not match the bundle (DSSE payload hash mismatch)`,
    );
  });

  const tampers: [TestTamper, string, string][] = [
    ["flipSignature", "SIGNATURE_ERROR", "signature does not verify (the artifact or the bundle was modified)"],
    ["missingTlog", "TLOG_MISSING", "no transparency-log entry in the bundle (an artifact must be logged in Rekor)"],
    ["badSet", "TLOG_INCLUSION_PROMISE_ERROR", "the transparency-log inclusion promise (SET) does not verify against a trusted Rekor key"],
    [
      "badInclusionProof",
      "TLOG_INCLUSION_PROOF_ERROR",
      "the transparency-log inclusion proof does not verify: calculated root hash does not match inclusion proof",
    ],
    ["badCheckpoint", "TLOG_INCLUSION_PROOF_ERROR", "the transparency-log inclusion proof does not verify: invalid checkpoint signature"],
    ["otherCa", "CERTIFICATE_ERROR", "the signing certificate is not issued by a trusted Sigstore CA (no valid certificate path found)"],
    ["noSct", "CERTIFICATE_ERROR", "the signing certificate has no verifiable SCT (certificate transparency): expected 1 SCTs, got 0"],
    ["noCodeSigning", "CERTIFICATE_ERROR", "the signing certificate is not a code-signing certificate (extended key usage)"],
    ["bodyOtherCert", "TLOG_BODY_ERROR", "the transparency-log entry does not match the attestation (it records a different signing certificate)"],
    ["otherPayloadInBody", "TLOG_BODY_ERROR", "the transparency-log entry does not match the bundle (DSSE payload hash mismatch)"],
    // The library compares the hash's value only.
    [
      "payloadHashLabelledSha512",
      "TLOG_BODY_ERROR",
      "the transparency-log entry does not match the attestation (payload hash algorithm 'sha512', expected sha256)",
    ],
  ];
  for (const [tamper, code, message] of tampers) {
    test(`tamper ${tamper} is refused: ${message}`, async () => {
      const bundle = await kit.attest({ payload: statement }, { identity: IDENTITY, issuer: TEST_ISSUER, tamper });
      await refusedWith(() => verify(bundle), "bundle_verify", code, VERIFY + message);
    });
  }
});

/**
 * A real attestation made by GitHub's attest-build-provenance (through the reusable workflow
 * github/artifact-attestations-workflows) on public-good Sigstore, Rekor log index 96764485: the
 * GitHub CLI's test data (cli/cli, pkg/cmd/attestation/test/data/reusable-workflow-attestation.sigstore.json,
 * MIT licence), kept byte for byte. Its one subject is that directory's reusable-workflow-artifact.
 */
describe("a real GitHub artifact attestation against the pinned public-good root", () => {
  const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const FIXTURE = join(ROOT, "test", "fixtures", "update", "gh-attestation-reusable-workflow.sigstore.json");
  const REAL_DIGEST = "49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25";
  const REAL_IDENTITY = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
  const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";
  let real: VerifyBundleInput;

  before(async () => {
    real = {
      bundle: await readFile(FIXTURE),
      digest: REAL_DIGEST,
      identity: { exact: REAL_IDENTITY },
      issuer: GITHUB_ISSUER,
      trustedRoot: await loadTrustedRoot(),
      attestation: { predicateTypes: [SLSA] },
    };
  });

  test("verifies (dsse 0.0.1 entry, SET and inclusion proof), with GitHub's builder, source repository and ref", async () => {
    assert.deepEqual(await verifyBundle(real), {
      identity: REAL_IDENTITY,
      issuer: GITHUB_ISSUER,
      digest: REAL_DIGEST,
      tlogEntries: 1,
      timestamps: 1,
      logIndex: "96764485",
      integratedTime: "2024-05-24T19:14:24.000Z",
      provenance: {
        predicateType: SLSA,
        subject: "github_provenance_demo-0.0.0-py3-none-any.whl",
        builderId: RUNNER,
        buildType: "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
        sourceRepository: "https://github.com/malancas/attest-demo",
        sourceRef: "refs/heads/main",
        workflowPath: ".github/workflows/shared.yml",
      },
    });
  });

  test("another artifact, another identity, or the updater's policy: refused", async () => {
    await refusedWith(
      () => verifyBundle({ ...real, digest }),
      "bundle_verify",
      "SUBJECT_DIGEST_MISMATCH",
      `${VERIFY}no subject of the attestation has the artifact's SHA-256 (artifact sha256:${digest}; subjects: github_provenance_demo-0.0.0-py3-none-any.whl sha256:${REAL_DIGEST})`,
    );
    await refusedWith(
      () => verifyBundle({ ...real, identity: { exact: "https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/main" } }),
      "bundle_verify",
      "UNTRUSTED_SIGNER_ERROR",
      `${VERIFY}certificate identity '${REAL_IDENTITY}' does not match expected 'https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/main'`,
    );
    const { attestation: _, ...updater } = real;
    await assert.rejects(verifyBundle(updater), { code: "BUNDLE_DSSE" });
  });
});
