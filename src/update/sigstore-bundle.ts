/**
 * Authenticity of release artifacts: verifies a Sigstore bundle (`cosign sign-blob --bundle`)
 * against the SHA-256 digest of the artifact, fully offline, with a pinned trusted root. With an
 * attestation policy (`cara update verify` passes one; the updater does not), an in-toto DSSE
 * bundle — SLSA build provenance as GitHub artifact attestations make it — is verified for the
 * artifact instead: see "Attestations" below.
 *
 * One code path, fail-closed, nothing can switch it off:
 * - the bundle is parsed and validated (@sigstore/bundle); key-based bundles are refused, and so
 *   are DSSE bundles unless an attestation policy is given;
 * - the library verifier (@sigstore/verify) runs with its default thresholds (1 transparency-log
 *   entry, 1 SCT, 1 verified timestamp): timestamps, certificate chain to a trusted Fulcio CA at
 *   the signing time, SCT, tlog inclusion (SET and/or inclusion proof + signed checkpoint), tlog
 *   body, signature;
 * - verification is by digest only: the entity's signature content is replaced by a
 *   DigestSignatureContent that binds the given digest to the bundle's messageDigest and to every
 *   tlog body, and verifies the ECDSA P-256 signature over the digest itself (node:crypto cannot
 *   verify a pre-hashed message, @noble/curves can);
 * - then our own checks: hashedrekord bodies name the same digest (sha256) and the same signing
 *   certificate, the leaf is a code-signing certificate, and the policy: exact issuer, identity
 *   (certificate SAN) matched by an anchored pattern — never a substring.
 *
 * Attestations (DSSE): the envelope's payload type must be in-toto's; the library verifier checks
 * the same things as above, with the signature over the DSSE pre-authentication encoding (PAE) of
 * the payload and tlog bodies of kind dsse (0.0.1) or intoto (0.0.2) recording the payload's
 * hash and signature; we add that those bodies record sha256 and this signing certificate. The
 * same identity and issuer policy applies. Only then is the signed statement read
 * (./provenance-statement.ts): an in-toto Statement v1 whose predicate type is allowed and one of
 * whose subjects has the artifact's SHA-256.
 *
 * The Sigstore modules are loaded lazily (on the first verification) so that importing this module
 * for its helpers stays cheap for the CLI.
 */
import { createHash, timingSafeEqual, type KeyObject } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Bundle, TransparencyLogEntry } from "@sigstore/bundle";
import type { SignedEntity, TrustMaterial } from "@sigstore/verify";
import { runningAsExecutable } from "../executable-form.js";
import { packageFileLabel, readPackageFile } from "../package-files.js";
import {
  checkPayloadType,
  checkPredicateType,
  describeProvenance,
  parseStatement,
  StatementError,
  subjectFor,
  type VerifiedProvenance,
} from "./provenance-statement.js";
import { validityWindowProblem } from "./trusted-root-validity.js";

// Types as @sigstore/verify sees them (it has its own copy of @sigstore/core).
type SignatureContent = SignedEntity["signature"];
type X509Certificate = Extract<SignedEntity["key"], { $case: "certificate" }>["certificate"];

export interface TrustedRootSource {
  /** Where the trusted root was loaded from (for messages), or a label for an in-memory root. */
  path: string;
  /** The TrustedRoot JSON document (application/vnd.dev.sigstore.trustedroot+json). */
  json: unknown;
}

export type IdentityMatcher = { exact: string } | { regexp: string };

export interface VerifyBundleInput {
  /** Raw bytes of the .bundle file (Sigstore bundle JSON, v0.1-v0.3). */
  bundle: Uint8Array;
  /** SHA-256 of the artifact, 64 hex characters. */
  digest: string;
  /** Expected certificate identity (SAN). */
  identity: IdentityMatcher;
  /** Expected Fulcio OIDC issuer, exact match. */
  issuer: string;
  trustedRoot: TrustedRootSource;
  /**
   * Accept an in-toto DSSE attestation bundle for the artifact, with one of these predicate
   * types. Without it, a DSSE bundle is refused (the updater wants the artifact's signature).
   */
  attestation?: { predicateTypes: readonly string[] };
}

export interface VerifiedSignature {
  /** The certificate identity (SAN) that matched. */
  identity: string;
  issuer: string;
  /** The verified artifact digest (lowercase hex). */
  digest: string;
  /** Log index of the first transparency-log entry. */
  logIndex?: string;
  /** Integrated time of the first transparency-log entry that has one, ISO 8601. */
  integratedTime?: string;
  tlogEntries: number;
  /** Verified timestamps (RFC 3161 + tlog entries with an inclusion promise). */
  timestamps: number;
  /** Set when the bundle was an attestation: what its verified statement says about the artifact. */
  provenance?: VerifiedProvenance;
}

export type UpdateVerificationErrorKind = "bundle_parse" | "bundle_verify" | "trusted_root";

export class UpdateVerificationError extends Error {
  readonly kind: UpdateVerificationErrorKind;
  /** The library's error code (e.g. CERTIFICATE_ERROR) or ours (e.g. ARTIFACT_DIGEST_MISMATCH). */
  readonly code?: string;
  constructor(kind: UpdateVerificationErrorKind, message: string, options?: { code?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "UpdateVerificationError";
    this.kind = kind;
    if (options?.code !== undefined) this.code = options.code;
  }
}

const PARSE_PREFIX = "bundle parse failed: ";
const VERIFY_PREFIX = "bundle verification failed: ";

function parseError(reason: string, code?: string, cause?: unknown): UpdateVerificationError {
  return new UpdateVerificationError("bundle_parse", PARSE_PREFIX + reason, { code: code ?? "BUNDLE_PARSE_ERROR", cause });
}

function verifyError(reason: string, code: string, cause?: unknown): UpdateVerificationError {
  return new UpdateVerificationError("bundle_verify", VERIFY_PREFIX + reason, { code, cause });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const HEX64 = /^[0-9a-f]{64}$/;

/** "sha256:<64 hex>" → lowercase hex; anything else → undefined. */
export function parseDigestArgument(s: string): string | undefined {
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(s);
  return m ? m[1]!.toLowerCase() : undefined;
}

/** SHA-256 of a file, streamed, as lowercase hex. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash("sha256");
    const stream = createReadStream(path);
    stream.on("error", reject);
    stream.on("data", (chunk) => hash.update(chunk));
    stream.on("end", () => resolvePromise(hash.digest("hex")));
  });
}

const PACKAGE_NAME = "carapace-cara";
let packageRootCache: string | undefined;

/**
 * The directory holding cara's package.json, found by walking up from this module: src/update
 * under tsx, dist/src/update when built, node_modules/carapace-cara/dist/src/update when installed.
 * A package.json of another name on the way (e.g. a {"type":"module"} marker) is skipped.
 */
function packageRoot(): string {
  if (packageRootCache !== undefined) return packageRootCache;
  const here = dirname(fileURLToPath(import.meta.url));
  let first: string | undefined;
  for (let dir = here; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      first ??= dir;
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === PACKAGE_NAME) return (packageRootCache = dir);
      } catch {
        // unreadable manifest: keep walking
      }
    }
    if (dirname(dir) === dir) break;
  }
  if (first === undefined) throw new Error(`cannot find the cara package root (no package.json above ${here})`);
  return (packageRootCache = first);
}

const PINNED_ROOT = "assets/sigstore/trusted_root.json";

/** The pinned Sigstore public-good trusted root shipped with cara (assets/sigstore/trusted_root.json). */
export function defaultTrustedRootPath(): string {
  // A platform executable has it embedded (src/package-files.ts); the label names the executable.
  return runningAsExecutable() ? packageFileLabel(PINNED_ROOT) : join(packageRoot(), PINNED_ROOT);
}

// ---------------------------------------------------------------------------------------------
// Lazy library loading

type Libs = {
  bundle: typeof import("@sigstore/bundle");
  core: typeof import("@sigstore/core");
  specs: typeof import("@sigstore/protobuf-specs");
  rekorV2: typeof import("@sigstore/protobuf-specs/rekor/v2");
  verify: typeof import("@sigstore/verify");
  p256: typeof import("@noble/curves/nist.js")["p256"];
};
let libsPromise: Promise<Libs> | undefined;

function libs(): Promise<Libs> {
  libsPromise ??= (async () => {
    const [bundle, core, specs, rekorV2, verify, nist] = await Promise.all([
      import("@sigstore/bundle"),
      import("@sigstore/core"),
      import("@sigstore/protobuf-specs"),
      import("@sigstore/protobuf-specs/rekor/v2"),
      import("@sigstore/verify"),
      import("@noble/curves/nist.js"),
    ]);
    return { bundle, core, specs, rekorV2, verify, p256: nist.p256 };
  })();
  libsPromise.catch(() => (libsPromise = undefined));
  return libsPromise;
}

// ---------------------------------------------------------------------------------------------
// Trusted root

function trustedRootError(path: string, reason: string, cause?: unknown): UpdateVerificationError {
  return new UpdateVerificationError("trusted_root", `failed to initialize sigstore trust root from ${path}: ${reason}`, {
    code: "TRUSTED_ROOT_ERROR",
    cause,
  });
}

const trustCache = new WeakMap<object, TrustMaterial>();

/** Builds (and caches per JSON object) the trust material; errors name the source. */
function trustMaterial(l: Libs, source: TrustedRootSource): TrustMaterial {
  const json = source.json;
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw trustedRootError(source.path, "not a Sigstore trusted root (expected a JSON object)");
  }
  const cached = trustCache.get(json);
  if (cached) return cached;
  const obj = json as Record<string, unknown>;
  for (const field of ["certificateAuthorities", "tlogs", "ctlogs"] as const) {
    const v = obj[field];
    if (!Array.isArray(v) || v.length === 0) {
      throw trustedRootError(source.path, `not a usable Sigstore trusted root ('${field}' is missing or empty)`);
    }
  }
  const window = validityWindowProblem(obj);
  if (window !== undefined) throw trustedRootError(source.path, `malformed trusted root: ${window}`);
  let tm: TrustMaterial;
  try {
    tm = l.verify.toTrustMaterial(l.specs.TrustedRoot.fromJSON(json));
  } catch (err) {
    throw trustedRootError(source.path, `invalid trusted root (${errorText(err)})`, err);
  }
  trustCache.set(json, tm);
  return tm;
}

/** Checks that a trusted root document is usable for verification; errors name `source.path`. */
export async function checkTrustedRoot(source: TrustedRootSource): Promise<void> {
  trustMaterial(await libs(), source);
}

/** Reads and checks a trusted_root.json (default: the pinned one). Errors name the file. */
export async function loadTrustedRoot(path?: string): Promise<TrustedRootSource> {
  const pinned = path === undefined || path === defaultTrustedRootPath();
  const file = pinned ? defaultTrustedRootPath() : resolve(path);
  let text: string;
  try {
    // The pinned root is read where cara ships it: its directory, or embedded in the executable.
    text = pinned && runningAsExecutable() ? (await readPackageFile(PINNED_ROOT)).toString("utf8") : await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw trustedRootError(file, code === "ENOENT" ? "file not found" : `cannot read the file (${errorText(err)})`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw trustedRootError(file, `not valid JSON (${errorText(err)})`, err);
  }
  const source: TrustedRootSource = { path: file, json };
  trustMaterial(await libs(), source); // validate now, so a bad file is reported at load time
  return source;
}

// ---------------------------------------------------------------------------------------------
// Identity policy

/**
 * The matcher for an expected identity, always over the whole SAN: `exact` is string equality
 * (the same as an escaped, anchored pattern); `regexp` is used as given but always wrapped as
 * ^(?:…)$ — even when it already starts with ^ and ends with $, because "^a|b$" would otherwise
 * match anything ending in b (wrapping an anchored pattern does not change what it matches).
 */
export function identityMatcher(identity: IdentityMatcher): (san: string) => boolean {
  if (identity !== null && typeof identity === "object" && "exact" in identity && typeof identity.exact === "string") {
    const expected = identity.exact;
    if (expected === "") throw verifyError("the expected certificate identity is empty", "POLICY_ERROR");
    return (san) => san === expected;
  }
  if (identity !== null && typeof identity === "object" && "regexp" in identity && typeof identity.regexp === "string") {
    if (identity.regexp === "") throw verifyError("the expected certificate identity pattern is empty", "POLICY_ERROR");
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${identity.regexp})$`);
    } catch (err) {
      throw verifyError(`invalid certificate identity pattern '${identity.regexp}' (${errorText(err)})`, "POLICY_ERROR", err);
    }
    return (san) => re.test(san);
  }
  throw verifyError("no expected certificate identity given", "POLICY_ERROR");
}

function describeIdentity(identity: IdentityMatcher): string {
  return "exact" in identity ? identity.exact : `/${identity.regexp}/`;
}

// ---------------------------------------------------------------------------------------------
// Digest-mode signature content

const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const OID_FULCIO_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1";
const OID_FULCIO_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8";

function bufferEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The signature content handed to the library verifier instead of its MessageSignatureContent
 * (which would need the artifact bytes): everything is checked against the given digest.
 */
class DigestSignatureContent implements SignatureContent {
  constructor(
    readonly signature: Buffer,
    private readonly messageDigest: Buffer,
    private readonly expectedDigest: Buffer,
    private readonly p256: Libs["p256"],
  ) {}

  /** Tlog body check: the entry records the bundle's signature. */
  compareSignature(signature: Buffer): boolean {
    return bufferEqual(signature, this.signature);
  }

  /** Tlog body check: the entry's hash is the bundle's messageDigest AND the artifact's digest. */
  compareDigest(digest: Buffer): boolean {
    const a = bufferEqual(digest, this.messageDigest);
    const b = bufferEqual(digest, this.expectedDigest);
    return a && b;
  }

  /** ECDSA P-256 over the artifact digest itself (no re-hashing). */
  verifySignature(key: KeyObject): boolean {
    if (!bufferEqual(this.messageDigest, this.expectedDigest)) return false;
    const point = p256PublicKey(key);
    try {
      return this.p256.verify(this.signature, this.expectedDigest, point, { prehash: false, format: "der", lowS: false });
    } catch {
      return false;
    }
  }
}

/** Uncompressed SEC1 point of a P-256 public key; other key types are refused. */
function p256PublicKey(key: KeyObject): Uint8Array {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve !== "prime256v1") {
    const type = key.asymmetricKeyType === "ec" ? `ec/${curve ?? "unknown curve"}` : (key.asymmetricKeyType ?? "unknown");
    throw verifyError(`unsupported key type ${type} in the signing certificate (only ECDSA P-256 with SHA-256 is accepted)`, "UNSUPPORTED_KEY_TYPE");
  }
  const jwk = key.export({ format: "jwk" });
  const x = Buffer.from(jwk.x ?? "", "base64url");
  const y = Buffer.from(jwk.y ?? "", "base64url");
  if (x.length !== 32 || y.length !== 32) throw verifyError("malformed P-256 public key in the signing certificate", "UNSUPPORTED_KEY_TYPE");
  return Buffer.concat([Buffer.from([0x04]), x, y]);
}

// ---------------------------------------------------------------------------------------------
// Our checks beyond the library

/** Strict ASCII (printable) decoding: the library decodes with 'ascii', which masks the high bit. */
function printableAscii(bytes: Buffer): string | undefined {
  for (const b of bytes) if (b < 0x20 || b > 0x7e) return undefined;
  return bytes.toString("latin1");
}

/** The certificate's single SAN (URI or email). Fulcio certificates carry exactly one. */
function certificateIdentity(cert: X509Certificate): string {
  const ext = cert.extension(OID_SUBJECT_ALT_NAME);
  const names = ext?.valueObj.subs[0]?.subs ?? [];
  if (names.length === 0) throw verifyError("the signing certificate has no identity (subject alternative name)", "UNTRUSTED_SIGNER_ERROR");
  if (names.length !== 1)
    throw verifyError(`the signing certificate has ${names.length} subject alternative names (exactly one is accepted)`, "UNTRUSTED_SIGNER_ERROR");
  const name = names[0]!;
  if (!name.tag.isContextSpecific(6) && !name.tag.isContextSpecific(1)) {
    throw verifyError("the signing certificate's identity is not a URI or email address", "UNTRUSTED_SIGNER_ERROR");
  }
  const value = printableAscii(name.value);
  if (value === undefined || value === "")
    throw verifyError("the signing certificate's identity contains non-printable or non-ASCII characters", "UNTRUSTED_SIGNER_ERROR");
  return value;
}

/** Fulcio OIDC issuer: v2 extension (DER UTF8String), else v1 (raw string). */
function certificateIssuer(cert: X509Certificate): string | undefined {
  const v2 = cert.extension(OID_FULCIO_ISSUER_V2);
  if (v2) {
    const s = v2.valueObj.subs[0];
    if (s?.tag.number !== 12 /* UTF8String */) return undefined;
    return printableAscii(s.value);
  }
  const v1 = cert.extension(OID_FULCIO_ISSUER_V1);
  return v1 ? printableAscii(v1.value) : undefined;
}

/** The leaf must be an end-entity code-signing certificate. */
function checkCodeSigning(cert: X509Certificate): void {
  if (cert.isCA || cert.extBasicConstraints?.isCA) throw verifyError("the signing certificate is a CA certificate", "CERTIFICATE_ERROR");
  const ku = cert.extKeyUsage;
  if (!ku?.digitalSignature) throw verifyError("the signing certificate is not valid for digital signatures (key usage)", "CERTIFICATE_ERROR");
  const eku = cert.extension(OID_EXT_KEY_USAGE);
  const purposes = (eku?.valueObj.subs[0]?.subs ?? []).map((o) => {
    try {
      return o.toOID();
    } catch {
      return "";
    }
  });
  if (!purposes.includes(OID_CODE_SIGNING))
    throw verifyError("the signing certificate is not a code-signing certificate (extended key usage)", "CERTIFICATE_ERROR");
}

/** DER of the bundle's leaf certificate. */
function leafDER(bundle: Bundle): Buffer | undefined {
  const c = bundle.verificationMaterial.content;
  if (c.$case === "certificate") return c.certificate.rawBytes;
  if (c.$case === "x509CertificateChain") return c.x509CertificateChain.certificates[0]?.rawBytes;
  return undefined;
}

/**
 * Each tlog entry must be a hashedrekord for sha256 of this digest, signed by this certificate
 * (the library compares digest and signature, not the certificate, nor the hash algorithm).
 */
function checkTLogBodies(l: Libs, entries: TransparencyLogEntry[], digestHex: string, leaf: Buffer, leafSpki: Buffer): void {
  const mismatch = (why: string) => verifyError(`the transparency-log entry does not match the bundle (${why})`, "TLOG_BODY_ERROR");
  for (const entry of entries) {
    const kind = entry.kindVersion?.kind;
    const version = entry.kindVersion?.version;
    if (kind !== "hashedrekord")
      throw verifyError(`transparency-log entry of kind '${kind}' is not accepted for an artifact signature (expected hashedrekord)`, "TLOG_BODY_ERROR");
    let body: unknown;
    try {
      body = JSON.parse(entry.canonicalizedBody.toString("utf8"));
    } catch {
      throw mismatch("malformed body");
    }
    let algorithm: string | undefined;
    let hash: Buffer | undefined;
    let certOrKey: { cert?: Buffer; spki?: Buffer } = {};
    if (version === "0.0.1") {
      const spec = (body as { spec?: { data?: { hash?: { algorithm?: unknown; value?: unknown } }; signature?: { publicKey?: { content?: unknown } } } }).spec;
      algorithm = typeof spec?.data?.hash?.algorithm === "string" ? spec.data.hash.algorithm : undefined;
      const value = spec?.data?.hash?.value;
      hash = typeof value === "string" && HEX64.test(value) ? Buffer.from(value, "hex") : undefined;
      const pk = spec?.signature?.publicKey?.content;
      if (typeof pk === "string") {
        const pem = Buffer.from(pk, "base64").toString("utf8");
        try {
          if (pem.includes("CERTIFICATE-----")) certOrKey = { cert: l.core.pem.toDER(pem) };
          else if (pem.includes("PUBLIC KEY-----")) certOrKey = { spki: l.core.pem.toDER(pem) };
        } catch {
          certOrKey = {};
        }
      }
    } else if (version === "0.0.2") {
      const e = l.rekorV2.Entry.fromJSON(body);
      const spec = e.spec?.spec;
      if (spec?.$case !== "hashedRekordV002") throw mismatch("not a hashedrekord v0.0.2 body");
      const data = spec.hashedRekordV002.data;
      algorithm = data?.algorithm === l.specs.HashAlgorithm.SHA2_256 ? "sha256" : String(data?.algorithm);
      hash = data?.digest;
      const v = spec.hashedRekordV002.signature?.verifier?.verifier;
      if (v?.$case === "x509Certificate") certOrKey = { cert: v.x509Certificate.rawBytes };
      else if (v?.$case === "publicKey") certOrKey = { spki: v.publicKey.rawBytes };
    } else {
      throw verifyError(`unsupported hashedrekord version '${version}' in the transparency-log entry`, "TLOG_BODY_ERROR");
    }
    if (algorithm !== "sha256") throw mismatch(`hash algorithm '${algorithm}', expected sha256`);
    if (!hash || !bufferEqual(hash, Buffer.from(digestHex, "hex"))) throw mismatch("it records a different digest");
    const sameKey = certOrKey.cert ? bufferEqual(certOrKey.cert, leaf) : certOrKey.spki ? bufferEqual(certOrKey.spki, leafSpki) : false;
    if (!sameKey) throw mismatch("it records a different signing certificate");
  }
}

/** A base64 PEM certificate as tlog bodies record it → DER; undefined when it is not one. */
function certificateFromBase64Pem(l: Libs, value: unknown): Buffer | undefined {
  if (typeof value !== "string") return undefined;
  const pem = Buffer.from(value, "base64").toString("utf8");
  if (!pem.includes("CERTIFICATE-----")) return undefined;
  try {
    return l.core.pem.toDER(pem);
  } catch {
    return undefined;
  }
}

/**
 * Each tlog entry of an attestation must be a dsse 0.0.1 or intoto 0.0.2 entry whose payload
 * hash is sha256 of this payload, with one signature made by this certificate (the library
 * compares the hash value and the signature, not the algorithm, nor the certificate).
 */
function checkDsseTLogBodies(l: Libs, entries: TransparencyLogEntry[], payload: Buffer, leaf: Buffer): void {
  const mismatch = (why: string) => verifyError(`the transparency-log entry does not match the attestation (${why})`, "TLOG_BODY_ERROR");
  const payloadHash = createHash("sha256").update(payload).digest("hex");
  for (const entry of entries) {
    const kind = entry.kindVersion?.kind;
    const version = entry.kindVersion?.version;
    let body: unknown;
    try {
      body = JSON.parse(entry.canonicalizedBody.toString("utf8"));
    } catch {
      throw mismatch("malformed body");
    }
    let hash: { algorithm?: unknown; value?: unknown } | undefined;
    let signatures: unknown[] | undefined;
    let cert: Buffer | undefined;
    if (kind === "dsse" && version === "0.0.1") {
      const spec = (body as { spec?: { payloadHash?: typeof hash; signatures?: { verifier?: unknown }[] } }).spec;
      hash = spec?.payloadHash;
      signatures = spec?.signatures;
      cert = certificateFromBase64Pem(l, spec?.signatures?.[0]?.verifier);
    } else if (kind === "intoto" && version === "0.0.2") {
      const content = (body as { spec?: { content?: { payloadHash?: typeof hash; envelope?: { signatures?: { publicKey?: unknown }[] } } } }).spec?.content;
      hash = content?.payloadHash;
      signatures = content?.envelope?.signatures;
      cert = certificateFromBase64Pem(l, content?.envelope?.signatures?.[0]?.publicKey);
    } else {
      throw verifyError(
        `transparency-log entry of kind '${kind} ${version}' is not accepted for an attestation (expected dsse 0.0.1 or intoto 0.0.2)`,
        "TLOG_BODY_ERROR",
      );
    }
    if (hash?.algorithm !== "sha256") throw mismatch(`payload hash algorithm '${String(hash?.algorithm)}', expected sha256`);
    if (hash.value !== payloadHash) throw mismatch("it records a different payload");
    if (signatures?.length !== 1) throw mismatch(`it records ${signatures?.length ?? 0} signatures, expected 1`);
    if (!cert || !bufferEqual(cert, leaf)) throw mismatch("it records a different signing certificate");
  }
}

// ---------------------------------------------------------------------------------------------
// Error mapping

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A message a person can act on for a @sigstore/verify VerificationError/PolicyError. */
function describeLibraryError(code: string, message: string, cause: unknown): string {
  const inner = cause instanceof Error ? cause.message : undefined;
  switch (code) {
    case "SIGNATURE_ERROR":
      return "signature does not verify (the artifact or the bundle was modified)";
    case "CERTIFICATE_ERROR":
      if (/SCT verification failed/.test(message)) return "the certificate's SCT does not verify against a trusted certificate-transparency log";
      if (/expected \d+ SCTs/.test(message)) return `the signing certificate has no verifiable SCT (certificate transparency): ${message}`;
      if (inner && /not valid or expired/.test(inner))
        return "the signing certificate was not valid at the signing time (expired or not yet valid when it was logged/timestamped)";
      if (inner && /certificate path/.test(inner)) return `the signing certificate is not issued by a trusted Sigstore CA (${inner})`;
      if (/Failed to verify certificate chain/.test(message) && !inner) return "no trusted Sigstore CA was valid at the signing time";
      return `signing certificate rejected: ${message}${inner ? ` (${inner})` : ""}`;
    case "TLOG_ERROR":
      return `no transparency-log entry (${message})`;
    case "TLOG_MISSING_INCLUSION_ERROR":
      return "the transparency-log entry has neither an inclusion proof nor an inclusion promise";
    case "TLOG_INCLUSION_PROMISE_ERROR":
      return "the transparency-log inclusion promise (SET) does not verify against a trusted Rekor key";
    case "TLOG_INCLUSION_PROOF_ERROR":
      return `the transparency-log inclusion proof does not verify: ${message}`;
    case "TLOG_BODY_ERROR":
      if (message === "digest mismatch") return "the transparency-log entry does not match the bundle (it records a different digest)";
      if (message === "signature mismatch") return "the transparency-log entry does not match the bundle (it records a different signature)";
      return `the transparency-log entry does not match the bundle (${message})`;
    case "TIMESTAMP_ERROR":
      if (/expected \d+ timestamps/.test(message)) return `no verifiable timestamp (${message})`;
      return `timestamp verification failed: ${message}`;
    case "PUBLIC_KEY_ERROR":
      return `public key rejected: ${message}`;
    case "UNTRUSTED_SIGNER_ERROR":
      return `untrusted signer: ${message}`;
    default:
      return `${message}${inner ? ` (${inner})` : ""}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The verification

/** Verifies a Sigstore bundle for the artifact with the given SHA-256, fully offline. */
export async function verifyBundle(input: VerifyBundleInput): Promise<VerifiedSignature> {
  // Inputs (programming/policy errors are still refusals, never a pass).
  const digest = typeof input.digest === "string" ? input.digest.toLowerCase() : "";
  if (!HEX64.test(digest)) throw verifyError(`invalid artifact digest '${String(input.digest)}' (expected 64 hex characters of SHA-256)`, "INVALID_DIGEST");
  const matches = identityMatcher(input.identity);
  if (typeof input.issuer !== "string" || input.issuer === "") throw verifyError("no expected certificate issuer given", "POLICY_ERROR");
  const expectedDigest = Buffer.from(digest, "hex");

  const l = await libs();
  const tm = trustMaterial(l, input.trustedRoot);

  // 1. Parse.
  const bytes = input.bundle;
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw parseError("the bundle is empty", "BUNDLE_EMPTY");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw parseError("the bundle is not UTF-8 text", undefined, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw parseError(`the bundle is not valid JSON (truncated or malformed: ${errorText(err)})`, "BUNDLE_JSON_ERROR", err);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw parseError("not a Sigstore bundle (expected a JSON object)");
  if (input.attestation === undefined && "dsseEnvelope" in json && (json as { dsseEnvelope?: unknown }).dsseEnvelope != null) throw dsseRefused();
  let bundle: Bundle;
  try {
    bundle = l.bundle.bundleFromJSON(json);
  } catch (err) {
    const fields = (err as { fields?: unknown }).fields;
    const detail = Array.isArray(fields) && fields.length > 0 ? `invalid or missing: ${fields.join(", ")}` : errorText(err);
    throw parseError(`not a Sigstore bundle (${detail})`, undefined, err);
  }
  const content = bundle.content;
  if (content.$case === "dsseEnvelope" && input.attestation === undefined) throw dsseRefused();
  if (bundle.verificationMaterial.content.$case === "publicKey") {
    throw verifyError("the bundle is signed with a public key, not a Sigstore certificate (key-based signatures are not accepted)", "PUBLIC_KEY_ERROR");
  }
  const leaf = leafDER(bundle);
  if (!leaf) throw parseError("the bundle has no signing certificate");
  let entity: SignedEntity;
  try {
    entity = l.verify.toSignedEntity(bundle);
  } catch (err) {
    throw parseError(`malformed certificate or timestamp in the bundle (${errorText(err)})`, undefined, err);
  }
  if (entity.key.$case !== "certificate") throw verifyError("the bundle has no signing certificate", "CERTIFICATE_ERROR");
  const cert = entity.key.certificate;

  // 2. A message signature: the digest chain, artifact digest == bundle messageDigest (== tlog
  //    body hash, below). An attestation: an in-toto payload, signed over its PAE (the library's
  //    own DSSE signature content); its statement is read once everything else is verified.
  if (content.$case === "messageSignature") {
    const md = content.messageSignature.messageDigest;
    if (!md || md.algorithm !== l.specs.HashAlgorithm.SHA2_256 || md.digest.length !== 32) {
      const alg = md ? (l.specs.HashAlgorithm[md.algorithm] ?? String(md.algorithm)) : "none";
      throw verifyError(`unsupported message digest algorithm ${alg} in the bundle (only SHA2_256 is accepted)`, "UNSUPPORTED_DIGEST");
    }
    if (!bufferEqual(md.digest, expectedDigest)) {
      throw verifyError("the artifact's SHA-256 does not match the bundle (modified artifact?)", "ARTIFACT_DIGEST_MISMATCH");
    }
    entity.signature = new DigestSignatureContent(content.messageSignature.signature, md.digest, expectedDigest, l.p256);
  } else {
    statementStep(() => checkPayloadType(content.dsseEnvelope.payloadType));
  }
  if (bundle.verificationMaterial.tlogEntries.length === 0) {
    throw verifyError("no transparency-log entry in the bundle (an artifact must be logged in Rekor)", "TLOG_MISSING");
  }

  // 3. The library verifier, default thresholds (tlog 1, ctlog 1, timestamp 1).
  try {
    new l.verify.Verifier(tm).verify(entity);
  } catch (err) {
    if (err instanceof UpdateVerificationError) throw err;
    if (err instanceof l.verify.VerificationError || err instanceof l.verify.PolicyError) {
      throw verifyError(describeLibraryError(err.code, err.message, err.cause), err.code, err);
    }
    throw verifyError(errorText(err), "VERIFY_ERROR", err);
  }

  // 4. Our checks: tlog bodies bound to this digest and certificate; code-signing leaf; policy.
  try {
    if (content.$case === "messageSignature") checkTLogBodies(l, bundle.verificationMaterial.tlogEntries, digest, leaf, cert.publicKey);
    else checkDsseTLogBodies(l, bundle.verificationMaterial.tlogEntries, content.dsseEnvelope.payload, leaf);
    checkCodeSigning(cert);
  } catch (err) {
    if (err instanceof UpdateVerificationError) throw err;
    throw verifyError(errorText(err), "VERIFY_ERROR", err);
  }
  const issuer = certificateIssuer(cert);
  if (issuer === undefined) {
    throw verifyError(`the signing certificate has no (readable) OIDC issuer extension, expected '${input.issuer}'`, "UNTRUSTED_SIGNER_ERROR");
  }
  if (issuer !== input.issuer) {
    throw verifyError(`certificate issuer '${issuer}' does not match expected '${input.issuer}'`, "UNTRUSTED_SIGNER_ERROR");
  }
  const identity = certificateIdentity(cert);
  if (!matches(identity)) {
    throw verifyError(`certificate identity '${identity}' does not match expected '${describeIdentity(input.identity)}'`, "UNTRUSTED_SIGNER_ERROR");
  }

  // 5. An attestation's signed statement: in-toto v1, an allowed predicate, about this artifact.
  let provenance: VerifiedProvenance | undefined;
  if (content.$case === "dsseEnvelope") {
    const allowed = input.attestation?.predicateTypes ?? [];
    provenance = statementStep(() => {
      const statement = parseStatement(content.dsseEnvelope.payload);
      checkPredicateType(statement, allowed);
      return describeProvenance(statement, subjectFor(statement, digest));
    });
  }

  const entries = bundle.verificationMaterial.tlogEntries;
  const timed = entries.find((e) => e.integratedTime && e.integratedTime !== "0");
  const timestamps =
    (bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps.length ?? 0) +
    entries.filter((e) => e.inclusionPromise !== undefined && e.integratedTime && e.integratedTime !== "0").length;
  const result: VerifiedSignature = { identity, issuer, digest, tlogEntries: entries.length, timestamps };
  if (entries[0]) result.logIndex = entries[0].logIndex;
  if (timed) result.integratedTime = new Date(Number(timed.integratedTime) * 1000).toISOString();
  if (provenance) result.provenance = provenance;
  return result;
}

function dsseRefused(): UpdateVerificationError {
  return parseError(
    "a DSSE bundle (attestation) is not accepted as the artifact's signature; expected a message-signature bundle (cosign sign-blob --bundle). Check build provenance with `cara update verify`",
    "BUNDLE_DSSE",
  );
}

/** Runs a check of the statement, turning its refusal into a verification failure with its code. */
function statementStep<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof StatementError) throw verifyError(err.message, err.code, err);
    throw err;
  }
}
