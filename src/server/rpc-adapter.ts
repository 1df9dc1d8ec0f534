/**
 * The Node request handler for every RPC, like connect-node's `connectNodeAdapter` (same router
 * and protocol code; its own, cheaper request/response conversion: node-request.ts and
 * node-response.ts, issue 17) plus what that adapter leaves bare:
 * - an RPC-shaped request for no route answers UNIMPLEMENTED in the caller's protocol
 *   (unknown-route.ts); a plain HTTP request goes to `fallback`;
 * - 415 names the accepted content types (`Accept-Post` and a JSON body), 405 the allowed
 *   methods (`Allow`), and 505 (a bidi stream over HTTP/1.1) says HTTP/2 is needed;
 * - a request gate (the bearer-token check) runs once the headers are in and before any of the
 *   body is read, so a request it refuses is never read, decompressed or parsed. (connect 2.2
 *   has this as `requestGate`; it declares Node >= 22, and cara stays on connect 2.1 while it
 *   supports Node 20, so the gate lives here.)
 */
import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createConnectRouter,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  type HandlerContext,
  createContextValues,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { rpcError } from "../wire/error-details.js";
import type { RequestHandler } from "./listener.js";
import { universalRequestFromNode } from "./node-request.js";
import { writeUniversalResponse } from "./node-response.js";
import { displayPath, requestPath, rpcProtocolOf, unknownMethodError, writeRpcError } from "./unknown-route.js";

type NodeHandlerFn = RequestHandler;
type NodeServerRequest = Parameters<RequestHandler>[0];

/** What a request gate sees of a call: its method and headers, before any of the body. */
export type RequestGateContext = Pick<HandlerContext, "service" | "method" | "requestHeader" | "values">;
/** Throws (a ConnectError) to refuse the call; the caller gets it in its protocol. */
export type RequestGate = (ctx: RequestGateContext) => void;

export interface RpcAdapterOptions extends ConnectRouterOptions {
  routes(router: ConnectRouter): void;
  /** Runs before the body is read, for every request a handler would accept (method, content type). */
  requestGate?: RequestGate;
  contextValues?: (req: NodeServerRequest) => ContextValues;
  /** A plain HTTP request (not RPC-shaped) for no RPC route: static files, a JSON 404, ... */
  fallback: NodeHandlerFn;
  /** A handler failed after its response began (default: console.error). */
  onHandlerError?: (method: DescMethod, reason: unknown) => void;
}

/** Content types each protocol accepts for a method of this kind. */
function acceptedContentTypes(handler: UniversalHandler): string[] {
  const unary = handler.method.methodKind === "unary";
  const out: string[] = [];
  for (const p of handler.protocolNames) {
    if (p === "connect") out.push(...(unary ? ["application/json", "application/proto"] : ["application/connect+json", "application/connect+proto"]));
    else if (p === "grpc") out.push("application/grpc", "application/grpc+proto", "application/grpc+json");
    else if (p === "grpc-web") out.push("application/grpc-web", "application/grpc-web+proto", "application/grpc-web+json");
  }
  return out;
}

function jsonResponse(status: number, body: unknown, extra: Record<string, string>): UniversalServerResponse {
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  return {
    status,
    header: new Headers({ "content-type": "application/json; charset=utf-8", ...extra }),
    body: (async function* () {
      yield bytes;
    })(),
  };
}

/** Adds what a client needs to fix a refused request to connect's bare 415/405/505 answers. */
function explainRefusal(res: UniversalServerResponse, handler: UniversalHandler, req: NodeServerRequest): UniversalServerResponse {
  const path = displayPath(requestPath(req));
  if (res.status === 415) {
    const accepted = acceptedContentTypes(handler);
    const given = req.headers["content-type"] ?? "";
    return jsonResponse(
      415,
      { error: `unsupported content type '${displayPath(String(given))}' for ${path}`, accepted },
      { "accept-post": accepted.join(", ") },
    );
  }
  if (res.status === 405) {
    const allowed = handler.allowedMethods.join(", ");
    const why = handler.allowedMethods.includes("GET") ? "" : " (GET is only for RPCs without side effects)";
    return jsonResponse(405, { error: `method ${req.method} not allowed for ${path}; use ${allowed}${why}` }, { allow: allowed });
  }
  if (res.status === 505) {
    const body = jsonResponse(505, { error: `${path} is a bidirectional stream: it needs HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2)` }, {});
    for (const [k, v] of res.header ?? []) body.header!.set(k, v);
    return body;
  }
  return res;
}

/**
 * A unary Connect request whose body is not valid protobuf binary: connect-es answers 500
 * `internal` ("parse binary: ..."), as if the server had failed. It is the request that is
 * wrong, as for malformed JSON (400 `invalid_argument`), so say so, with the message type.
 * (Only this unary Connect answer: the gRPC convention for an unparsable request is INTERNAL,
 * which gRPC clients expect.)
 */
async function malformedBinaryIsInvalidArgument(res: UniversalServerResponse, handler: UniversalHandler): Promise<UniversalServerResponse> {
  if (res.status !== 500 || res.header?.get("content-encoding") || res.body === undefined) return res;
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const again: UniversalServerResponse = {
    ...res,
    body: (async function* () {
      yield bytes;
    })(),
  };
  let parsed: { code?: unknown; message?: unknown };
  try {
    parsed = JSON.parse(bytes.toString("utf8")) as typeof parsed;
  } catch {
    return again;
  }
  const prefix = "parse binary: ";
  if (parsed.code !== "internal" || typeof parsed.message !== "string" || !parsed.message.startsWith(prefix)) return again;
  const err = rpcError(
    `the request body is not a valid ${handler.method.input.typeName} in protobuf binary (${parsed.message.slice(prefix.length)})`,
    Code.InvalidArgument,
    { reason: "MALFORMED_REQUEST" },
  );
  const body = errorToJsonBytes(err, {});
  const header = new Headers(res.header);
  header.set("content-length", String(body.byteLength));
  return {
    status: codeToHttpStatus(Code.InvalidArgument),
    header,
    body: (async function* () {
      yield body;
    })(),
  };
}

/**
 * The same for a Connect stream: the parse error is the first and only envelope of the answer
 * (an end-of-stream message), so only the first chunk is looked at; every other answer streams
 * through untouched.
 */
function malformedBinaryStreamIsInvalidArgument(res: UniversalServerResponse, handler: UniversalHandler): UniversalServerResponse {
  const body = res.body;
  if (
    res.status !== 200 ||
    body === undefined ||
    !(Symbol.asyncIterator in body) ||
    !/^application\/connect\+proto/.test(res.header?.get("content-type") ?? "")
  )
    return res;
  return {
    ...res,
    body: (async function* () {
      let first = true;
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        if (first) {
          first = false;
          yield rewriteEndStream(chunk, handler);
        } else yield chunk;
      }
    })(),
  };
}

function rewriteEndStream(chunk: Uint8Array, handler: UniversalHandler): Uint8Array {
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (buf.length < 5 || (buf[0]! & 0x02) === 0 || buf.readUInt32BE(1) !== buf.length - 5) return chunk;
  let end: { error?: { code?: unknown; message?: unknown } };
  try {
    end = JSON.parse(buf.subarray(5).toString("utf8")) as typeof end;
  } catch {
    return chunk;
  }
  const message = end.error?.message;
  if (end.error?.code !== "internal" || typeof message !== "string" || !message.startsWith("parse binary: ")) return chunk;
  const err = rpcError(`the request is not a valid ${handler.method.input.typeName} in protobuf binary (${message.slice(14)})`, Code.InvalidArgument, {
    reason: "MALFORMED_REQUEST",
  });
  const json = Buffer.from(JSON.stringify({ error: JSON.parse(new TextDecoder().decode(errorToJsonBytes(err, {}))) as unknown }));
  const head = Buffer.alloc(5);
  head[0] = buf[0]!;
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json]);
}

/**
 * Whether the handler would take this request past its method and content-type checks: only
 * then does the gate run, so a wrong method or content type still gets its 405/415 that says
 * what to send (the same order as connect 2.2's requestGate).
 */
function gateApplies(handler: UniversalHandler, req: NodeServerRequest): boolean {
  const method = req.method ?? "";
  if (!handler.allowedMethods.includes(method)) return false;
  return method === "GET" || handler.supportedContentType(req.headers["content-type"] ?? "");
}

/** The RPC handler: every service the routes register, on the given router options. */
export function rpcAdapter(options: RpcAdapterOptions): NodeHandlerFn {
  if (options.acceptCompression === undefined) options.acceptCompression = [compressionGzip, compressionBrotli];
  const router = createConnectRouter(options);
  options.routes(router);
  const routes = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const services = new Map<string, string[]>();
  for (const h of router.handlers) services.set(h.service.typeName, [...(services.get(h.service.typeName) ?? []), h.method.name]);
  const onHandlerError =
    options.onHandlerError ?? ((method, reason) => console.error(`handler for rpc ${method.name} of ${method.parent.typeName} failed`, reason));

  return (req, res) => {
    const path = requestPath(req);
    const handler = routes.get(path);
    if (!handler) {
      const protocol = rpcProtocolOf(req);
      if (protocol === undefined) options.fallback(req, res);
      else writeRpcError(req, res, protocol, unknownMethodError(path, services));
      return;
    }
    let uReq: ReturnType<typeof universalRequestFromNode>;
    try {
      uReq = universalRequestFromNode(req, res, options.contextValues?.(req));
    } catch {
      // No usable authority (HTTP/1.0 without Host, a Host that is not host[:port]): a request
      // nobody authenticated yet must get an answer, not throw in the request listener.
      const err = rpcError(
        `the request's Host header is missing or is not host[:port] (${JSON.stringify(displayPath(String(req.headers.host ?? "")))})`,
        Code.InvalidArgument,
        { reason: "BAD_HOST" },
      );
      writeRpcError(req, res, rpcProtocolOf(req) ?? "connect-unary", err);
      return;
    }
    if (options.requestGate && gateApplies(handler, req)) {
      try {
        options.requestGate({
          service: handler.service,
          method: handler.method,
          requestHeader: uReq.header,
          values: uReq.contextValues ?? createContextValues(),
        });
      } catch (reason) {
        // gateApplies means the request is RPC-shaped, so it has a protocol to answer in.
        writeRpcError(req, res, rpcProtocolOf(req) ?? "connect-unary", ConnectError.from(reason));
        return;
      }
    }
    handler(uReq)
      .then((uRes) =>
        uRes.status === 500
          ? malformedBinaryIsInvalidArgument(uRes, handler)
          : handler.method.methodKind === "unary"
            ? uRes
            : malformedBinaryStreamIsInvalidArgument(uRes, handler),
      )
      .then((uRes) => writeUniversalResponse(explainRefusal(uRes, handler, req), res, handler.method.methodKind === "unary" || uRes.status !== 200))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        onHandlerError(handler.method, reason);
        // Never leave the client waiting: answer if nothing was sent yet, else cut the exchange.
        if (!res.headersSent) writeRpcError(req, res, rpcProtocolOf(req) ?? "connect-unary", new ConnectError("the server failed to answer", Code.Internal));
        else if (!res.writableEnded) (res as { destroy(): void }).destroy();
      });
  };
}
