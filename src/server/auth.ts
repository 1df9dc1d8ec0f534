import { createHash, timingSafeEqual } from "node:crypto";
import { Code, type HandlerContext, createContextKey } from "@connectrpc/connect";
import { rpcError } from "../wire/error-details.js";

/** The client's socket address, set per request by the server so interceptors can see it. */
export const kPeerAddress = createContextKey<string>("unknown", { description: "peer address" });

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/** Constant-time token check: compares SHA-256 digests, so neither content nor length leaks. */
export function tokenMatches(expectedDigest: Buffer, presented: string): boolean {
  return timingSafeEqual(expectedDigest, digest(presented));
}

export interface FailedAuthLimiterOptions {
  /** Failed attempts allowed per address within the window. */
  maxFailures?: number;
  windowMs?: number;
  /** Addresses tracked at most (oldest evicted first), so a flood cannot grow memory. */
  maxAddresses?: number;
  now?: () => number;
}

/**
 * Counts failed authentications per client address in a sliding window. After `maxFailures`
 * failures within `windowMs`, every further attempt from that address is refused until the
 * oldest counted failure leaves the window, whatever the credential it carries.
 */
export class FailedAuthLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly maxFailures: number;
  private readonly windowMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(options: FailedAuthLimiterOptions = {}) {
    this.maxFailures = options.maxFailures ?? 10;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxAddresses = options.maxAddresses ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Milliseconds until the address may try again, or 0 when it may try now. */
  blockedForMs(address: string): number {
    const list = this.recent(address);
    if (list.length < this.maxFailures) return 0;
    const oldest = list[list.length - this.maxFailures]!;
    return Math.max(1, oldest + this.windowMs - this.now());
  }

  recordFailure(address: string): void {
    const list = this.recent(address);
    list.push(this.now());
    if (list.length > this.maxFailures) list.splice(0, list.length - this.maxFailures);
    this.failures.delete(address);
    this.failures.set(address, list);
    if (this.failures.size > this.maxAddresses) {
      const first = this.failures.keys().next().value;
      if (first !== undefined) this.failures.delete(first);
    }
  }

  private recent(address: string): number[] {
    const list = this.failures.get(address);
    if (!list) return [];
    const cutoff = this.now() - this.windowMs;
    while (list.length > 0 && list[0]! <= cutoff) list.shift();
    if (list.length === 0) this.failures.delete(address);
    return list;
  }
}

/** Services that answer without a token: the standard gRPC health protocol (used by probes). */
const PUBLIC_SERVICES = new Set(["grpc.health.v1.Health"]);

/**
 * The bearer-token gate in front of every RPC; it runs once the request headers are in, before
 * any of the body is read. Answers UNAUTHENTICATED for a missing or wrong token and
 * RESOURCE_EXHAUSTED (HTTP 429 with Retry-After over Connect, and RetryInfo in every protocol)
 * once an address failed too often. Both carry ErrorInfo with a stable reason.
 */
export function authGate(
  token: string,
  limiter: FailedAuthLimiter,
  onFailure?: (address: string, reason: string) => void,
): (ctx: HandlerContext) => void {
  const expected = digest(token);
  return (ctx) => {
    if (PUBLIC_SERVICES.has(ctx.service.typeName)) return;
    const address = ctx.values.get(kPeerAddress);
    const waitMs = limiter.blockedForMs(address);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw rpcError(
        `too many failed authentication attempts from ${address}; try again in ${seconds}s`,
        Code.ResourceExhausted,
        { reason: "AUTH_RATE_LIMITED", retryAfterMs: seconds * 1000 },
        { "retry-after": String(seconds) },
      );
    }
    const header = ctx.requestHeader.get("authorization");
    let reason: string | undefined;
    if (header === null) reason = "missing";
    else if (!header.startsWith("Bearer ")) reason = "malformed";
    else if (!tokenMatches(expected, header.slice(7).trim())) reason = "mismatch";
    if (reason === undefined) return;
    limiter.recordFailure(address);
    onFailure?.(address, reason);
    throw rpcError(
      reason === "missing"
        ? "missing bearer token: send 'Authorization: Bearer <token>' (the token is in <state>/auth/token or CARAPACE_GATEWAY_TOKEN)"
        : reason === "malformed"
          ? "malformed Authorization header: expected 'Bearer <token>'"
          : "invalid bearer token",
      Code.Unauthenticated,
      { reason: reason === "missing" ? "TOKEN_MISSING" : reason === "malformed" ? "TOKEN_MALFORMED" : "TOKEN_INVALID" },
    );
  };
}
