/**
 * The production Sigstore verifier of the self-updater (src/update/sigstore-bundle.ts):
 * - the real v0.7.0 SHA256SUMS.txt bundle against the pinned public-good trusted root;
 * - bundles signed by our own test trust root (test/update/sigstore-kit.ts) and verified by the
 *   same production code with that root — every tamper refused with its reason;
 * - identity/issuer policy is exact or fully anchored (never a substring);
 * - verification makes no network call.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  defaultTrustedRootPath,
  loadTrustedRoot,
  parseDigestArgument,
  sha256File,
  UpdateVerificationError,
  verifyBundle,
  type IdentityMatcher,
  type TrustedRootSource,
  type VerifyBundleInput,
} from "../../src/update/sigstore-bundle.js";
import { createTestTrustRoot, TEST_ISSUER, type TestTamper, type TestTrustRoot } from "./sigstore-kit.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const FIXTURE = join(ROOT, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
const V070_DIGEST = "acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
const V070_IDENTITY = "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.0";
const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";

/** Asserts that fn rejects with an UpdateVerificationError of this kind whose message contains each fragment. */
async function refused(fn: () => Promise<unknown>, kind: UpdateVerificationError["kind"], ...fragments: string[]): Promise<UpdateVerificationError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof UpdateVerificationError, `expected UpdateVerificationError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    const prefix =
      kind === "bundle_parse"
        ? "bundle parse failed: "
        : kind === "bundle_verify"
          ? "bundle verification failed: "
          : "failed to initialize sigstore trust root";
    assert.ok(err.message.startsWith(prefix), err.message);
    for (const f of fragments) assert.ok(err.message.includes(f), `'${err.message}' should contain '${f}'`);
    return err;
  }
  assert.fail("verification passed but must be refused");
}

function flipHexChar(hex: string, i: number): string {
  const c = hex[i] === "0" ? "1" : "0";
  return hex.slice(0, i) + c + hex.slice(i + 1);
}

describe("verifyBundle: the real v0.7.0 bundle against the pinned public-good root", () => {
  let bundle: Buffer;
  let pinned: TrustedRootSource;
  let base: VerifyBundleInput;

  before(async () => {
    bundle = await readFile(FIXTURE);
    pinned = await loadTrustedRoot();
    base = { bundle, digest: V070_DIGEST, identity: { exact: V070_IDENTITY }, issuer: GITHUB_ISSUER, trustedRoot: pinned };
  });

  test("verifies, and reports what was verified", async () => {
    const r = await verifyBundle(base);
    assert.deepEqual(r, {
      identity: V070_IDENTITY,
      issuer: GITHUB_ISSUER,
      digest: V070_DIGEST,
      tlogEntries: 1,
      timestamps: 2, // the RFC 3161 timestamp and the tlog integrated time (SET)
      logIndex: "1286406200",
      integratedTime: "2026-04-13T15:51:30.000Z",
    });
  });

  test("an anchored regexp for the release workflow of any tag verifies", async () => {
    const r = await verifyBundle({
      ...base,
      identity: { regexp: "https://github\\.com/puremachinery/carapace/\\.github/workflows/release\\.yml@refs/tags/v[0-9].*" },
    });
    assert.equal(r.identity, V070_IDENTITY);
  });

  const wrongIdentities: [string, IdentityMatcher][] = [
    ["another tag", { exact: "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v9.9.9" }],
    ["a prefix of the identity", { exact: "https://github.com/puremachinery/" }],
    ["a regexp that only occurs inside the identity", { regexp: "puremachinery" }],
    ["a regexp anchored at the start only", { regexp: "^https://github\\.com/puremachinery/" }],
    ["the exact identity read as a regexp prefix", { regexp: "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7" }],
  ];
  for (const [name, identity] of wrongIdentities) {
    test(`refuses ${name}`, async () => {
      const err = await refused(() => verifyBundle({ ...base, identity }), "bundle_verify", `certificate identity '${V070_IDENTITY}' does not match expected`);
      assert.equal(err.code, "UNTRUSTED_SIGNER_ERROR");
    });
  }

  test("refuses a wrong issuer (exact match, not a prefix)", async () => {
    await refused(
      () => verifyBundle({ ...base, issuer: "https://token.actions.githubusercontent.co" }),
      "bundle_verify",
      `certificate issuer '${GITHUB_ISSUER}' does not match expected 'https://token.actions.githubusercontent.co'`,
    );
    await refused(
      () => verifyBundle({ ...base, issuer: "https://accounts.google.com" }),
      "bundle_verify",
      "does not match expected 'https://accounts.google.com'",
    );
  });

  test("refuses a digest with one hex character changed (first, middle, last)", async () => {
    for (const i of [0, 31, 63]) {
      const err = await refused(
        () => verifyBundle({ ...base, digest: flipHexChar(V070_DIGEST, i) }),
        "bundle_verify",
        "the artifact's SHA-256 does not match the bundle (modified artifact?)",
      );
      assert.equal(err.code, "ARTIFACT_DIGEST_MISMATCH");
    }
  });

  test("refuses an invalid digest argument", async () => {
    await refused(() => verifyBundle({ ...base, digest: `sha256:${V070_DIGEST}` }), "bundle_verify", "invalid artifact digest");
    await refused(() => verifyBundle({ ...base, digest: V070_DIGEST.slice(1) }), "bundle_verify", "invalid artifact digest");
  });

  test("parse failures: empty, truncated, malformed, not a bundle", async () => {
    await refused(() => verifyBundle({ ...base, bundle: new Uint8Array() }), "bundle_parse", "empty");
    await refused(() => verifyBundle({ ...base, bundle: bundle.subarray(0, bundle.length - 1) }), "bundle_parse", "not valid JSON");
    await refused(() => verifyBundle({ ...base, bundle: bundle.subarray(0, 100) }), "bundle_parse", "not valid JSON");
    await refused(() => verifyBundle({ ...base, bundle: Buffer.from('{"kindVersion":"oops"}') }), "bundle_parse", "not a Sigstore bundle", "mediaType");
    for (const doc of ["[]", "null", '"bundle"', "42"]) {
      await refused(() => verifyBundle({ ...base, bundle: Buffer.from(doc) }), "bundle_parse", "not a Sigstore bundle");
    }
    await refused(() => verifyBundle({ ...base, bundle: Buffer.from([0xff, 0xfe, 0x7b]) }), "bundle_parse", "not UTF-8");
  });

  test("a DSSE bundle is refused as the artifact's signature without an attestation policy", async () => {
    const json = JSON.parse(bundle.toString("utf8")) as Record<string, unknown>;
    delete json.messageSignature;
    json.dsseEnvelope = {
      payload: Buffer.from("{}").toString("base64"),
      payloadType: "application/vnd.in-toto+json",
      signatures: [{ sig: "MEUCIQ==", keyid: "" }],
    };
    const err = await refused(
      () => verifyBundle({ ...base, bundle: Buffer.from(JSON.stringify(json)) }),
      "bundle_parse",
      "a DSSE bundle (attestation) is not accepted as the artifact's signature",
    );
    assert.equal(err.code, "BUNDLE_DSSE");
  });

  test("a tampered integrated time breaks the inclusion promise", async () => {
    const json = JSON.parse(bundle.toString("utf8")) as { verificationMaterial: { tlogEntries: { integratedTime: string }[] } };
    json.verificationMaterial.tlogEntries[0]!.integratedTime = "1776095491";
    await refused(() => verifyBundle({ ...base, bundle: Buffer.from(JSON.stringify(json)) }), "bundle_verify", "inclusion promise (SET) does not verify");
  });

  test("the same bundle is refused under another trust root", async () => {
    const kit = await createTestTrustRoot();
    const err = await refused(() => verifyBundle({ ...base, trustedRoot: { path: "<test root>", json: kit.trustedRootJson } }), "bundle_verify");
    assert.ok(err.code !== undefined);
  });

  test("makes no network call (child process with every network entry point replaced)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cara-verify-offline-"));
    try {
      const script = join(dir, "offline.mjs");
      await writeFile(
        script,
        `import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import https from "node:https";
import http2 from "node:http2";
import dns from "node:dns";
import dgram from "node:dgram";
const attempts = [];
const deny = (what) => function () { attempts.push(what); throw new Error("network disabled in this test: " + what); };
net.Socket.prototype.connect = deny("net.Socket.connect");
net.connect = net.createConnection = deny("net.connect");
tls.connect = deny("tls.connect");
http.request = http.get = deny("http.request");
https.request = https.get = deny("https.request");
http2.connect = deny("http2.connect");
for (const f of ["lookup", "resolve", "resolve4", "resolve6", "resolveAny"]) { dns[f] = deny("dns." + f); dns.promises[f] = deny("dns.promises." + f); }
dgram.createSocket = deny("dgram.createSocket");
globalThis.fetch = deny("fetch");
const { loadTrustedRoot, verifyBundle } = await import(${JSON.stringify(pathToFileURL(join(ROOT, "src", "update", "sigstore-bundle.ts")).href)});
const { readFile } = await import("node:fs/promises");
let result, error;
try {
  result = await verifyBundle({
    bundle: await readFile(${JSON.stringify(FIXTURE)}),
    digest: ${JSON.stringify(V070_DIGEST)},
    identity: { exact: ${JSON.stringify(V070_IDENTITY)} },
    issuer: ${JSON.stringify(GITHUB_ISSUER)},
    trustedRoot: await loadTrustedRoot(),
  });
} catch (e) { error = String(e && e.message || e); }
console.log(JSON.stringify({ result, error, attempts }));
`,
      );
      const child = spawnSync(process.execPath, ["--import", "tsx", script], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
      assert.equal(child.status, 0, child.stderr);
      const out = JSON.parse(child.stdout.trim().split("\n").pop()!) as { result?: { identity: string }; error?: string; attempts: string[] };
      assert.deepEqual(out.attempts, []);
      assert.equal(out.error, undefined);
      assert.equal(out.result?.identity, V070_IDENTITY);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("verifyBundle: bundles signed by a test trust root", () => {
  const IDENTITY = "https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1.0.0";
  const digest = createHash("sha256").update("cara-linux-x86_64 release bytes\n").digest("hex");
  let kit: TestTrustRoot;
  let trustedRoot: TrustedRootSource;
  let dir: string;

  before(async () => {
    kit = await createTestTrustRoot();
    dir = await mkdtemp(join(tmpdir(), "cara-verify-kit-"));
    const path = join(dir, "trusted_root.json");
    await kit.writeTo(path);
    trustedRoot = await loadTrustedRoot(path); // through the production loader
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const verify = (bundle: Uint8Array, over: Partial<VerifyBundleInput> = {}) =>
    verifyBundle({ bundle, digest, identity: { exact: IDENTITY }, issuer: TEST_ISSUER, trustedRoot, ...over });

  test("sign + verify round trip (a real release artifact on disk, hashed streaming)", async () => {
    const artifact = join(dir, "cara-linux-x86_64");
    await writeFile(artifact, "cara-linux-x86_64 release bytes\n");
    const fileDigest = await sha256File(artifact);
    assert.equal(fileDigest, digest);
    const bundle = await kit.sign({ digest: fileDigest }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const parsed = JSON.parse(Buffer.from(bundle).toString("utf8")) as { mediaType: string };
    assert.equal(parsed.mediaType, "application/vnd.dev.sigstore.bundle.v0.3+json");
    const r = await verify(bundle, { digest: fileDigest });
    assert.equal(r.identity, IDENTITY);
    assert.equal(r.issuer, TEST_ISSUER);
    assert.equal(r.digest, digest);
    assert.equal(r.tlogEntries, 1);
    assert.equal(r.timestamps, 1);
    assert.match(r.logIndex ?? "", /^\d+$/);
    assert.ok(Math.abs(Date.parse(r.integratedTime ?? "") - Date.now()) < 120_000);
  });

  test("the digest form of a file verifies the same bundle (one code path)", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const fromArgument = parseDigestArgument(`sha256:${digest.toUpperCase()}`);
    assert.equal(fromArgument, digest);
    assert.equal((await verify(bundle, { digest: fromArgument! })).digest, digest);
  });

  test("a high-S signature (as Go's crypto/ecdsa may produce) verifies", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER, highS: true });
    assert.equal((await verify(bundle)).identity, IDENTITY);
  });

  test("a certificate with only the v1 issuer extension (…57264.1.1) verifies", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER, issuerExtensions: "v1" });
    assert.equal((await verify(bundle)).issuer, TEST_ISSUER);
  });

  test("a leaf issued directly by a root CA (no intermediate) verifies", async () => {
    const flat = await createTestTrustRoot({ intermediate: false });
    const bundle = await flat.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const r = await verifyBundle({
      bundle,
      digest,
      identity: { exact: IDENTITY },
      issuer: TEST_ISSUER,
      trustedRoot: { path: "<flat test root>", json: flat.trustedRootJson },
    });
    assert.equal(r.identity, IDENTITY);
  });

  test("a bundle from the test root is refused by the pinned public-good root", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
    const pinned = await loadTrustedRoot();
    await refused(() => verify(bundle, { trustedRoot: pinned }), "bundle_verify", "not issued by a trusted Sigstore CA");
  });

  const tampers: [TestTamper, string, string][] = [
    ["missingTlog", "TLOG_MISSING", "no transparency-log entry"],
    ["badSet", "TLOG_INCLUSION_PROMISE_ERROR", "inclusion promise (SET) does not verify"],
    ["wrongDigestInBody", "TLOG_BODY_ERROR", "transparency-log entry does not match the bundle (it records a different digest)"],
    ["flipSignature", "SIGNATURE_ERROR", "signature does not verify"],
    ["otherCa", "CERTIFICATE_ERROR", "not issued by a trusted Sigstore CA"],
    ["expiredAtIntegratedTime", "CERTIFICATE_ERROR", "not valid at the signing time"],
    ["noSct", "CERTIFICATE_ERROR", "no verifiable SCT"],
    ["badSct", "CERTIFICATE_ERROR", "SCT does not verify"],
    ["badCheckpoint", "TLOG_INCLUSION_PROOF_ERROR", "invalid checkpoint signature"],
    ["badInclusionProof", "TLOG_INCLUSION_PROOF_ERROR", "calculated root hash does not match"],
    ["bodyOtherCert", "TLOG_BODY_ERROR", "it records a different signing certificate"],
    ["noCodeSigning", "CERTIFICATE_ERROR", "not a code-signing certificate"],
  ];
  for (const [tamper, code, fragment] of tampers) {
    test(`tamper ${tamper} is refused: ${fragment}`, async () => {
      const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER, tamper });
      const err = await refused(() => verify(bundle), "bundle_verify", fragment);
      assert.equal(err.code, code);
    });
  }

  test("without an inclusion promise and without a TSA timestamp, the timestamp threshold is not met", async () => {
    const json = JSON.parse(Buffer.from(await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER })).toString("utf8")) as {
      verificationMaterial: { tlogEntries: { inclusionPromise?: unknown }[] };
    };
    delete json.verificationMaterial.tlogEntries[0]!.inclusionPromise;
    const err = await refused(() => verify(Buffer.from(JSON.stringify(json))), "bundle_verify", "no verifiable timestamp");
    assert.equal(err.code, "TIMESTAMP_ERROR");
  });

  test("a leaf key other than P-256 is refused as unsupported", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER, leafCurve: "P-384" });
    const err = await refused(() => verify(bundle), "bundle_verify", "unsupported key type ec/secp384r1");
    assert.equal(err.code, "UNSUPPORTED_KEY_TYPE");
  });

  test("the bundle signs one digest only", async () => {
    const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
    await refused(() => verify(bundle, { digest: flipHexChar(digest, 5) }), "bundle_verify", "the artifact's SHA-256 does not match the bundle");
  });

  describe("identity that only contains the expected one", () => {
    const evil = [
      `${IDENTITY}-evil`,
      `https://evil.example/${IDENTITY}`,
      `${IDENTITY}/x`,
      `${IDENTITY}0`,
      `http://github.com/o/r/.github/workflows/release.yml@refs/tags/v1.0.0`,
    ];
    const matchers: IdentityMatcher[] = [
      { exact: IDENTITY },
      { regexp: "https://github\\.com/o/r/\\.github/workflows/release\\.yml@refs/tags/v1\\.0\\.0" },
      { regexp: "^https://github\\.com/o/r/\\.github/workflows/release\\.yml@refs/tags/v1\\.0\\.0$" },
      // Anchored only "at its ends": without wrapping as a whole, the second branch would match inside the SAN.
      { regexp: "^https://nowhere\\.example/x|https://github\\.com/o/r/\\.github/workflows/release\\.yml@refs/tags/v1\\.0\\.0$" },
    ];
    for (const san of evil) {
      test(`cert SAN ${JSON.stringify(san)} is refused by every matcher`, async () => {
        const bundle = await kit.sign({ digest }, { identity: san, issuer: TEST_ISSUER });
        for (const identity of matchers) {
          await refused(() => verify(bundle, { identity }), "bundle_verify", `certificate identity '${san}' does not match expected`);
        }
      });
    }

    test("the genuine SAN passes every one of those matchers", async () => {
      const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
      for (const identity of matchers) assert.equal((await verify(bundle, { identity })).identity, IDENTITY);
    });

    test("an issuer that only contains the expected one is refused", async () => {
      for (const issuer of [`${TEST_ISSUER}.evil.example`, `https://evil.example/${TEST_ISSUER}`]) {
        const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer });
        await refused(() => verify(bundle), "bundle_verify", `certificate issuer '${issuer}' does not match expected '${TEST_ISSUER}'`);
      }
    });

    test("an invalid identity pattern is refused, never ignored", async () => {
      const bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
      await refused(() => verify(bundle, { identity: { regexp: "(" } }), "bundle_verify", "invalid certificate identity pattern");
      await refused(() => verify(bundle, { identity: { exact: "" } }), "bundle_verify", "identity is empty");
      await refused(() => verify(bundle, { issuer: "" }), "bundle_verify", "no expected certificate issuer");
    });
  });
});

describe("trusted root", () => {
  test("the pinned root file parses and holds the public-good Rekor, Fulcio and CT logs", async () => {
    const path = defaultTrustedRootPath();
    assert.equal(path, join(ROOT, "assets", "sigstore", "trusted_root.json"));
    const src = await loadTrustedRoot();
    assert.equal(src.path, path);
    const json = src.json as { mediaType: string; tlogs: { baseUrl: string }[]; certificateAuthorities: { uri: string }[]; ctlogs: unknown[] };
    assert.equal(json.mediaType, "application/vnd.dev.sigstore.trustedroot+json;version=0.1");
    assert.ok(json.tlogs.some((t) => t.baseUrl === "https://rekor.sigstore.dev"));
    assert.ok(json.certificateAuthorities.some((c) => c.uri === "https://fulcio.sigstore.dev"));
    assert.ok(json.ctlogs.length > 0);
  });

  test("the pinned root is exactly the @sigstore/tuf seed (scripts/update-trusted-root.mjs --check)", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts", "update-trusted-root.mjs"), "--check"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /matches @sigstore\/tuf/);
  });

  test("load errors name the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cara-trust-root-"));
    try {
      const missing = join(dir, "missing.json");
      await refused(() => loadTrustedRoot(missing), "trusted_root", missing, "file not found");
      const bad = join(dir, "bad.json");
      await writeFile(bad, "{ not json");
      await refused(() => loadTrustedRoot(bad), "trusted_root", bad, "not valid JSON");
      const empty = join(dir, "empty.json");
      await writeFile(empty, "{}");
      await refused(() => loadTrustedRoot(empty), "trusted_root", empty, "'certificateAuthorities' is missing or empty");
      const badKey = join(dir, "bad-key.json");
      const pinned = JSON.parse(await readFile(defaultTrustedRootPath(), "utf8")) as { tlogs: { publicKey: { rawBytes: string } }[] };
      pinned.tlogs[0]!.publicKey.rawBytes = "AAAA";
      await writeFile(badKey, JSON.stringify(pinned));
      await refused(() => loadTrustedRoot(badKey), "trusted_root", badKey, "invalid trusted root");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a trusted root that is not an object is refused at verification", async () => {
    await refused(
      () =>
        verifyBundle({
          bundle: Buffer.from("{}"),
          digest: V070_DIGEST,
          identity: { exact: V070_IDENTITY },
          issuer: GITHUB_ISSUER,
          trustedRoot: { path: "<inline>", json: [] },
        }),
      "trusted_root",
      "<inline>",
    );
  });
});

describe("helpers", () => {
  test("parseDigestArgument", () => {
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST}`), V070_DIGEST);
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST.toUpperCase()}`), V070_DIGEST);
    assert.equal(parseDigestArgument(V070_DIGEST), undefined);
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST.slice(1)}`), undefined);
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST}0`), undefined);
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST.slice(1)}g`), undefined);
    assert.equal(parseDigestArgument(`SHA256:${V070_DIGEST}`), undefined);
    assert.equal(parseDigestArgument(`sha512:${V070_DIGEST}`), undefined);
    assert.equal(parseDigestArgument(` sha256:${V070_DIGEST}`), undefined);
    assert.equal(parseDigestArgument(`sha256:${V070_DIGEST}\n`), undefined);
    assert.equal(parseDigestArgument("./cara-linux-x86_64"), undefined);
    assert.equal(parseDigestArgument(""), undefined);
  });

  test("sha256File streams a file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cara-sha-"));
    try {
      const f = join(dir, "big");
      const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
      await writeFile(f, data);
      assert.equal(await sha256File(f), createHash("sha256").update(data).digest("hex"));
      await assert.rejects(() => sha256File(join(dir, "nope")), { code: "ENOENT" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
