import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { executableAssetName } from "../executable-form.js";
import { fsyncDir, writeFileDurable } from "../state/durable.js";

/** transaction.json `state` and `phase`, spelt as the original Rust cara writes them. */
export const TX_STATES = ["in_progress", "applied", "failed"] as const;
export type TxState = (typeof TX_STATES)[number];
export const TX_PHASES = ["created", "downloading", "downloaded", "verified", "applying", "applied", "failed"] as const;
export type TxPhase = (typeof TX_PHASES)[number];

export const DEFAULT_MAX_ATTEMPTS = 3;
/** Marker and transaction files are small; anything bigger is not ours. */
const MAX_FILE_BYTES = 64 * 1024;

/** `<state>/updates/transaction.json`: the original Rust cara's schema, plus a few optional keys of ours. */
export interface UpdateTransaction {
  id: string;
  version: string;
  assetName: string;
  state: TxState;
  attempt: number;
  maxAttempts: number;
  startedAtMs: number;
  updatedAtMs: number;
  stagedPath: string | null;
  bundlePath: string | null;
  sha256: string | null;
  lastError: string | null;
  phase: TxPhase;
  retryable: boolean;
  applyConfirmedUntilMs?: number;
  fromVersion?: string;
  nextAttemptAtMs?: number;
  /** Phase a failure happened in (`phase` itself reads "failed"). */
  failedPhase?: TxPhase;
  /** Unknown keys written by a newer version, preserved on rewrite. */
  [extra: string]: unknown;
}

/** transaction.json is present but cannot be trusted: the operator decides (never auto-deleted). */
export class TransactionCorruptError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(
      `update transaction '${path}' is corrupt: ${detail}; inspect it, then run \`cara update --reset-transaction\` (it is kept as transaction.json.reset-<time>)`,
    );
  }
}

export function transactionPath(updatesDir: string): string {
  return join(updatesDir, "transaction.json");
}

/** Where a version's artifact and bundle are staged. */
export function stagedPaths(updatesDir: string, assetName: string) {
  const staged = join(updatesDir, assetName);
  return { staged, bundle: `${staged}.bundle` };
}

const SAFE_COMPONENT = /^[A-Za-z0-9._+-]+$/;
const EXECUTABLE_ASSETS = ["linux", "darwin"].flatMap((os) => ["x64", "arm64"].map((arch) => executableAssetName(os, arch)!));

/** Throws a plain message for every schema violation (the original Rust cara's wording). */
export function validateTransaction(tx: UpdateTransaction, updatesDir: string): void {
  const fail = (m: string): never => {
    throw new Error(m);
  };
  if (typeof tx.id !== "string" || tx.id === "") fail("update transaction id must be a non-empty string");
  if (typeof tx.version !== "string" || tx.version === "") fail("update transaction version cannot be empty");
  if (!SAFE_COMPONENT.test(tx.version) || tx.version === "." || tx.version === "..")
    fail(`update transaction version '${tx.version}' is not a safe path component`);
  if (typeof tx.assetName !== "string" || !SAFE_COMPONENT.test(tx.assetName))
    fail(`update transaction assetName '${String(tx.assetName)}' is not a safe file name`);
  // The tarball of that version, or a platform executable (whose name carries no version).
  if (tx.assetName !== `carapace-${tx.version}.tar.gz` && !EXECUTABLE_ASSETS.includes(tx.assetName))
    fail(`update transaction assetName '${tx.assetName}' does not match its version '${tx.version}'`);
  if (!(TX_STATES as readonly string[]).includes(tx.state)) fail(`update transaction state '${String(tx.state)}' is unknown`);
  if (!(TX_PHASES as readonly string[]).includes(tx.phase)) fail(`update transaction phase '${String(tx.phase)}' is unknown`);
  const isCount = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n >= 0;
  if (!isCount(tx.attempt) || !isCount(tx.maxAttempts) || tx.maxAttempts < 1 || tx.attempt > tx.maxAttempts) {
    fail(`update transaction attempt ${String(tx.attempt)}/${String(tx.maxAttempts)} is invalid`);
  }
  if (!isCount(tx.startedAtMs) || !isCount(tx.updatedAtMs)) fail("update transaction startedAtMs/updatedAtMs must be Unix milliseconds");
  if (tx.updatedAtMs < tx.startedAtMs) fail("update transaction updated_at_ms predates started_at_ms");
  if (typeof tx.retryable !== "boolean") fail("update transaction retryable must be a boolean");
  const expected = stagedPaths(updatesDir, tx.assetName);
  if (tx.stagedPath !== null && tx.stagedPath !== expected.staged)
    fail(`update transaction staged_path '${String(tx.stagedPath)}' does not match expected '${expected.staged}'`);
  if (tx.bundlePath !== null && tx.bundlePath !== expected.bundle)
    fail(`update transaction bundle_path '${String(tx.bundlePath)}' does not match expected '${expected.bundle}'`);
  if (tx.sha256 !== null && (typeof tx.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(tx.sha256)))
    fail("update transaction sha256 is not a 64-character hex digest");
  if (tx.lastError !== null && typeof tx.lastError !== "string") fail("update transaction lastError must be a string or null");
  for (const key of ["applyConfirmedUntilMs", "nextAttemptAtMs"] as const) {
    if (tx[key] !== undefined && !isCount(tx[key])) fail(`update transaction ${key} must be Unix milliseconds`);
  }
  if (tx.failedPhase !== undefined && !(TX_PHASES as readonly string[]).includes(tx.failedPhase))
    fail(`update transaction failedPhase '${String(tx.failedPhase)}' is unknown`);
}

/** Reads a small regular file without following a symlink; undefined when absent. */
export async function readSmallFile(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw new Error(`${path} is a symlink; refusing to follow it`);
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    if (st.size > MAX_FILE_BYTES) throw new Error(`${path} is ${st.size} bytes (more than ${MAX_FILE_BYTES})`);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/** Loads transaction.json; undefined when there is none; TransactionCorruptError when it cannot be trusted. */
export async function loadTransaction(updatesDir: string): Promise<UpdateTransaction | undefined> {
  const path = transactionPath(updatesDir);
  let text: string | undefined;
  try {
    text = await readSmallFile(path);
  } catch (err) {
    throw new TransactionCorruptError(path, (err as Error).message);
  }
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TransactionCorruptError(path, `not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new TransactionCorruptError(path, "not a JSON object");
  const tx = value as UpdateTransaction;
  for (const key of ["id", "version", "assetName", "state", "attempt", "maxAttempts", "startedAtMs", "updatedAtMs", "phase", "retryable"]) {
    if (!(key in tx)) throw new TransactionCorruptError(path, `missing required key '${key}'`);
  }
  for (const key of ["stagedPath", "bundlePath", "sha256", "lastError"] as const) tx[key] ??= null;
  // Unknown state/phase values written by someone else (e.g. a newer cara) read as failed.
  if (!(TX_STATES as readonly string[]).includes(tx.state)) tx.state = "failed";
  if (!(TX_PHASES as readonly string[]).includes(tx.phase)) tx.phase = "failed";
  try {
    validateTransaction(tx, updatesDir);
  } catch (err) {
    throw new TransactionCorruptError(path, (err as Error).message);
  }
  return tx;
}

/** Validates, then writes transaction.json through the durable-write helper. */
export async function persistTransaction(updatesDir: string, tx: UpdateTransaction): Promise<void> {
  validateTransaction(tx, updatesDir);
  await writeFileDurable(transactionPath(updatesDir), `${JSON.stringify(tx, null, 2)}\n`);
}

/**
 * `cara update --reset-transaction`: moves transaction.json aside (kept for inspection) so the
 * next update starts fresh. Returns the path it was moved to, or undefined when there was none.
 */
export async function resetTransaction(updatesDir: string, now = Date.now()): Promise<string | undefined> {
  const path = transactionPath(updatesDir);
  const aside = `${path}.reset-${now}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  await fsyncDir(updatesDir);
  return aside;
}

/** Removes a file if present (staging clean-up), fsyncing the directory. */
export async function removeIfPresent(path: string, dir: string): Promise<void> {
  try {
    await unlink(path);
    await fsyncDir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/** Whether an interrupted transaction should be resumed rather than started afresh. */
export function resumePending(tx: UpdateTransaction): boolean {
  if (tx.state === "in_progress") return true;
  if (tx.state === "failed") return tx.retryable && tx.attempt < tx.maxAttempts;
  return false;
}

/** Backoff before retry number `attempt` (1-based attempts already made): ~5 s, 15 s, 45 s with ±20 % jitter. */
export function retryDelayMs(attempt: number, delays: readonly number[] = [5_000, 15_000, 45_000], random: () => number = Math.random): number {
  const base = delays[Math.min(Math.max(attempt, 1), delays.length) - 1] ?? 5_000;
  return Math.round(base * (0.8 + 0.4 * random()));
}
