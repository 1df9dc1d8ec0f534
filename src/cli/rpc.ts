import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { errorInfoOf } from "../wire/error-details.js";
import type { Target } from "./target.js";

/** How long a call waits for the server's first answer unless told otherwise. */
export const DEFAULT_ANSWER_MS = 30_000;

export interface RpcOptions {
  /** Client streams (upload of an archive) need HTTP/2; h2c is fine on the same port. */
  http2?: boolean;
  /**
   * How long to wait for the server's first answer: from the start of the call (connecting
   * included), or from the last request message sent, to the response (a stream's first
   * message). Default: `timeoutMs` when that is shorter than 30 s, else 30 s.
   */
  answerMs?: number;
  /**
   * A stream that may stay silent at first (a log follow with nothing to send yet): it is not
   * bounded at all (the server sends its response headers with the first message).
   */
  quietStream?: boolean;
}

/** No answer within the bound (connect, first byte, or a stream's first message). */
export class NoAnswerError extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${formatSeconds(ms)}`);
  }
}

/** "5 s", "1.5 s", "500 ms", "2 min". */
export function formatSeconds(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms >= 120_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * Bounds the wait for the server's first answer (see RpcOptions.answerMs): a server that accepts
 * the connection and never answers fails the call with NoAnswerError instead of hanging it.
 */
function answerTimeout(ms: number, quietStream: boolean): Interceptor {
  return (next) => async (req) => {
    if (quietStream && req.method.methodKind === "server_streaming") return next(req);
    const stop = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => stop.abort(new ConnectError(`no answer within ${formatSeconds(ms)}`, Code.DeadlineExceeded, undefined, undefined, new NoAnswerError(ms))),
        ms,
      );
      // The pending call keeps the process alive while it waits; the timer alone never does.
      timer.unref();
    };
    const disarm = () => clearTimeout(timer);
    arm();
    const signal = AbortSignal.any([req.signal, stop.signal]);
    // A client stream: the server answers once it has read everything, so the wait starts over
    // with each message sent.
    const sent = req.stream
      ? {
          ...req,
          signal,
          message: (async function* () {
            for await (const m of req.message) {
              yield m;
              arm();
            }
          })(),
        }
      : { ...req, signal };
    let res;
    try {
      res = await next(sent as typeof req);
    } catch (err) {
      disarm();
      throw stop.signal.aborted ? stop.signal.reason : err;
    }
    if (!res.stream) {
      disarm();
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let answered = false;
        try {
          for await (const m of messages) {
            disarm();
            answered = true;
            yield m;
          }
        } catch (err) {
          throw !answered && stop.signal.aborted ? stop.signal.reason : err;
        } finally {
          disarm();
        }
      })(),
    };
  };
}

/**
 * A generated client for `service` on the target, sending the bearer token on every call. Calls
 * end after `timeoutMs` (0: no deadline) and fail sooner when the server does not answer at all.
 */
export async function rpcClient<S extends DescService>(service: S, target: Target, timeoutMs: number, options: RpcOptions = {}): Promise<Client<S>> {
  const { createConnectTransport } = await import("@connectrpc/connect-node");
  const auth: Interceptor = (next) => (req) => {
    if (target.token !== undefined) req.header.set("authorization", `Bearer ${target.token}`);
    return next(req);
  };
  const answerMs = options.answerMs ?? (timeoutMs > 0 ? Math.min(timeoutMs, DEFAULT_ANSWER_MS) : DEFAULT_ANSWER_MS);
  const transport = createConnectTransport({
    baseUrl: target.baseUrl,
    httpVersion: target.tls || options.http2 ? "2" : "1.1",
    useBinaryFormat: true,
    interceptors: [auth, answerTimeout(answerMs, options.quietStream === true)],
    // When the answer bound is the whole deadline, it fires first (a second's grace) so that a
    // silent server is reported as one.
    defaultTimeoutMs: timeoutMs <= 0 ? undefined : answerMs >= timeoutMs ? timeoutMs + 1000 : timeoutMs,
    ...(target.ca || target.servername
      ? { nodeOptions: { ...(target.ca ? { ca: target.ca } : {}), ...(target.servername ? { servername: target.servername } : {}) } }
      : {}),
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

/** The next step after a timeout: a longer --timeout, or the server's own log (read without it). */
function timeoutAdvice(ms: number | undefined, command: string | undefined): string {
  const longer = ms !== undefined ? `pass a longer --timeout (e.g. --timeout ${Math.max(1, Math.ceil((ms * 4) / 1000))}s)` : "pass a longer --timeout";
  return command === "logs" ? `${longer}, or read its log files with --offline` : `${longer}, or read its log files with 'cara logs --offline'`;
}

/**
 * What answered when it was not a cara server: an HTTP status or a content type that no Connect
 * server sends (an HTML error page, a proxy's 501), as "HTTP 404 text/html".
 */
export function foreignAnswer(err: unknown): string | undefined {
  if (errorInfoOf(err) !== undefined || !(err instanceof ConnectError)) return undefined;
  const type = (err.metadata.get("content-type") ?? "").split(";")[0]!.trim() || "without a content type";
  const status = /^HTTP (\d{3})$/.exec(err.rawMessage)?.[1];
  if (status !== undefined) {
    // A Connect server's own errors come as JSON, never as a bare status with another type.
    if (type === "application/json") return undefined;
    return `HTTP ${status} ${type}`;
  }
  if (err.rawMessage.startsWith("unsupported content type")) return `HTTP 200 ${type}`;
  return undefined;
}

/**
 * One line for a person: what failed and what to do next. Never includes the token. `command`
 * is the verb being run ("logs"), so that the advice does not send the user back to it.
 */
export function describeError(err: unknown, target: Target, timeoutMs?: number, command?: string): string {
  const noAnswer = findCause(err, NoAnswerError);
  if (noAnswer)
    return `${target.display} did not answer within ${formatSeconds(noAnswer.ms)} (a hung or overloaded server?): ${timeoutAdvice(noAnswer.ms, command)}`;
  const foreign = foreignAnswer(err);
  if (foreign !== undefined) return `${target.display} answered ${foreign}: that is not a cara server (check --host and --port)`;
  if (!isServerError(err) && causeCode(err, ["ERR_HTTP2_ERROR", "ERR_HTTP2_SESSION_ERROR", "ERR_HTTP2_STREAM_ERROR"])) {
    return `${target.display} broke off the HTTP/2 exchange (it speaks HTTP/1.1 only?): that is not a cara server (check --host and --port)`;
  }
  const net = networkCode(err);
  if (net === "ECONNRESET") {
    return `${target.display} reset the connection: that is not a cara server${target.tls ? "" : " (if it serves TLS, pass --tls)"}, or it stopped mid-call (check --host and --port)`;
  }
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
        return timeoutMs !== undefined && timeoutMs > 0
          ? `carapace at ${target.display} did not finish within ${formatSeconds(timeoutMs)}: ${timeoutAdvice(timeoutMs, command)}`
          : `carapace at ${target.display} gave up on the call (${err.rawMessage}): ${timeoutAdvice(undefined, command)}`;
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
  return (err as Error)?.message ?? String(err);
}

function findCause<T>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    if (e instanceof type) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function causeCode(err: unknown, codes: readonly string[]): boolean {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && codes.includes(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
