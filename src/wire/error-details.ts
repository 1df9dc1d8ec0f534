/**
 * Structured error details (google.rpc.ErrorInfo, BadRequest, RetryInfo) on ConnectErrors, so
 * clients in any language learn which rule failed, which request field was wrong and when to
 * retry without parsing messages. Details travel in `grpc-status-details-bin` over gRPC and
 * gRPC-Web, and in the error's `details` over Connect.
 */
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema, type BadRequest, type ErrorInfo } from "../../gen/google/rpc/error_details_pb.js";

/** ErrorInfo.domain of every error this server raises. */
export const ERROR_DOMAIN = "carapace.dev";

/** One wrong request field: a proto field path (snake_case, dotted: `policy.max_attempts`). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** What an error says to programs, beside its code and message. */
export interface ErrorFacts {
  /** Stable UPPER_SNAKE_CASE reason (ErrorInfo.reason); never changes meaning once published. */
  reason: string;
  /** Extra facts as strings (ErrorInfo.metadata), e.g. the task id. Never a secret. */
  metadata?: Record<string, string>;
  /** Request fields at fault (BadRequest), for InvalidArgument. */
  fieldViolations?: FieldViolation[];
  /** How long to wait before retrying (RetryInfo), for rate limits and passing failures. */
  retryAfterMs?: number;
}

/** A ConnectError carrying ErrorInfo, and BadRequest / RetryInfo when the facts have them. */
export function rpcError(message: string, code: Code, facts: ErrorFacts, metadata?: ConstructorParameters<typeof ConnectError>[2]): ConnectError {
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason: facts.reason, domain: ERROR_DOMAIN, metadata: facts.metadata ?? {} } },
  ];
  if (facts.fieldViolations && facts.fieldViolations.length > 0) details.push({ desc: BadRequestSchema, value: { fieldViolations: facts.fieldViolations } });
  if (facts.retryAfterMs !== undefined)
    details.push({ desc: RetryInfoSchema, value: { retryDelay: durationFromMs(Math.max(0, Math.round(facts.retryAfterMs))) } });
  return new ConnectError(message, code, metadata, details);
}

/** The same error with ErrorInfo (and the other facts) added, unless it already has ErrorInfo. */
export function withFacts(err: ConnectError, facts: ErrorFacts): ConnectError {
  if (errorInfoOf(err)) return err;
  const out = rpcError(err.rawMessage, err.code, facts, err.metadata);
  out.details.unshift(...err.details);
  return out;
}

/** Fallback reason for an error of `code` that has no more specific one. */
export function reasonForCode(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** This server's ErrorInfo on an error (read from the wire or built here), if any. */
export function errorInfoOf(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  return err.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN);
}

/** The BadRequest detail, if any. */
export function badRequestOf(err: unknown): BadRequest | undefined {
  return err instanceof ConnectError ? err.findDetails(BadRequestSchema)[0] : undefined;
}

/** RetryInfo's delay in milliseconds, if the error carries one. */
export function retryDelayMsOf(err: unknown): number | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const info = err.findDetails(RetryInfoSchema)[0];
  return info?.retryDelay ? durationMs(info.retryDelay) : undefined;
}

/** ErrorInfo + BadRequest for a bad request field. */
export function invalidField(message: string, reason: string, field: string | undefined, description = message): ConnectError {
  return rpcError(message, Code.InvalidArgument, { reason, ...(field ? { fieldViolations: [{ field, description }] } : {}) });
}
