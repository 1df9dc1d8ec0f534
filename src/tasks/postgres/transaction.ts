/**
 * One transaction on one connection, telling a failure before COMMIT (rolled back: nothing was
 * changed) from a failure of the COMMIT itself (the connection or the server may have failed
 * after the database kept the transaction: its outcome is unknown, and replaying it could do it
 * twice).
 */

/** The COMMIT failed: the database may or may not have kept the transaction. `cause` is the COMMIT's error. */
export class CommitOutcomeUnknownError extends Error {
  /** Always true: the failure happened while committing. */
  readonly committing = true;
  constructor(override readonly cause: unknown) {
    super(`COMMIT failed (${cause instanceof Error ? cause.message : String(cause)}); the transaction may or may not have been kept`);
  }
}

/**
 * True when `err` is a failure at COMMIT (outcome unknown), false for one before it (rolled back).
 * Errors that wrap a CommitOutcomeUnknownError for their callers keep `committing: true` (see
 * markCommitting), so the classification survives the wrapping.
 */
export function failedWhileCommitting(err: unknown): err is Error & { committing: true; cause: unknown } {
  return err instanceof Error && (err as { committing?: unknown }).committing === true;
}

/** Marks `wrapper` as a failure at COMMIT, as `cause` was. */
export function markCommitting<E extends Error>(wrapper: E, cause: unknown): E {
  return Object.assign(wrapper, { committing: true as const, cause });
}

export interface Queryable {
  query(sql: string): Promise<unknown>;
}

/**
 * Runs `fn` between `begin` and COMMIT and returns its result once COMMIT succeeded. A failure of
 * BEGIN or of `fn` rolls back and is thrown as is; a failure of COMMIT is thrown as
 * CommitOutcomeUnknownError (after an attempt to roll back, which is harmless if nothing is open).
 */
export async function inTransaction<T>(client: Queryable, fn: () => Promise<T>, begin = "BEGIN"): Promise<T> {
  let out: T;
  try {
    await client.query(begin);
    out = await fn();
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
  try {
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw new CommitOutcomeUnknownError(err);
  }
  return out;
}
