/**
 * `<state>/auth/previous-secrets`: the manifest verification keys (never the secrets) of every
 * server secret this state dir has used, so that archives signed before the secret changed stay
 * verifiable. JSON, 0600, written through the durable-write helper:
 *
 *   { "format": "carapace-previous-secrets", "version": 1,
 *     "keys": [{ "keyId": "<16 hex>", "key": "<base64url, 32 bytes>", "since": "<ISO time>" }] }
 *
 * The server records its current key at start; when the current key is not yet listed (first
 * start, a new CARAPACE_SERVER_SECRET, a regenerated auth/server-secret), it is added, and the
 * generated auth/server-secret is added too when CARAPACE_SERVER_SECRET replaced it. Every
 * listed key but the current one is a previous key.
 */
import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import { MIN_SECRET_LENGTH, SecretError } from "../state/secrets.js";
import { writeFileDurable } from "../state/durable.js";
import type { StatePaths } from "../state/paths.js";
import { keyIdOf, manifestKey, type VerificationKey } from "./manifest.js";

const FORMAT = "carapace-previous-secrets";

interface StoredKey {
  keyId: string;
  key: string;
  since: string;
}

/** Reads a file without following a symbolic link; undefined when it does not exist. */
async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new SecretError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

function corrupt(path: string, why: string): SecretError {
  return new SecretError(
    `${path} is unreadable (${why}); restore it from a copy, or delete it (archives signed with earlier server secrets then need --secret-file to verify)`,
  );
}

function parse(path: string, text: string): StoredKey[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corrupt(path, "not valid JSON");
  }
  const v = value as { format?: unknown; version?: unknown; keys?: unknown };
  if (typeof value !== "object" || value === null || v.format !== FORMAT || v.version !== 1 || !Array.isArray(v.keys)) {
    throw corrupt(path, `not a ${FORMAT} version 1 document`);
  }
  return v.keys.map((raw, i) => {
    const k = raw as Partial<StoredKey>;
    const key = typeof k?.key === "string" ? Buffer.from(k.key, "base64url") : undefined;
    if (key?.length !== 32 || typeof k.since !== "string" || k.keyId !== keyIdOf(key)) throw corrupt(path, `keys[${i}] is invalid`);
    return { keyId: k.keyId, key: k.key!, since: k.since };
  });
}

const toKey = (k: StoredKey): VerificationKey => ({ keyId: k.keyId, key: Buffer.from(k.key, "base64url") });

/** The generated auth/server-secret, when it exists and looks like a secret (it is never created here). */
async function storedSecret(paths: StatePaths): Promise<string | undefined> {
  const text = (await readIfPresent(paths.serverSecret))?.trim();
  return text !== undefined && text.length >= MIN_SECRET_LENGTH ? text : undefined;
}

export interface SecretHistory {
  /** Verification keys of the earlier secrets, newest first. */
  previousKeys: VerificationKey[];
  /** When the secret changed at this start: the key id of the one it replaced. */
  replaced?: string;
}

/**
 * Records the current server secret's key in previous-secrets (see the file comment) and returns
 * the keys of the earlier ones. A corrupt file is refused with the way out, never overwritten.
 */
export async function recordServerSecret(paths: StatePaths, secret: string, now: Date = new Date()): Promise<SecretHistory> {
  const text = await readIfPresent(paths.previousSecrets);
  const stored = text === undefined ? [] : parse(paths.previousSecrets, text);
  const current = manifestKey(secret);
  const added: StoredKey[] = [];
  const since = now.toISOString();
  const fileSecret = await storedSecret(paths);
  for (const s of fileSecret !== undefined && fileSecret !== secret ? [fileSecret, secret] : [secret]) {
    const k = manifestKey(s);
    if (!stored.some((x) => x.keyId === k.keyId) && !added.some((x) => x.keyId === k.keyId))
      added.push({ keyId: k.keyId, key: k.key.toString("base64url"), since });
  }
  const all = [...stored, ...added];
  if (added.length > 0) await writeFileDurable(paths.previousSecrets, `${JSON.stringify({ format: FORMAT, version: 1, keys: all }, null, 2)}\n`);
  const previousKeys = all
    .filter((k) => k.keyId !== current.keyId)
    .reverse()
    .map(toKey);
  const replaced = added.some((k) => k.keyId === current.keyId) ? previousKeys[0]?.keyId : undefined;
  return replaced === undefined ? { previousKeys } : { previousKeys, replaced };
}

/**
 * The previous keys as a local command sees them, writing nothing: previous-secrets and the
 * generated auth/server-secret, without `secret`'s own key.
 */
export async function readPreviousKeys(paths: StatePaths, secret: string): Promise<VerificationKey[]> {
  const text = await readIfPresent(paths.previousSecrets);
  const keys = (text === undefined ? [] : parse(paths.previousSecrets, text)).map(toKey).reverse();
  const fileSecret = await storedSecret(paths);
  if (fileSecret !== undefined) keys.push(manifestKey(fileSecret));
  const current = manifestKey(secret).keyId;
  return keys.filter((k, i) => k.keyId !== current && keys.findIndex((x) => x.keyId === k.keyId) === i);
}
