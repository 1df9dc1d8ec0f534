/**
 * Requests for no route: an RPC-shaped one (by content type, Connect headers or a procedure
 * path) is answered in the caller's protocol, as a gRPC server would: gRPC and gRPC-Web get HTTP
 * 200 with `grpc-status` 12 (UNIMPLEMENTED) naming the path, Connect gets `unimplemented` (HTTP
 * 404 with the JSON error body for unary calls, an end-of-stream error for streams). Anything
 * else is plain HTTP and goes on to a later handler (static files, a JSON 404).
 */
import type http from "node:http";
import type http2 from "node:http2";
import { Code, type ConnectError } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, createEndStreamSerialization, endStreamFlag, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { rpcError } from "../wire/error-details.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** The RPC protocols, Connect split by call shape (its errors look different). */
export type RpcProtocol = "grpc" | "grpc-web" | "connect-unary" | "connect-stream";

/** `/<package>.<Service>/<Method>` (package optional). */
const PROCEDURE_PATH = /^\/[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\/[A-Za-z_][A-Za-z0-9_]*$/;

const header = (req: Req, name: string) => {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
};

/** The path of a request, without the query. */
export function requestPath(req: Req): string {
  return (req.url ?? "").split("?", 1)[0]!;
}

/**
 * The RPC protocol a request speaks, or undefined for a plain HTTP request. gRPC and Connect
 * streams are told by content type; a Connect unary call by its POST to a procedure path (or
 * the Connect-Protocol-Version header); a Connect GET by its query (`connect=v1`, or `encoding`
 * and `message` on a procedure path). A browser's GET of a page is never RPC-shaped.
 */
export function rpcProtocolOf(req: Req): RpcProtocol | undefined {
  const ct = header(req, "content-type").toLowerCase();
  if (/^application\/grpc-web(?:-text)?(?:[+;]|$)/.test(ct)) return "grpc-web";
  if (/^application\/grpc(?:[+;]|$)/.test(ct)) return "grpc";
  if (/^application\/connect\+/.test(ct)) return "connect-stream";
  const path = requestPath(req);
  if (req.method === "POST") return PROCEDURE_PATH.test(path) || header(req, "connect-protocol-version") !== "" ? "connect-unary" : undefined;
  if (req.method === "GET") {
    const query = new URLSearchParams((req.url ?? "").slice(path.length + 1));
    if (query.get("connect") === "v1" || (PROCEDURE_PATH.test(path) && query.has("encoding") && query.has("message"))) return "connect-unary";
  }
  return undefined;
}

/** True when the request is an RPC (of any protocol) rather than a plain HTTP request. */
export function isRpcShaped(req: Req): boolean {
  return rpcProtocolOf(req) !== undefined;
}

/** A path as it may appear in a message: bounded, printable. */
export function displayPath(path: string): string {
  const clean = path.replace(/[\u0000-\u001f\u007f]/g, "?");
  return clean.length > 200 ? `${clean.slice(0, 200)}...` : clean;
}

/** UNIMPLEMENTED for an RPC path no service here serves, saying what is wrong with it. */
export function unknownMethodError(path: string, services: ReadonlyMap<string, readonly string[]>): ConnectError {
  const shown = displayPath(path);
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (!m || !PROCEDURE_PATH.test(path)) {
    return rpcError(`no RPC at ${shown}: RPC paths are /<package>.<Service>/<Method>`, Code.Unimplemented, {
      reason: "UNKNOWN_METHOD",
      metadata: { path: shown },
    });
  }
  const [, service, method] = m as unknown as [string, string, string];
  const methods = services.get(service);
  const message = methods
    ? `unknown method ${shown}: ${service} has no method ${method} (it has ${methods.join(", ")})`
    : `unknown method ${shown}: this server has no service ${service}`;
  return rpcError(message, Code.Unimplemented, { reason: methods ? "UNKNOWN_METHOD" : "UNKNOWN_SERVICE", metadata: { path: shown } });
}

const once = (bytes: Uint8Array) =>
  (async function* () {
    yield bytes;
  })();

/** The content type to answer with: the request's own when it is one of the protocol's. */
function replyContentType(req: Req, protocol: RpcProtocol): string {
  const ct = header(req, "content-type").toLowerCase().split(";", 1)[0]!.trim();
  const fallback = {
    grpc: "application/grpc",
    "grpc-web": "application/grpc-web+proto",
    "connect-stream": "application/connect+proto",
    "connect-unary": "application/json",
  }[protocol];
  if (protocol === "grpc" && /^application\/grpc(?:\+(?:proto|json))?$/.test(ct)) return ct;
  if (protocol === "grpc-web" && /^application\/grpc-web(?:\+(?:proto|json))?$/.test(ct)) return ct;
  if (protocol === "connect-stream" && /^application\/connect\+(?:proto|json)$/.test(ct)) return ct;
  return fallback;
}

/** An error as the protocol carries it, ready for the Node response. */
export function rpcErrorResponse(req: Req, protocol: RpcProtocol, err: ConnectError): UniversalServerResponse {
  const contentType = replyContentType(req, protocol);
  switch (protocol) {
    case "grpc": {
      const trailer = setTrailerStatus(new Headers(), err);
      const head = new Headers({ "content-type": contentType });
      // HTTP/1.1 cannot carry trailers on an empty body: answer "trailers-only" in the headers.
      if (req.httpVersionMajor === 1) {
        for (const [k, v] of trailer) head.set(k, v);
        return { status: 200, header: head };
      }
      return { status: 200, header: head, trailer };
    }
    case "grpc-web":
      return {
        status: 200,
        header: new Headers({ "content-type": contentType }),
        body: once(encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(new Headers(), err)))),
      };
    case "connect-stream": {
      const end = createEndStreamSerialization(undefined).serialize({ metadata: new Headers(), error: err });
      return { status: 200, header: new Headers({ "content-type": contentType }), body: once(encodeEnvelope(endStreamFlag, end)) };
    }
    case "connect-unary": {
      const head = new Headers(err.metadata);
      head.set("content-type", "application/json");
      // No such procedure is a 404, as a Connect server's router answers (clients read it as
      // unimplemented); other errors take the Connect protocol's status for their code.
      const status = err.code === Code.Unimplemented ? 404 : codeToHttpStatus(err.code);
      return { status, header: head, body: once(errorToJsonBytes(err, undefined)) };
    }
  }
}

/** Writes `err` in the caller's protocol. The request body is not read (it is discarded). */
export function writeRpcError(req: Req, res: Res, protocol: RpcProtocol, err: ConnectError): void {
  req.resume();
  universalResponseToNodeResponse(rpcErrorResponse(req, protocol, err), res as Parameters<typeof universalResponseToNodeResponse>[1]).catch(() => {
    // The client went away; nothing to tell it.
  });
}

/** The plain-HTTP 404 for a path that is neither a route nor an RPC, saying where to look. */
export function notFoundJson(req: Req, res: Res): void {
  const body = JSON.stringify({
    error: `no route for ${req.method} ${displayPath(requestPath(req))}`,
    see: "GET /health, GET /health/ready, or POST /<package>.<Service>/<Method>",
  });
  res.writeHead(404, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    "x-content-type-options": "nosniff",
  });
  (res as http.ServerResponse).end(req.method === "HEAD" ? undefined : body);
}
