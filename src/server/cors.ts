import type http from "node:http";
import type http2 from "node:http2";
import { cors } from "@connectrpc/connect";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** What a browser page may send: Connect's, gRPC-Web's and Connect GET's headers, plus the bearer token. */
export const CORS_ALLOWED_HEADERS: readonly string[] = [...cors.allowedHeaders, "Authorization"].map((h) => h.toLowerCase());
/** What a page may read from an answer: gRPC(-Web) status and details, and the 429 wait. */
export const CORS_EXPOSED_HEADERS: readonly string[] = [...cors.exposedHeaders, "Retry-After"].map((h) => h.toLowerCase());
export const CORS_ALLOWED_METHODS: readonly string[] = cors.allowedMethods;
/** How long a browser may reuse a preflight answer (Chromium caps it at 2 h). */
const MAX_AGE_SECONDS = 7200;

/**
 * CORS for the API, for exactly the origins in `server.cors.allowedOrigins`. The console itself is
 * same-origin and needs none of this. A request from any other origin gets no `Access-Control-*`
 * header at all, so the browser refuses to let the page see the answer (or to send the call, for
 * a preflighted one). No ambient credentials exist (the token is a header the page must hold), so
 * this is about which pages may use a token, not about CSRF.
 *
 * Returns a handler that answers preflights itself (true) and otherwise only adds headers to the
 * response and returns false, leaving the request to the next route.
 */
export function corsRoutes(allowedOrigins: readonly string[]): (req: Req, res: Res) => boolean {
  const allowed = new Set(allowedOrigins);
  const allowHeaders = CORS_ALLOWED_HEADERS.join(", ");
  const exposeHeaders = CORS_EXPOSED_HEADERS.join(", ");
  const allowMethods = CORS_ALLOWED_METHODS.join(", ");
  return (req, res) => {
    const origin = req.headers.origin;
    if (typeof origin !== "string") return false;
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (!allowed.has(origin)) {
      if (!preflight) return false;
      // Same status a browser sees for any refused preflight; the text helps whoever reads the network tab.
      const body = "CORS: this origin is not in server.cors.allowedOrigins\n";
      res.writeHead(403, {
        "content-type": "text/plain; charset=utf-8",
        "content-length": String(Buffer.byteLength(body)),
        vary: "Origin",
        "x-content-type-options": "nosniff",
      });
      (res as http.ServerResponse).end(body);
      return true;
    }
    if (preflight) {
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": allowMethods,
        "access-control-allow-headers": allowHeaders,
        "access-control-max-age": String(MAX_AGE_SECONDS),
        vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "content-length": "0",
      });
      (res as http.ServerResponse).end();
      return true;
    }
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-expose-headers", exposeHeaders);
    res.setHeader("vary", "Origin");
    return false;
  };
}
