import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { readFile, stat, chmod } from "node:fs/promises";
import { writeFileDurable } from "./durable.js";
import type { StatePaths } from "./paths.js";

export const MIN_SECRET_LENGTH = 32;

export type TokenSource = "env" | "file";
export type SecretSource = "env" | "generated";

export interface Credentials {
  token: string;
  tokenSource: TokenSource;
  secret: string;
  secretSource: SecretSource;
  /** Things an operator should know (e.g. a loosened file mode that was tightened). */
  warnings: string[];
}

export class SecretError extends Error {}

/** 32 random bytes, base64url: the format of generated tokens and secrets. */
export function generateSecretValue(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Reads a generated secret file, or creates it (0600, durable) when missing. An empty or
 * unreadable file is refused: regenerating it silently would lock out every client.
 */
async function readOrCreate(path: string, what: string, warnings: string[]): Promise<string> {
  let text: string | undefined;
  try {
    text = await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new SecretError(`refusing to read ${what} ${path}: it is a symbolic link`);
    if (code !== "ENOENT") throw new SecretError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  if (text === undefined) {
    const value = generateSecretValue();
    await writeFileDurable(path, `${value}\n`);
    return value;
  }
  const value = text.trim();
  if (value.length < MIN_SECRET_LENGTH) {
    throw new SecretError(
      `${what} file ${path} is empty or too short (${value.length} characters); delete it to generate a new one, or restore it from backup`,
    );
  }
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    await chmod(path, 0o600);
    warnings.push(`${what} file ${path} was readable by others; its mode was reset to 0600`);
  }
  return value;
}

/**
 * Resolves the bearer token and the server secret: from CARAPACE_GATEWAY_TOKEN and
 * CARAPACE_SERVER_SECRET when set, else generated on first start into `<state>/auth/`.
 */
export async function loadCredentials(paths: StatePaths, env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const warnings: string[] = [];
  const envToken = env.CARAPACE_GATEWAY_TOKEN;
  let token: string;
  let tokenSource: TokenSource;
  if (envToken !== undefined && envToken.trim() !== "") {
    token = envToken.trim();
    tokenSource = "env";
  } else {
    token = await readOrCreate(paths.token, "token", warnings);
    tokenSource = "file";
  }
  const envSecret = env.CARAPACE_SERVER_SECRET;
  let secret: string;
  let secretSource: SecretSource;
  if (envSecret !== undefined && envSecret !== "") {
    if (envSecret.length < MIN_SECRET_LENGTH) {
      throw new SecretError(
        `CARAPACE_SERVER_SECRET is too short (${envSecret.length} characters; at least ${MIN_SECRET_LENGTH} required). ` +
          `Generate one with: openssl rand -base64 48`,
      );
    }
    secret = envSecret;
    secretSource = "env";
  } else {
    secret = await readOrCreate(paths.serverSecret, "server secret", warnings);
    secretSource = "generated";
  }
  return { token, tokenSource, secret, secretSource, warnings };
}

/** The token a local `cara` uses: CARAPACE_GATEWAY_TOKEN, else the state dir's token file. */
export async function readLocalToken(paths: StatePaths, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const envToken = env.CARAPACE_GATEWAY_TOKEN;
  if (envToken !== undefined && envToken.trim() !== "") return envToken.trim();
  try {
    const text = await readFile(paths.token, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
    const value = text.trim();
    return value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}

/**
 * The deployment's server secret as a local command finds it, without a server: the
 * CARAPACE_SERVER_SECRET environment variable, else `<state>/auth/server-secret` (never created
 * here). `from` names where it came from, for messages; the value is never printed.
 */
export async function readLocalServerSecret(paths: StatePaths, env: NodeJS.ProcessEnv = process.env): Promise<{ secret: string; from: string } | undefined> {
  const fromEnv = env.CARAPACE_SERVER_SECRET?.trim();
  if (fromEnv) return { secret: fromEnv, from: "CARAPACE_SERVER_SECRET" };
  try {
    const value = (await readFile(paths.serverSecret, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW })).trim();
    return value === "" ? undefined : { secret: value, from: paths.serverSecret };
  } catch {
    return undefined;
  }
}
