/**
 * The `--json` form of a failure: `{"error":{"code","message","details"}}` on stdout, with the exit
 * code the human form has. `code` is the Connect code name the server answered with
 * (`not_found`, `failed_precondition`, ...), `unavailable` when no server could be reached,
 * `usage` for a usage error (exit 2) and `failed` for a local failure. `details` holds what the
 * server's error details say: `reason` (ErrorInfo), `metadata`, `fieldViolations`
 * ([{field, description}], BadRequest) and `retryAfterMs` (RetryInfo); `{}` when there are none.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { badRequestOf, errorInfoOf, retryDelayMsOf } from "../wire/error-details.js";

export interface ErrorDetails {
  reason?: string;
  metadata?: Record<string, string>;
  fieldViolations?: { field: string; description: string }[];
  retryAfterMs?: number;
}

export interface JsonErrorFacts {
  code: string;
  details: ErrorDetails;
}

/** NotFound -> not_found (the Connect protocol's name of a code). */
export function connectCodeName(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** The code and details of an error a client call failed with. */
export function errorFacts(err: unknown): JsonErrorFacts {
  if (!(err instanceof ConnectError)) return { code: "unavailable", details: {} };
  const details: ErrorDetails = {};
  const info = errorInfoOf(err);
  if (info) {
    details.reason = info.reason;
    if (Object.keys(info.metadata).length > 0) details.metadata = { ...info.metadata };
  }
  const bad = badRequestOf(err);
  if (bad && bad.fieldViolations.length > 0) details.fieldViolations = bad.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
  const retry = retryDelayMsOf(err);
  if (retry !== undefined) details.retryAfterMs = retry;
  return { code: connectCodeName(err.code), details };
}

/** The document printed for a failure under `--json`. */
export function jsonError(message: string, facts: JsonErrorFacts): { error: { code: string; message: string; details: ErrorDetails } } {
  return { error: { code: facts.code, message, details: facts.details } };
}
