/**
 * A Node request as connect's universal request: what connect-node's
 * `universalRequestFromNodeRequest` gives the handler (method, URL, headers, body, an abort
 * signal, context values), at less cost per call (issue 17, bench/README.md):
 * - the signal fires only when the call ends abnormally (the client went away, an HTTP/2 reset);
 *   connect-node also aborts it after every normal finish, and each reason-less abort builds a
 *   DOMException with a stack trace. Nothing listens then: connect has ended the call.
 * - the URL is a string built by concatenation when the path and authority are plain (the
 *   handler parses it itself when it needs to);
 * - the body is a small async iterator over the 'data' events, not a generator wrapped around
 *   the stream's own async iterator.
 * Tests: test/server/node-adapter.test.ts (a client leaving a FollowLogs stream, an RST_STREAM).
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { connectErrorFromH2ResetCode, connectErrorFromNodeReason } from "./node-error.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** host, host:port, [v6]:port: safe to put in a URL as is (anything else goes through `new URL`). */
const PLAIN_AUTHORITY = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
/** A path and query without characters `new URL` would escape or resolve. */
const PLAIN_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*$/;

/** `new URL` refuses a port over 65535: such an authority takes the slow path, which throws. */
function portInRange(authority: string): boolean {
  const m = /:(\d+)$/.exec(authority);
  return m === null || Number(m[1]) <= 65_535;
}

export function universalRequestFromNode(req: NodeRequest, res: NodeResponse, contextValues: ContextValues | undefined): UniversalServerRequest {
  const h2 = "stream" in req;
  const encrypted = h2 ? req.stream.session?.encrypted === true : (req.socket as TLSSocket).encrypted === true;
  const authority = h2 ? req.authority : req.headers.host;
  if (authority === undefined) throw new ConnectError("unable to determine request authority from Node.js server request", Code.Internal);
  const path = req.url ?? "";
  const scheme = encrypted ? "https" : "http";
  const url =
    PLAIN_PATH.test(path) && !path.includes("/.") && PLAIN_AUTHORITY.test(authority) && portInRange(authority)
      ? `${scheme}://${authority}${path}`
      : new URL(path, `${scheme}://${authority}`).toString();
  return {
    httpVersion: req.httpVersion,
    method: req.method ?? "",
    url,
    header: webHeaders(req.headers),
    body: { [Symbol.asyncIterator]: () => new BodyIterator(req) },
    signal: abortSignalFor(req, res),
    contextValues,
  };
}

/** Node's request headers as fetch Headers (HTTP/2 pseudo-headers left out), as connect-node does. */
function webHeaders(headers: http.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const k in headers) {
    if (k.charCodeAt(0) === 58 /* ':' */) continue;
    const v = headers[k];
    if (typeof v === "string") out.append(k, v);
    else if (Array.isArray(v)) for (const e of v) out.append(k, e);
    else if (v !== undefined) out.append(k, String(v));
  }
  return out;
}

/**
 * Aborted when the exchange ends before the response did: the client went away (HTTP/1.1: the
 * connection closed or failed; HTTP/2: the stream was reset, its code mapped as connect-node
 * maps it), so a server stream (FollowLogs, WatchTask) ends. Not after a normal finish.
 */
function abortSignalFor(req: NodeRequest, res: NodeResponse): AbortSignal {
  const controller = new AbortController();
  if ("stream" in req) {
    req.once("close", () => {
      if (res.writableEnded) return;
      controller.abort(connectErrorFromH2ResetCode(req.stream.rstCode));
    });
    return controller.signal;
  }
  // HTTP/1.1 has no error codes; Node reports a reset connection as an error on the request.
  // The response's 'close' (not the request's: that comes once the body is read) ends the call.
  const onError = (e: Error) => {
    req.off("error", onError);
    res.off("close", onClose);
    controller.abort(connectErrorFromNodeReason(e));
  };
  const onClose = () => {
    req.off("error", onError);
    if (res.writableEnded) return;
    controller.abort(req.errored ? connectErrorFromNodeReason(req.errored) : undefined);
  };
  req.once("error", onError);
  res.once("close", onClose);
  return controller.signal;
}

/** What a request body stream that closed before its end throws (as Node's own iterator does). */
function prematureClose(): Error {
  return Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
}

/**
 * The request body as an async iterator over its 'data' events, made when connect starts
 * reading (a request the gate refuses is never read: Node discards its body). Flow control: the
 * request is paused while 16 chunks wait to be read.
 */
class BodyIterator implements AsyncIterator<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private error: unknown;
  private wake: (() => void) | undefined;

  constructor(private readonly req: NodeRequest) {
    req.on("data", this.onData);
    req.once("end", this.onEnd);
    req.once("error", this.onError);
    req.once("close", this.onClose);
  }

  private readonly onData = (chunk: Uint8Array) => {
    this.chunks.push(chunk);
    if (this.chunks.length >= 16) this.req.pause();
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (e: unknown) => {
    this.error ??= e;
    this.notify();
  };
  private readonly onClose = () => {
    if (!this.ended) this.error ??= this.req.errored ?? prematureClose();
    this.notify();
  };

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private detach(): void {
    this.req.off("data", this.onData);
    this.req.off("end", this.onEnd);
    this.req.off("error", this.onError);
    this.req.off("close", this.onClose);
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        if (this.chunks.length === 0 && this.req.isPaused()) this.req.resume();
        return { done: false, value: chunk };
      }
      if (this.error !== undefined) {
        this.detach();
        throw this.error;
      }
      if (this.ended) {
        this.detach();
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.detach();
    // Connect stopped reading early (the body is over readMaxBytes): discard the rest, as Node
    // does with a body no handler read, so the refusal reaches the client before the
    // connection ends (destroying the request here resets the socket under the answer: test
    // "a request body over the 8 MiB limit" in test/e2e/protocol-errors.test.ts). HTTP/1.1
    // bounds the whole request by requestTimeout.
    if (!this.ended) this.req.resume();
    return { done: true, value: undefined };
  }
}
