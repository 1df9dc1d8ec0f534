/**
 * The keys a local command (offline restore, local verification) checks a manifest with: the
 * current server secret (CARAPACE_SERVER_SECRET, else `<state>/auth/server-secret`), the previous
 * ones this state dir recorded, and a secret the operator names with --secret-file (e.g. a fresh
 * host restoring an archive made under the old deployment's secret). Nothing is written.
 */
import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import type { StatePaths } from "../state/paths.js";
import { MIN_SECRET_LENGTH, SecretError } from "../state/secrets.js";
import { manifestKey, type VerificationKey } from "./manifest.js";
import { readPreviousKeys } from "./previous-secrets.js";

export interface LocalKeys {
  /** The secret that counts as this deployment's own. */
  secret: string;
  /** Every other key that may have signed the archive. */
  previousKeys: VerificationKey[];
}

async function readSecretFile(path: string, what: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw new SecretError(`refusing to read ${what} ${path}: it is a symbolic link`);
    throw new SecretError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  const value = text.trim();
  if (value.length < MIN_SECRET_LENGTH)
    throw new SecretError(`${what} ${path} holds no server secret (${value.length} characters; at least ${MIN_SECRET_LENGTH})`);
  return value;
}

/** See the file comment. Throws SecretError when there is no secret at all, or `secretFile` is unusable. */
export async function localVerificationKeys(paths: StatePaths, env: NodeJS.ProcessEnv, secretFile?: string): Promise<LocalKeys> {
  let extra: string | undefined;
  if (secretFile !== undefined) {
    extra = await readSecretFile(secretFile, "secret file");
    if (extra === undefined) throw new SecretError(`secret file ${secretFile} does not exist`);
  }
  const envSecret = env.CARAPACE_SERVER_SECRET;
  const own = envSecret !== undefined && envSecret !== "" ? envSecret : await readSecretFile(paths.serverSecret, "server secret file");
  const secret = own ?? extra;
  if (secret === undefined) {
    throw new SecretError(
      `no server secret to verify the backup with: set CARAPACE_SERVER_SECRET, keep ${paths.serverSecret}, or pass --secret-file FILE (or --allow-foreign)`,
    );
  }
  const previousKeys = await readPreviousKeys(paths, secret);
  if (extra !== undefined && extra !== secret) {
    const k = manifestKey(extra);
    if (!previousKeys.some((p) => p.keyId === k.keyId)) previousKeys.unshift(k);
  }
  return { secret, previousKeys };
}
