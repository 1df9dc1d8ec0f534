import { hash, timingSafeEqual } from "node:crypto";
import { Code, createContextKey } from "@connectrpc/connect";
import type { RequestGate } from "./rpc-adapter.js";
import { rpcError } from "../wire/error-details.js";

/** The client's socket address, set per request by the server so interceptors can see it. */
export const kPeerAddress = createContextKey<string>("unknown", { description: "peer address" });

// One-shot hash (Node >= 20.12): no Hash object per call; it runs for every RPC (issue 17).
const digest = (value: string) => hash("sha256", value, "buffer");

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
  /**
   * Failed attempts allowed from all addresses together within the window (default 100): one
   * attacker with many addresses (an IPv6 prefix) still gets a bounded number of guesses.
   * Blocking everyone's wrong tokens is safe because the right token is never blocked.
   */
  maxGlobalFailures?: number;
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
  private readonly maxGlobalFailures: number;
  private readonly global: number[] = [];
  private readonly now: () => number;

  constructor(options: FailedAuthLimiterOptions = {}) {
    this.maxFailures = options.maxFailures ?? 10;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxAddresses = options.maxAddresses ?? 10_000;
    this.maxGlobalFailures = options.maxGlobalFailures ?? 100;
    this.now = options.now ?? Date.now;
  }

  /** Milliseconds until the address may try again, or 0 when it may try now. */
  blockedForMs(address: string): number {
    return this.blocked(address)?.waitMs ?? 0;
  }

  /** Why and how long the address must wait: its own failures, or everyone's together. */
  blocked(address: string): { waitMs: number; scope: "address" | "all" } | undefined {
    const own = this.waitFor(this.recent(address), this.maxFailures);
    const all = this.waitFor(this.pruned(this.global), this.maxGlobalFailures);
    if (own === 0 && all === 0) return undefined;
    return own >= all ? { waitMs: own, scope: "address" } : { waitMs: all, scope: "all" };
  }

  private waitFor(list: number[], max: number): number {
    if (list.length < max) return 0;
    const oldest = list[list.length - max]!;
    return Math.max(1, oldest + this.windowMs - this.now());
  }

  private pruned(list: number[]): number[] {
    const cutoff = this.now() - this.windowMs;
    while (list.length > 0 && list[0]! <= cutoff) list.shift();
    return list;
  }

  recordFailure(address: string): void {
    this.global.push(this.now());
    if (this.global.length > this.maxGlobalFailures) this.global.splice(0, this.global.length - this.maxGlobalFailures);
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

export type TokenVerdict = "ok" | "missing" | "malformed" | "mismatch";

/** Checks an Authorization header against the token (constant time). */
export function tokenCheck(token: string): (authorization: string | null | undefined) => TokenVerdict {
  const expected = digest(token);
  return (header) => {
    if (header === null || header === undefined) return "missing";
    if (!header.startsWith("Bearer ")) return "malformed";
    return tokenMatches(expected, header.slice(7).trim()) ? "ok" : "mismatch";
  };
}

/**
 * The client's address for rate limits: the socket's peer, or, when that peer is a trusted
 * reverse proxy, the nearest address in X-Forwarded-For that is not itself a trusted proxy
 * (the rightmost untrusted hop: the leftmost ones are whatever the client chose to send).
 */
export function clientAddress(peer: string, forwardedFor: string | null | undefined, trustedProxies: ReadonlySet<string>): string {
  const normalize = (a: string) => {
    const t = a
      .trim()
      .toLowerCase()
      .replace(/^\[|\]$/g, "");
    return t.startsWith("::ffff:") && /^\d+\.\d+\.\d+\.\d+$/.test(t.slice(7)) ? t.slice(7) : t;
  };
  let address = normalize(peer);
  if (!trustedProxies.has(address) || !forwardedFor) return address;
  const hops = forwardedFor
    .split(",")
    .map(normalize)
    .filter((h) => h !== "");
  for (let i = hops.length - 1; i >= 0; i--) {
    address = hops[i] as string;
    if (!trustedProxies.has(address)) break;
  }
  return address;
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
  onLimited?: (address: string) => void,
): RequestGate {
  const check = tokenCheck(token);
  return (ctx) => {
    if (PUBLIC_SERVICES.has(ctx.service.typeName)) return;
    // The right token always gets in: a lockout must not let anyone sharing an address (a
    // proxy, a NAT) shut the operator out. Guessing stays limited: wrong tokens count, and a
    // locked-out address learns nothing but "wait".
    const reason = check(ctx.requestHeader.get("authorization"));
    if (reason === "ok") return;
    const address = ctx.values.get(kPeerAddress);
    const blocked = limiter.blocked(address);
    if (blocked) {
      onLimited?.(address);
      const seconds = Math.ceil(blocked.waitMs / 1000);
      throw rpcError(
        blocked.scope === "address"
          ? `too many failed authentication attempts from ${address}; try again in ${seconds}s`
          : `too many failed authentication attempts from all clients; try again in ${seconds}s (the right token is always accepted)`,
        Code.ResourceExhausted,
        { reason: "AUTH_RATE_LIMITED", retryAfterMs: seconds * 1000 },
        { "retry-after": String(seconds) },
      );
    }
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
