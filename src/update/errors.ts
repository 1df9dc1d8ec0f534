import type { TxPhase } from "./transaction.js";

/**
 * Why an update operation could not go on. `kind` decides the RPC code (the service maps it);
 * `retryable` whether rerunning resumes; `phase` where a transaction run failed; `field` the
 * request field at fault (a proto field path) for an invalid request.
 */
export type UpdateErrorKind = "invalid" | "precondition" | "not_found" | "unavailable";

export class UpdateError extends Error {
  constructor(
    readonly kind: UpdateErrorKind,
    message: string,
    readonly retryable = kind === "unavailable",
    readonly phase?: TxPhase,
    readonly field?: string,
  ) {
    super(message);
  }

  withPhase(phase: TxPhase): UpdateError {
    return this.phase ? this : new UpdateError(this.kind, this.message, this.retryable, phase, this.field);
  }
}

/** A failure inside a transaction run: retryable ones are retried with backoff, others stop. */
export function runFailure(message: string, retryable: boolean, phase: TxPhase): UpdateError {
  return new UpdateError(retryable ? "unavailable" : "precondition", message, retryable, phase);
}
