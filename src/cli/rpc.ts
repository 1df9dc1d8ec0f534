import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { errorInfoOf } from "../wire/error-details.js";
import type { Target } from "./target.js";

/** A generated client for `service` on the target, sending the bearer token on every call. */
export async function rpcClient<S extends DescService>(service: S, target: Target, timeoutMs: number, options: { http2?: boolean } = {}): Promise<Client<S>> {
  const { createConnectTransport } = await import("@connectrpc/connect-node");
  const auth: Interceptor = (next) => (req) => {
    if (target.token !== undefined) req.header.set("authorization", `Bearer ${target.token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: target.baseUrl,
    // Client streams (upload of an archive) need HTTP/2; h2c is fine on the same port.
    httpVersion: target.tls || options.http2 ? "2" : "1.1",
    useBinaryFormat: true,
    interceptors: [auth],
    defaultTimeoutMs: timeoutMs,
    ...(target.ca || target.servername ? { nodeOptions: { ...(target.ca ? { ca: target.ca } : {}), ...(target.servername ? { servername: target.servername } : {}) } } : {}),
  });
  return createClient(service, transport);
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EPROTO: "TLS handshake failed",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate (pass --tls-ca with the server's CA)",
  SELF_SIGNED_CERT_IN_CHAIN: "untrusted certificate chain (pass --tls-ca with the server's CA)",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "untrusted certificate (pass --tls-ca with the server's CA)",
  ERR_TLS_CERT_ALTNAME_INVALID: "certificate does not match the host name",
};

function networkCode(err: unknown): string | undefined {
  // An error the server sent carries its ErrorInfo: whatever its message mentions (e.g. the
  // release source's ECONNREFUSED), our connection to the server worked.
  if (isServerError(err)) return undefined;
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code in NETWORK_REASONS) return code;
    e = (e as { cause?: unknown }).cause;
  }
  // A ConnectError without a local cause came over the wire (from a server without ErrorInfo).
  if (err instanceof ConnectError && err.cause === undefined) return undefined;
  const text = String((err as Error)?.message ?? "");
  return Object.keys(NETWORK_REASONS).find((k) => text.includes(k));
}

/** True when nothing listened at the server's address (and not for a server's own answer that mentions it). */
export function isConnectionRefused(err: unknown): boolean {
  return networkCode(err) === "ECONNREFUSED";
}

/**
 * True for an error the server answered (it carries the server's google.rpc.ErrorInfo), as
 * opposed to one raised here (connection refused, timeout, TLS).
 */
export function isServerError(err: unknown): err is ConnectError {
  return errorInfoOf(err) !== undefined;
}

/** One line for a person: what failed and what to do next. Never includes the token. */
export function describeError(err: unknown, target: Target, timeoutMs?: number): string {
  const net = networkCode(err);
  if (net !== undefined) {
    const hint = net === "ECONNREFUSED" ? " Is 'cara start' running?" : "";
    return `Could not connect to carapace at ${target.display} (${NETWORK_REASONS[net]}).${hint}`;
  }
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.Unauthenticated:
        return (
          `carapace at ${target.display} is running but rejected the token (${err.rawMessage}). ` +
          (target.token === undefined
            ? "No token was found: set CARAPACE_GATEWAY_TOKEN or run cara as the server's user (it reads <state>/auth/token)."
            : "Use that server's token: CARAPACE_GATEWAY_TOKEN, or its <state>/auth/token (pick the state dir with --state-dir).")
        );
      case Code.ResourceExhausted:
        return `carapace at ${target.display} refused the call: ${err.rawMessage}`;
      case Code.DeadlineExceeded:
        return `carapace at ${target.display} did not answer within ${timeoutMs ?? "the"} ms (raise --timeout, or check 'cara logs')`;
      case Code.Unimplemented:
        return `carapace at ${target.display} does not support this yet: ${err.rawMessage}`;
      case Code.NotFound:
      case Code.InvalidArgument:
      case Code.FailedPrecondition:
      case Code.AlreadyExists:
        return err.rawMessage;
      default:
        return `${err.rawMessage} (${Code[err.code]})`;
    }
  }
  if ((err as { code?: string })?.code === "ETIMEDOUT") {
    return `carapace at ${target.display} did not answer in time (raise --timeout)`;
  }
  return (err as Error)?.message ?? String(err);
}
