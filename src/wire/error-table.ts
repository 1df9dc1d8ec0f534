/**
 * Domain error -> ConnectError, one way for every service: domain code throws typed errors (it
 * knows nothing about RPC), and each `service.ts` lists, in one table, what each becomes on the
 * wire: the Connect code, the stable ErrorInfo reason, the request field at fault (BadRequest),
 * when to retry (RetryInfo). The first row that matches decides; messages are the domain's own
 * (already written for people) unless a row says otherwise. Nothing looks at message text.
 */
import { type Code, ConnectError } from "@connectrpc/connect";
import { rpcError } from "./error-details.js";

/** What one kind of domain error becomes on the wire. */
export interface WireFault {
  code: Code;
  /** Stable UPPER_SNAKE_CASE ErrorInfo reason. */
  reason: string;
  /** The request field at fault (proto path, e.g. `policy.max_attempts`): a BadRequest detail. */
  field?: string | undefined;
  /** RetryInfo: how long to wait before retrying. */
  retryAfterMs?: number | undefined;
  /** ErrorInfo metadata (never a secret). */
  metadata?: Record<string, string> | undefined;
  /** Replaces the error's own message. */
  message?: string | undefined;
}

/** A fault, or a function of the error giving one (undefined: this row does not apply after all). */
type FaultOf<E> = WireFault | ((err: E) => WireFault | undefined);

export interface FaultRow {
  fault(err: unknown): WireFault | undefined;
}

const apply = <E>(fault: FaultOf<E>, err: E) => (typeof fault === "function" ? fault(err) : fault);

/** A row for the errors of one class. */
export function on<E extends Error>(type: abstract new (...args: never[]) => E, fault: FaultOf<E>): FaultRow {
  return { fault: (err) => (err instanceof type ? apply(fault, err) : undefined) };
}

/** A row for the errors a test accepts (e.g. an errno code from the filesystem). */
export function onMatch<E>(test: (err: unknown) => err is E, fault: FaultOf<E>): FaultRow;
export function onMatch(test: (err: unknown) => boolean, fault: FaultOf<unknown>): FaultRow;
export function onMatch(test: (err: unknown) => boolean, fault: FaultOf<unknown>): FaultRow {
  return { fault: (err) => (test(err) ? apply(fault, err) : undefined) };
}

export interface ErrorTable {
  /** The ConnectError for `err`: a ConnectError as it is, else the first matching row, else the fallback. */
  map(err: unknown): ConnectError;
  /** `fn` with every error it throws mapped. */
  guard<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R>;
}

function toConnectError(err: unknown, fault: WireFault): ConnectError {
  const message = fault.message ?? (err as Error).message;
  return rpcError(message, fault.code, {
    reason: fault.reason,
    ...(fault.field ? { fieldViolations: [{ field: fault.field, description: message }] } : {}),
    ...(fault.retryAfterMs !== undefined ? { retryAfterMs: fault.retryAfterMs } : {}),
    ...(fault.metadata ? { metadata: fault.metadata } : {}),
  });
}

/**
 * A service's table. Without a fallback, an error no row matches becomes what Connect makes of
 * it (and the server's interceptor gives it a reason named after its code).
 */
export function errorTable(rows: FaultRow[], fallback?: FaultOf<unknown>): ErrorTable {
  const map = (err: unknown): ConnectError => {
    if (err instanceof ConnectError) return err;
    for (const row of rows) {
      const fault = row.fault(err);
      if (fault) return toConnectError(err, fault);
    }
    const last = fallback === undefined ? undefined : apply(fallback, err);
    return last ? toConnectError(err, last) : ConnectError.from(err);
  };
  return {
    map,
    guard:
      (fn) =>
      async (...args) => {
        try {
          return await fn(...args);
        } catch (err) {
          throw map(err);
        }
      },
  };
}
