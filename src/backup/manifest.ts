/**
 * The backup manifest (`manifest.json`, the archive's second entry) and its HMAC.
 *
 *   { format: "carapace-backup", formatVersion: 2, caraVersion, createdAt (ISO, UTC), host,
 *     sections: [{name, files, bytes}], files: [{path, size, mode, sha256}], keyId, hmac }
 *
 * `hmac` is HMAC-SHA256 (lowercase hex) over the canonical JSON of the manifest without `hmac`
 * (object keys sorted by UTF-16 code units, no whitespace: RFC 8785 for the values used here),
 * keyed by HKDF-SHA256(ikm = server secret as UTF-8, salt = "carapace", info = "backup-manifest",
 * 32 bytes). The bytes of manifest.json are not signed, its parsed value is: how it is formatted
 * does not matter, but every field (and no unknown field) is covered.
 *
 * `keyId` (format version 2) names the key that signed the manifest without revealing it: the
 * first 16 hex digits of SHA-256("carapace backup key id\n" + key). Version 1 manifests, written
 * before key ids, have none and are checked against every known key; they are read as before. After the server secret changes, the verification keys of
 * earlier secrets (kept in `<state>/auth/previous-secrets`) still verify the archives they signed.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { SECTION_NAMES, displayPath, isSectionName, sectionOf, unsafePathRule, type SectionName } from "./sections.js";

export const MANIFEST_FORMAT = "carapace-backup";
export const MANIFEST_FORMAT_VERSION = 2;
export const HKDF_SALT = "carapace";
export const MANIFEST_HMAC_PURPOSE = "backup-manifest";

export interface ManifestSection {
  name: SectionName;
  files: number;
  bytes: number;
}

export interface ManifestFile {
  /** Archive path, starting with the section name (e.g. "tasks/queue.json"). */
  path: string;
  size: number;
  /** Permission bits, 0..0o777. */
  mode: number;
  /** Lowercase hex SHA-256 of the content. */
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  /** 1: written before key ids (no keyId); 2: with keyId. */
  formatVersion: 1 | typeof MANIFEST_FORMAT_VERSION;
  caraVersion: string;
  createdAt: string;
  host: string;
  sections: ManifestSection[];
  files: ManifestFile[];
  /** Id of the signing key (format version 2; absent in version 1). */
  keyId?: string;
  hmac: string;
}

export type UnsignedManifest = Omit<Manifest, "hmac" | "keyId">;

/** A manifest verification key (HKDF of a server secret) and its public id. */
export interface VerificationKey {
  keyId: string;
  key: Buffer;
}

/** A 32-byte key for one purpose, derived from the server secret with HKDF-SHA256 (salt "carapace"). */
export function deriveKey(secret: string, purpose: string): Buffer {
  if (secret === "") throw new Error("cannot derive a key from an empty server secret");
  return Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), Buffer.from(HKDF_SALT, "utf8"), Buffer.from(purpose, "utf8"), 32));
}

/** Canonical JSON: sorted object keys, no whitespace. Only for plain JSON values. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("canonicalJson: non-finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
}

/** The id of a verification key: 16 hex digits of a hash of it (the key cannot be recovered from it). */
export function keyIdOf(key: Buffer): string {
  return createHash("sha256").update("carapace backup key id\n").update(key).digest("hex").slice(0, 16);
}

/** The manifest verification key of a server secret. */
export function manifestKey(secret: string): VerificationKey {
  const key = deriveKey(secret, MANIFEST_HMAC_PURPOSE);
  return { keyId: keyIdOf(key), key };
}

function manifestMac(manifest: UnsignedManifest | Manifest, key: Buffer): Buffer {
  const { hmac: _ignored, ...unsigned } = manifest as Manifest;
  return createHmac("sha256", key).update(canonicalJson(unsigned), "utf8").digest();
}

/** Adds the signing key's id and the HMAC to a manifest. */
export function signManifest(manifest: UnsignedManifest, secret: string): Manifest {
  const { keyId, key } = manifestKey(secret);
  const withId = { ...manifest, keyId };
  return { ...withId, hmac: manifestMac(withId, key).toString("hex") };
}

function macMatches(manifest: Manifest, key: Buffer): boolean {
  if (typeof manifest.hmac !== "string" || !/^[0-9a-f]{64}$/.test(manifest.hmac)) return false;
  return timingSafeEqual(manifestMac(manifest, key), Buffer.from(manifest.hmac, "hex"));
}

/** True when the manifest's HMAC verifies with this secret (constant-time comparison). */
export function verifyManifestHmac(manifest: Manifest, secret: string): boolean {
  return macMatches(manifest, manifestKey(secret).key);
}

/**
 * The key among `keys` whose HMAC verifies the manifest, or undefined. A manifest with a key id is
 * checked only against the key of that id; one without (older archives) against each key.
 */
export function findSigningKey(manifest: Manifest, keys: readonly VerificationKey[]): VerificationKey | undefined {
  const candidates = manifest.keyId === undefined ? keys : keys.filter((k) => k.keyId === manifest.keyId);
  return candidates.find((k) => macMatches(manifest, k.key));
}

/** Sections and totals computed from a file list, in section order (sections without files included when listed). */
export function summarizeSections(files: readonly ManifestFile[], present: readonly SectionName[] = []): ManifestSection[] {
  const by = new Map<SectionName, ManifestSection>();
  for (const name of present) by.set(name, { name, files: 0, bytes: 0 });
  for (const f of files) {
    const name = sectionOf(f.path);
    if (name === undefined) throw new Error(`file '${displayPath(f.path)}' is outside every backup section`);
    const s = by.get(name) ?? { name, files: 0, bytes: 0 };
    s.files += 1;
    s.bytes += f.size;
    by.set(name, s);
  }
  return SECTION_NAMES.filter((n) => by.has(n)).map((n) => by.get(n)!);
}

export type ManifestParseResult = { ok: true; manifest: Manifest } | { ok: false; kind: "manifest_invalid" | "version_unsupported"; message: string };

export interface ManifestParseOptions {
  /** Largest file size a manifest may list (default: no limit beyond safe integers). */
  maxFileBytes?: number;
}

const TOP_KEYS = ["format", "formatVersion", "caraVersion", "createdAt", "host", "sections", "files", "hmac"];
const OPTIONAL_TOP_KEYS = ["keyId"];
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

class Invalid extends Error {}

function fail(message: string): never {
  throw new Invalid(message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function exactKeys(obj: Record<string, unknown>, keys: readonly string[], where: string, optional: readonly string[] = []): void {
  for (const k of keys) if (!Object.hasOwn(obj, k)) fail(`${where} has no '${k}'`);
  for (const k of Object.keys(obj)) if (!keys.includes(k) && !optional.includes(k)) fail(`${where} has an unknown field '${displayPath(k, 60)}'`);
}

function count(v: unknown, where: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(`${where} must be a non-negative integer`);
  if (v > max) fail(`${where} is ${v}, over the limit of ${max}`);
  return v;
}

function text(v: unknown, where: string, maxLength: number, allowEmpty: boolean): string {
  if (typeof v !== "string") fail(`${where} must be a string`);
  if (!allowEmpty && v === "") fail(`${where} must not be empty`);
  if (v.length > maxLength) fail(`${where} is longer than ${maxLength} characters`);
  if (CONTROL.test(v)) fail(`${where} has a control character`);
  return v;
}

/**
 * Parses and strictly validates manifest.json: exact field set and types, known sections without
 * duplicates, safe unique file paths inside the listed sections (no path that is both a file and
 * a directory), sizes and modes in range, 64-hex hashes, section counts and byte sums that match
 * the file list. A format version newer than 1 is `version_unsupported`; everything else wrong
 * is `manifest_invalid` with a message naming the field. Does not check the HMAC.
 */
export function parseManifest(json: string | Uint8Array, options: ManifestParseOptions = {}): ManifestParseResult {
  let value: unknown;
  try {
    value = JSON.parse(typeof json === "string" ? json : new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (err) {
    return { ok: false, kind: "manifest_invalid", message: `manifest.json is not valid JSON (${(err as Error).message})` };
  }
  try {
    if (!isPlainObject(value)) fail("it is not a JSON object");
    if (value.format !== MANIFEST_FORMAT) fail(`'format' must be "${MANIFEST_FORMAT}"`);
    const version = value.formatVersion;
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) fail("'formatVersion' must be a positive integer");
    if (version > MANIFEST_FORMAT_VERSION) {
      return {
        ok: false,
        kind: "version_unsupported",
        message: `manifest format version ${version} is newer than this cara understands (${MANIFEST_FORMAT_VERSION}); upgrade cara to read this backup`,
      };
    }
    exactKeys(value, TOP_KEYS, "the manifest", OPTIONAL_TOP_KEYS);
    const keyId = value.keyId;
    if (version === 1 && keyId !== undefined) fail("'keyId' is not part of format version 1");
    if (version > 1 && keyId === undefined) fail("the manifest has no 'keyId'");
    if (keyId !== undefined && (typeof keyId !== "string" || !/^[0-9a-f]{16}$/.test(keyId))) fail("'keyId' must be 16 lowercase hex digits");
    const caraVersion = text(value.caraVersion, "'caraVersion'", 100, false);
    const createdAt = text(value.createdAt, "'createdAt'", 40, false);
    if (!ISO_UTC.test(createdAt) || Number.isNaN(Date.parse(createdAt))) fail("'createdAt' must be an ISO 8601 UTC time");
    const host = text(value.host, "'host'", 255, true);
    if (typeof value.hmac !== "string" || !/^[0-9a-f]{64}$/.test(value.hmac)) fail("'hmac' must be 64 lowercase hex digits");

    if (!Array.isArray(value.sections)) fail("'sections' must be an array");
    const sections: ManifestSection[] = [];
    const sectionNames = new Set<string>();
    value.sections.forEach((raw, i) => {
      const where = `sections[${i}]`;
      if (!isPlainObject(raw)) fail(`${where} must be an object`);
      exactKeys(raw, ["name", "files", "bytes"], where);
      const name = raw.name;
      if (typeof name !== "string" || !isSectionName(name)) {
        fail(
          `${where}.name '${typeof name === "string" ? displayPath(name, 60) : String(name)}' is not a known section (${SECTION_NAMES.join(", ")}); made by a newer cara?`,
        );
      }
      if (sectionNames.has(name)) fail(`section '${name}' is listed twice`);
      sectionNames.add(name);
      sections.push({ name, files: count(raw.files, `${where}.files`), bytes: count(raw.bytes, `${where}.bytes`) });
    });

    if (!Array.isArray(value.files)) fail("'files' must be an array");
    const files: ManifestFile[] = [];
    const paths = new Set<string>();
    const dirs = new Set<string>();
    const totals = new Map<string, { files: number; bytes: number }>();
    value.files.forEach((raw, i) => {
      const where = `files[${i}]`;
      if (!isPlainObject(raw)) fail(`${where} must be an object`);
      exactKeys(raw, ["path", "size", "mode", "sha256"], where);
      const path = raw.path;
      if (typeof path !== "string") fail(`${where}.path must be a string`);
      const rule = unsafePathRule(path);
      if (rule) fail(`${where}.path '${displayPath(path)}' ${rule}`);
      const section = sectionOf(path);
      if (section === undefined) fail(`${where}.path '${path}' is outside every backup section`);
      if (!sectionNames.has(section)) fail(`${where}.path '${path}' is in section '${section}', which 'sections' does not list`);
      if (paths.has(path)) fail(`'${path}' is listed twice`);
      if (dirs.has(path)) fail(`'${path}' is listed both as a file and as a directory`);
      const segments = path.split("/");
      for (let j = 1; j < segments.length; j++) {
        const dir = segments.slice(0, j).join("/");
        if (paths.has(dir)) fail(`'${dir}' is listed both as a file and as a directory`);
        dirs.add(dir);
      }
      paths.add(path);
      const size = count(raw.size, `${where}.size`, options.maxFileBytes ?? Number.MAX_SAFE_INTEGER);
      const mode = raw.mode;
      if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 0o777) fail(`${where}.mode must be an integer from 0 to 0o777`);
      const sha256 = raw.sha256;
      if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) fail(`${where}.sha256 must be 64 lowercase hex digits`);
      files.push({ path, size, mode, sha256 });
      const t = totals.get(section) ?? { files: 0, bytes: 0 };
      t.files += 1;
      t.bytes += size;
      totals.set(section, t);
    });
    for (const s of sections) {
      const t = totals.get(s.name) ?? { files: 0, bytes: 0 };
      if (t.files !== s.files || t.bytes !== s.bytes) {
        fail(`section '${s.name}' says ${s.files} files / ${s.bytes} bytes but the file list has ${t.files} / ${t.bytes}`);
      }
    }
    return {
      ok: true,
      manifest: {
        format: MANIFEST_FORMAT,
        formatVersion: version === 1 ? 1 : MANIFEST_FORMAT_VERSION,
        caraVersion,
        createdAt,
        host,
        sections,
        files,
        ...(typeof keyId === "string" ? { keyId } : {}),
        hmac: value.hmac,
      },
    };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, kind: "manifest_invalid", message: `manifest.json is invalid: ${err.message}` };
    throw err;
  }
}
