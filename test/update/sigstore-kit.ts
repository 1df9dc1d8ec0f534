/**
 * A test Sigstore: our own trust root (a Fulcio-like CA root + intermediate, a Rekor-like log key,
 * a CT log key) and a signer that produces real v0.3 bundles — the shape of
 * `cosign sign-blob --bundle --new-bundle-format` — for an artifact digest: a short-lived leaf
 * certificate with the identity as SAN URI, the Fulcio issuer extensions, code-signing EKU and an
 * embedded precertificate SCT; a hashedrekord 0.0.1 tlog entry with an inclusion promise (SET)
 * and an inclusion proof in a small RFC 6962 tree with a signed checkpoint; an ECDSA P-256
 * signature over the digest itself. `attest` makes DSSE attestation bundles the same way (the
 * shape GitHub artifact attestations have): an in-toto payload signed over its DSSE PAE, logged
 * as a dsse 0.0.1 (or intoto 0.0.2) entry.
 *
 * The bundles are verified by the production verifier (src/update/sigstore-bundle.ts) with
 * `trustedRootJson` as the trusted root. Tamper options break one thing each.
 *
 * Built only with node:crypto, @peculiar/x509 (certificates) and @noble/curves (ECDSA over a
 * pre-hashed digest); nothing here imports the code under test.
 */
import { createHash, KeyObject, randomBytes, sign as nodeSign, webcrypto } from "node:crypto";
import { writeFile } from "node:fs/promises";
import type * as X509 from "@peculiar/x509";
import { p256 } from "@noble/curves/nist.js";

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/**
 * @peculiar/x509 (through tsyringe) refuses to load without a Reflect metadata polyfill and none
 * is installed; this minimal one (define/get/getOwn metadata, Reflect.metadata decorator factory)
 * is all it uses. Installed only when no polyfill is present, before the first import of x509.
 */
function installReflectMetadata(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R.getMetadata === "function") return;
  const store = new WeakMap<object, Map<PropertyKey | undefined, Map<unknown, unknown>>>();
  const table = (target: object, prop: PropertyKey | undefined, create: boolean): Map<unknown, unknown> | undefined => {
    let byProp = store.get(target);
    if (!byProp) {
      if (!create) return undefined;
      store.set(target, (byProp = new Map()));
    }
    let t = byProp.get(prop);
    if (!t && create) byProp.set(prop, (t = new Map()));
    return t;
  };
  const defineMetadata = (key: unknown, value: unknown, target: object, prop?: PropertyKey) => void table(target, prop, true)!.set(key, value);
  R.defineMetadata = defineMetadata;
  R.getOwnMetadata = (key: unknown, target: object, prop?: PropertyKey) => table(target, prop, false)?.get(key);
  R.hasOwnMetadata = (key: unknown, target: object, prop?: PropertyKey) => table(target, prop, false)?.has(key) ?? false;
  R.getMetadata = (key: unknown, target: object, prop?: PropertyKey) => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t) as object | null) {
      const m = table(t, prop, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  R.hasMetadata = (key: unknown, target: object, prop?: PropertyKey) =>
    (R.getMetadata as (k: unknown, t: object, p?: PropertyKey) => unknown)(key, target, prop) !== undefined;
  R.metadata = (key: unknown, value: unknown) => (target: object, prop?: PropertyKey) => defineMetadata(key, value, target, prop);
}

let x509: typeof X509;

async function loadX509(): Promise<void> {
  if (x509) return;
  installReflectMetadata();
  x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
}

export const TEST_ISSUER = "https://token.actions.githubusercontent.com";

/** One thing broken per bundle; each must make the production verifier refuse it. */
export type TestTamper =
  /** no tlogEntries at all */
  | "missingTlog"
  /** one byte of the inclusion promise (SET) flipped */
  | "badSet"
  /** the log entry (honestly signed by the log) records another digest than the bundle */
  | "wrongDigestInBody"
  /** the signature over the digest is invalid (and logged as such, so only the signature check fails) */
  | "flipSignature"
  /** the leaf is issued by a CA that is not in the trusted root */
  | "otherCa"
  /** the leaf had expired when the log integrated the entry */
  | "expiredAtIntegratedTime"
  /** the leaf has no SCT (the CT threshold of 1 is not met) */
  | "noSct"
  /** the SCT claims the trusted CT log but is signed by another key */
  | "badSct"
  /** the checkpoint of the inclusion proof is signed by a key that is not the log's */
  | "badCheckpoint"
  /** one hash of the inclusion proof flipped */
  | "badInclusionProof"
  /** the log entry (honestly signed) records another signing certificate */
  | "bodyOtherCert"
  /** the leaf's EKU is serverAuth, not codeSigning */
  | "noCodeSigning"
  /** attestations only: the log entry (honestly signed) records the hash of another payload */
  | "otherPayloadInBody"
  /** attestations only: the log entry (honestly signed) labels the payload's SHA-256 as sha512 */
  | "payloadHashLabelledSha512";

export interface SignOptions {
  /** Certificate SAN URI. */
  identity: string;
  /** Fulcio OIDC issuer extension value. */
  issuer: string;
  tamper?: TestTamper;
  /** Which Fulcio issuer extensions to embed: v1 = …57264.1.1 (raw), v2 = …57264.1.8 (UTF8String). Default both. */
  issuerExtensions?: "v1" | "v2" | "both";
  /** Emit the signature with a high S (as Go's crypto/ecdsa may); still valid ECDSA. */
  highS?: boolean;
  /** Signing time (cert issuance and integrated time); default now. */
  at?: Date;
  /** Curve of the leaf key; default P-256 (the only one the digest-mode verifier accepts). */
  leafCurve?: "P-256" | "P-384";
}

/** What an attestation envelope carries: a statement (serialized as JSON) or raw payload bytes. */
export interface AttestInput {
  payload: unknown;
  /** Default application/vnd.in-toto+json. */
  payloadType?: string;
}

export interface AttestOptions extends Omit<SignOptions, "highS" | "leafCurve"> {
  /**
   * The Rekor entry type: dsse 0.0.1 (default, what Rekor v1 makes today), the older intoto 0.0.2,
   * or a hashedrekord 0.0.1 of the payload's hash and the envelope's signature (which the library
   * accepts as matching; an attestation must not be logged that way).
   */
  logKind?: "dsse" | "intoto" | "hashedrekord";
}

/**
 * An in-toto Statement v1 with a SLSA provenance v1 predicate, shaped as GitHub's
 * actions/attest-build-provenance makes it for a tag push of `.github/workflows/release.yml`.
 */
export function slsaStatement(o: { subjects: { name: string; sha256: string }[]; repository: string; ref: string; predicateType?: string }) {
  return {
    _type: "https://in-toto.io/Statement/v1",
    subject: o.subjects.map((s) => ({ name: s.name, digest: { sha256: s.sha256 } })),
    predicateType: o.predicateType ?? "https://slsa.dev/provenance/v1",
    predicate: {
      buildDefinition: {
        buildType: "https://actions.github.io/buildtypes/workflow/v1",
        externalParameters: { workflow: { ref: o.ref, repository: o.repository, path: ".github/workflows/release.yml" } },
        internalParameters: { github: { event_name: "push", repository_id: "1", repository_owner_id: "2", runner_environment: "github-hosted" } },
        resolvedDependencies: [{ uri: `git+${o.repository}@${o.ref}`, digest: { gitCommit: "4f2c1b7e0d9a8c6b5a4f3e2d1c0b9a8f7e6d5c4b" } }],
      },
      // GitHub names the runner, not the workflow, as the builder.
      runDetails: {
        builder: { id: "https://github.com/actions/runner/github-hosted" },
        metadata: { invocationId: `${o.repository}/actions/runs/7/attempts/1` },
      },
    },
  };
}

export interface TestTrustRoot {
  /** A TrustedRoot JSON document (application/vnd.dev.sigstore.trustedroot+json;version=0.1). */
  trustedRootJson: Record<string, unknown>;
  writeTo(path: string): Promise<void>;
  /** A Sigstore bundle (JSON bytes, v0.3) for the artifact with this SHA-256 (hex). */
  sign(input: { digest: string }, opts: SignOptions): Promise<Uint8Array>;
  /** A DSSE attestation bundle (JSON bytes, v0.3), as GitHub artifact attestations make them. */
  attest(input: AttestInput, opts: AttestOptions): Promise<Uint8Array>;
}

export interface TestTrustRootOptions {
  /** Issue leaves from an intermediate (like Fulcio) rather than from the root. Default true. */
  intermediate?: boolean;
  /** Start of validity of the CA, logs and keys in the trusted root; default 1 day ago. */
  validFrom?: Date;
}

// ---------------------------------------------------------------------------------------------
// Small encoders

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function der(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** Reads one DER element at offset: [header+content length, content offset, content length]. */
function derElement(buf: Buffer, offset: number): { end: number; start: number; tag: number } {
  const tag = buf[offset]!;
  let len = buf[offset + 1]!;
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    start += n;
  }
  return { tag, start, end: start + len };
}

/** The DER TBSCertificate of a certificate (its first child). */
function tbsOf(certDer: Buffer): Buffer {
  const outer = derElement(certDer, 0);
  const tbs = derElement(certDer, outer.start);
  return certDer.subarray(outer.start, tbs.end);
}

function bigintToDerInteger(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, "hex");
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return der(0x02, bytes);
}

/** ECDSA DER signature with s replaced by n - s (the other valid signature for the same r). */
function toHighS(sigDer: Uint8Array): Buffer {
  const buf = Buffer.from(sigDer);
  const seq = derElement(buf, 0);
  const r = derElement(buf, seq.start);
  const s = derElement(buf, r.end);
  const rv = BigInt(`0x${buf.subarray(r.start, r.end).toString("hex")}`);
  const sv = BigInt(`0x${buf.subarray(s.start, s.end).toString("hex")}`);
  const high = sv > P256_N / 2n ? sv : P256_N - sv;
  return der(0x30, Buffer.concat([bigintToDerInteger(rv), bigintToDerInteger(high)]));
}

function uint(n: number | bigint, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let v = BigInt(n);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Canonical JSON (RFC 8785 subset: sorted keys, no whitespace) — what Rekor signs. */
function canonicalJSON(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(",")}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJSON(obj[k])}`)
    .join(",")}}`;
}

/** DSSE pre-authentication encoding: what an envelope's signature signs. */
function dssePae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

function pem(certDer: Uint8Array): string {
  const lines = b64(certDer).match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

function flipByte(bytes: Uint8Array, index: number): Buffer {
  const out = Buffer.from(bytes);
  const i = index < 0 ? out.length + index : index;
  out[i] = out[i]! ^ 0x01;
  return out;
}

// ---------------------------------------------------------------------------------------------
// RFC 6962 Merkle tree over leaf hashes

function leafHash(data: Uint8Array): Buffer {
  return sha256(Buffer.from([0x00]), data);
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function treeHash(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  const k = largestPowerOfTwoBelow(leaves.length);
  return sha256(Buffer.from([0x01]), treeHash(leaves.slice(0, k)), treeHash(leaves.slice(k)));
}

/** Audit path for leaf m, bottom-up (RFC 6962 §2.1.1). */
function auditPath(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = largestPowerOfTwoBelow(leaves.length);
  return m < k ? [...auditPath(m, leaves.slice(0, k)), treeHash(leaves.slice(k))] : [...auditPath(m - k, leaves.slice(k)), treeHash(leaves.slice(0, k))];
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates

interface EcKey {
  pair: CryptoKeyPair;
  priv: KeyObject;
  spki: Buffer;
  /** Raw private scalar (for @noble/curves). */
  d: Buffer;
}

const SIGNING_ALG = { name: "ECDSA", hash: "SHA-256" } as const;

async function ecKey(namedCurve: "P-256" | "P-384" = "P-256"): Promise<EcKey> {
  const pair = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", pair.publicKey));
  const jwk = await webcrypto.subtle.exportKey("jwk", pair.privateKey);
  return { pair, priv: KeyObject.from(pair.privateKey), spki, d: Buffer.from(jwk.d ?? "", "base64url") };
}

interface Ca {
  name: string;
  key: EcKey;
  cert: X509.X509Certificate;
  der: Buffer;
}

function serial(): string {
  const s = randomBytes(16);
  s[0] = s[0]! & 0x7f;
  return s.toString("hex");
}

async function createCa(name: string, notBefore: Date, parent?: Ca): Promise<Ca> {
  const key = await ecKey();
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(true, parent ? 0 : 1, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(key.pair.publicKey),
  ];
  if (parent) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(parent.key.pair.publicKey));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: name,
    issuer: parent ? parent.name : name,
    notBefore,
    notAfter: new Date(notBefore.getTime() + 10 * 365 * 86_400_000),
    publicKey: key.pair.publicKey,
    signingKey: (parent ?? { key }).key.pair.privateKey,
    signingAlgorithm: SIGNING_ALG,
    extensions,
  });
  return { name, key, cert, der: Buffer.from(cert.rawData) };
}

interface Authority {
  /** Issues leaves. */
  issuer: Ca;
  /** [issuer, …, root] as listed in the trusted root. */
  chain: Ca[];
}

async function createAuthority(label: string, intermediate: boolean, notBefore: Date): Promise<Authority> {
  const root = await createCa(`CN=${label}-root, O=cara.test`, notBefore);
  if (!intermediate) return { issuer: root, chain: [root] };
  const inter = await createCa(`CN=${label}-intermediate, O=cara.test`, notBefore, root);
  return { issuer: inter, chain: [inter, root] };
}

function utf8String(s: string): Buffer {
  return der(0x0c, Buffer.from(s, "utf8"));
}

/**
 * A Fulcio-like leaf. With an SCT, the certificate is built twice with the same serial, validity,
 * key and extensions: first without the SCT extension (its TBS is the RFC 6962 precertificate
 * TBS the SCT signs), then with the SCT extension appended last.
 */
async function createLeaf(args: {
  authority: Authority;
  leafKey: EcKey;
  identity: string;
  issuer: string;
  issuerExtensions: "v1" | "v2" | "both";
  notBefore: Date;
  notAfter: Date;
  eku: string;
  sct: "good" | "none" | "badKey";
  ctKey: EcKey;
  ctLogId: Buffer;
}): Promise<Buffer> {
  const { authority, leafKey } = args;
  const extensions: X509.Extension[] = [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([args.eku]),
    await x509.SubjectKeyIdentifierExtension.create(leafKey.pair.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(authority.issuer.key.pair.publicKey),
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: args.identity }], true),
  ];
  if (args.issuerExtensions !== "v2") extensions.push(new x509.Extension("1.3.6.1.4.1.57264.1.1", false, Buffer.from(args.issuer, "utf8")));
  if (args.issuerExtensions !== "v1") extensions.push(new x509.Extension("1.3.6.1.4.1.57264.1.8", false, utf8String(args.issuer)));
  const base = {
    serialNumber: serial(),
    subject: "",
    issuer: authority.issuer.name,
    notBefore: args.notBefore,
    notAfter: args.notAfter,
    publicKey: leafKey.pair.publicKey,
    signingKey: authority.issuer.key.pair.privateKey,
    signingAlgorithm: SIGNING_ALG,
  };
  const pre = await x509.X509CertificateGenerator.create({ ...base, extensions });
  if (args.sct === "none") return Buffer.from(pre.rawData);

  // RFC 6962 §3.2: digitally-signed struct over the precertificate entry.
  const timestamp = uint(args.notBefore.getTime(), 8);
  const tbs = tbsOf(Buffer.from(pre.rawData));
  const signed = Buffer.concat([
    Buffer.from([0x00, 0x00]), // version v1, signature_type certificate_timestamp
    timestamp,
    uint(1, 2), // entry_type precert_entry
    sha256(authority.issuer.key.spki), // issuer_key_hash
    uint(tbs.length, 3),
    tbs,
    uint(0, 2), // no extensions
  ]);
  const signer = args.sct === "badKey" ? (await ecKey()).priv : args.ctKey.priv;
  const sig = nodeSign("sha256", signed, signer);
  const sct = Buffer.concat([
    Buffer.from([0x00]),
    args.ctLogId,
    timestamp,
    uint(0, 2),
    Buffer.from([0x04, 0x03]), // sha256, ecdsa
    uint(sig.length, 2),
    sig,
  ]);
  const list = Buffer.concat([uint(sct.length + 2, 2), uint(sct.length, 2), sct]);
  extensions.push(new x509.Extension("1.3.6.1.4.1.11129.2.4.2", false, der(0x04, list)));
  const final = await x509.X509CertificateGenerator.create({ ...base, extensions });
  return Buffer.from(final.rawData);
}

// ---------------------------------------------------------------------------------------------
// The kit

const LOG_ORIGIN = "rekor.cara.test - 4242424242";
const LOG_NAME = "rekor.cara.test";

export async function createTestTrustRoot(opts: TestTrustRootOptions = {}): Promise<TestTrustRoot> {
  await loadX509();
  const validFrom = opts.validFrom ?? new Date(Date.now() - 86_400_000);
  const intermediate = opts.intermediate ?? true;
  const authority = await createAuthority("cara-test-fulcio", intermediate, validFrom);
  const rekor = await ecKey();
  const rekorLogId = sha256(rekor.spki);
  const ct = await ecKey();
  const ctLogId = sha256(ct.spki);
  let rogue: Authority | undefined;
  const rogueCheckpointKey = (await ecKey()).priv;

  // The log: a few unrelated leaves first, so proofs have real hashes.
  const leaves: Buffer[] = [leafHash(randomBytes(64)), leafHash(randomBytes(64)), leafHash(randomBytes(64))];
  const globalIndexOffset = 90_000;

  const start = validFrom.toISOString();
  const trustedRootJson: Record<string, unknown> = {
    mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    tlogs: [
      {
        baseUrl: `https://${LOG_NAME}`,
        hashAlgorithm: "SHA2_256",
        publicKey: { rawBytes: b64(rekor.spki), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor: { start } },
        logId: { keyId: b64(rekorLogId) },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: "cara.test", commonName: "cara-test-fulcio" },
        uri: "https://fulcio.cara.test",
        certChain: { certificates: authority.chain.map((c) => ({ rawBytes: b64(c.der) })) },
        validFor: { start },
      },
    ],
    ctlogs: [
      {
        baseUrl: "https://ctfe.cara.test/test",
        hashAlgorithm: "SHA2_256",
        publicKey: { rawBytes: b64(ct.spki), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor: { start } },
        logId: { keyId: b64(ctLogId) },
      },
    ],
    timestampAuthorities: [],
  };

  /** A Fulcio-like leaf for the signing time (the certificate tampers apply here). */
  async function issueLeaf(o: SignOptions, at: Date): Promise<{ leaf: Buffer; leafKey: EcKey; notBefore: Date }> {
    const tamper = o.tamper;
    let issuing = authority;
    if (tamper === "otherCa") issuing = rogue ??= await createAuthority("cara-rogue-fulcio", intermediate, validFrom);
    const leafKey = await ecKey(o.leafCurve ?? "P-256");
    const notBefore = tamper === "expiredAtIntegratedTime" ? new Date(at.getTime() - 30 * 60_000) : new Date(at.getTime() - 60_000);
    const notAfter = new Date(notBefore.getTime() + 10 * 60_000);
    const leaf = await createLeaf({
      authority: issuing,
      leafKey,
      identity: o.identity,
      issuer: o.issuer,
      issuerExtensions: o.issuerExtensions ?? "both",
      notBefore,
      notAfter,
      eku: tamper === "noCodeSigning" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.codeSigning,
      sct: tamper === "noSct" ? "none" : tamper === "badSct" ? "badKey" : "good",
      ctKey: ct,
      ctLogId,
    });
    return { leaf, leafKey, notBefore };
  }

  /** Appends the body to the log and returns its bundle tlog entry: SET and inclusion proof (the log tampers apply here). */
  function logEntry(body: Buffer, kindVersion: { kind: string; version: string }, at: Date, tamper: TestTamper | undefined) {
    const integratedTime = Math.floor(at.getTime() / 1000);
    leaves.push(leafHash(body));
    const treeIndex = leaves.length - 1;
    const treeSize = leaves.length;
    const logIndex = globalIndexOffset + treeIndex;
    const setPayload = canonicalJSON({ body: b64(body), integratedTime, logID: rekorLogId.toString("hex"), logIndex });
    let set: Buffer = nodeSign("sha256", Buffer.from(setPayload), rekor.priv);
    if (tamper === "badSet") set = flipByte(set, 10);
    const snapshot = leaves.slice(0, treeSize);
    const rootHash = treeHash(snapshot);
    let hashes = auditPath(treeIndex, snapshot);
    if (tamper === "badInclusionProof") hashes = hashes.map((h, i) => (i === 0 ? flipByte(h, 0) : h));
    const note = `${LOG_ORIGIN}\n${treeSize}\n${b64(rootHash)}\n`;
    const noteKey = tamper === "badCheckpoint" ? rogueCheckpointKey : rekor.priv;
    const noteSig = Buffer.concat([rekorLogId.subarray(0, 4), nodeSign("sha256", Buffer.from(note), noteKey)]);
    const envelope = `${note}\n\u2014 ${LOG_NAME} ${b64(noteSig)}\n`;
    return {
      logIndex: String(logIndex),
      logId: { keyId: b64(rekorLogId) },
      kindVersion,
      integratedTime: String(integratedTime),
      inclusionPromise: { signedEntryTimestamp: b64(set) },
      inclusionProof: {
        logIndex: String(treeIndex),
        rootHash: b64(rootHash),
        treeSize: String(treeSize),
        hashes: hashes.map(b64),
        checkpoint: { envelope },
      },
      canonicalizedBody: b64(body),
    };
  }

  async function sign(input: { digest: string }, o: SignOptions): Promise<Uint8Array> {
    if (!/^[0-9a-f]{64}$/.test(input.digest)) throw new Error(`sign: digest must be 64 lowercase hex, got '${input.digest}'`);
    const tamper = o.tamper;
    const at = o.at ?? new Date();
    const digest = Buffer.from(input.digest, "hex");
    const { leaf, leafKey, notBefore } = await issueLeaf(o, at);

    // Signature over the digest itself (no re-hashing).
    let signature: Buffer =
      o.leafCurve === "P-384"
        ? nodeSign("sha384", digest, leafKey.priv) // not over the digest itself: the verifier must refuse the key type first
        : Buffer.from(p256.sign(digest, leafKey.d, { prehash: false, format: "der" }));
    if (o.highS) signature = toHighS(signature);
    if (tamper === "flipSignature") signature = flipByte(signature, -1);

    // The log entry.
    const bodyCert = tamper === "bodyOtherCert" ? (await createCa("CN=unrelated, O=cara.test", notBefore)).der : leaf;
    const body = Buffer.from(
      canonicalJSON({
        apiVersion: "0.0.1",
        kind: "hashedrekord",
        spec: {
          data: { hash: { algorithm: "sha256", value: tamper === "wrongDigestInBody" ? sha256(digest).toString("hex") : input.digest } },
          signature: { content: b64(signature), publicKey: { content: Buffer.from(pem(bodyCert)).toString("base64") } },
        },
      }),
    );
    const tlogEntry = logEntry(body, { kind: "hashedrekord", version: "0.0.1" }, at, tamper);
    const bundle = {
      mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
      verificationMaterial: {
        certificate: { rawBytes: b64(leaf) },
        tlogEntries: tamper === "missingTlog" ? [] : [tlogEntry],
        timestampVerificationData: {},
      },
      messageSignature: {
        messageDigest: { algorithm: "SHA2_256", digest: b64(digest) },
        signature: b64(signature),
      },
    };
    return Buffer.from(JSON.stringify(bundle));
  }

  async function attest(input: AttestInput, o: AttestOptions): Promise<Uint8Array> {
    const tamper = o.tamper;
    const at = o.at ?? new Date();
    const payload = input.payload instanceof Uint8Array ? Buffer.from(input.payload) : Buffer.from(JSON.stringify(input.payload));
    const payloadType = input.payloadType ?? "application/vnd.in-toto+json";
    const { leaf, leafKey, notBefore } = await issueLeaf(o, at);

    // ECDSA P-256 with SHA-256 over the DSSE pre-authentication encoding.
    let signature: Buffer = nodeSign("sha256", dssePae(payloadType, payload), leafKey.priv);
    if (tamper === "flipSignature") signature = flipByte(signature, -1);

    // The log entry, as Rekor v1 makes it for a DSSE envelope (dsse 0.0.1, or the older intoto 0.0.2).
    const bodyCert = tamper === "bodyOtherCert" ? (await createCa("CN=unrelated, O=cara.test", notBefore)).der : leaf;
    const certB64 = Buffer.from(pem(bodyCert)).toString("base64");
    const loggedPayload = tamper === "otherPayloadInBody" ? Buffer.concat([payload, Buffer.from(" ")]) : payload;
    const payloadHash = { algorithm: tamper === "payloadHashLabelledSha512" ? "sha512" : "sha256", value: sha256(loggedPayload).toString("hex") };
    const kind = o.logKind ?? "dsse";
    const envelopeJson = JSON.stringify({ payload: b64(payload), payloadType, signatures: [{ keyid: "", sig: b64(signature) }] });
    const body = Buffer.from(
      canonicalJSON(
        kind === "hashedrekord"
          ? {
              apiVersion: "0.0.1",
              kind: "hashedrekord",
              spec: { data: { hash: payloadHash }, signature: { content: b64(signature), publicKey: { content: certB64 } } },
            }
          : kind === "dsse"
            ? {
                apiVersion: "0.0.1",
                kind: "dsse",
                spec: {
                  envelopeHash: { algorithm: "sha256", value: sha256(Buffer.from(envelopeJson)).toString("hex") },
                  payloadHash,
                  signatures: [{ signature: b64(signature), verifier: certB64 }],
                },
              }
            : {
                apiVersion: "0.0.2",
                kind: "intoto",
                spec: {
                  content: {
                    envelope: {
                      payloadType,
                      // intoto 0.0.2 records the signature base64-encoded twice.
                      signatures: [{ publicKey: certB64, sig: Buffer.from(b64(signature)).toString("base64") }],
                    },
                    hash: { algorithm: "sha256", value: sha256(Buffer.from(envelopeJson)).toString("hex") },
                    payloadHash,
                  },
                },
              },
      ),
    );
    const tlogEntry = logEntry(body, { kind, version: kind === "intoto" ? "0.0.2" : "0.0.1" }, at, tamper);
    const bundle = {
      mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
      verificationMaterial: {
        certificate: { rawBytes: b64(leaf) },
        tlogEntries: tamper === "missingTlog" ? [] : [tlogEntry],
        timestampVerificationData: {},
      },
      dsseEnvelope: { payload: b64(payload), payloadType, signatures: [{ sig: b64(signature), keyid: "" }] },
    };
    return Buffer.from(JSON.stringify(bundle));
  }

  return {
    trustedRootJson,
    async writeTo(path: string) {
      await writeFile(path, `${JSON.stringify(trustedRootJson, null, 2)}\n`);
    },
    sign,
    attest,
  };
}
