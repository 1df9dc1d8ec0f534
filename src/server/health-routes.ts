import type http from "node:http";
import type http2 from "node:http2";
import type { HealthMonitor } from "../ops/health.js";
import { uptimeSeconds, type ServerIdentity } from "../ops/status.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

function sendJson(req: Req, res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  (res as http.ServerResponse).end(req.method === "HEAD" ? undefined : text);
}

/**
 * The unauthenticated probes: `GET|HEAD /health` (alias `/health/live`): liveness, always 200
 * while the listener is up; `GET|HEAD /health/ready`: 200 when no check fails, else 503 with
 * the failing checks and `Retry-After: 5` (their messages only for a caller with the bearer
 * token: they name paths and sizes). Returns false for any other path.
 */
export function healthRoutes(identity: ServerIdentity, monitor: HealthMonitor, authorized: (req: Req) => boolean = () => false) {
  return (req: Req, res: Res): boolean => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path !== "/health" && path !== "/health/live" && path !== "/health/ready") return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendJson(req, res, 405, { error: `method ${req.method} not allowed on ${path}; use GET or HEAD` }, { allow: "GET, HEAD" });
      return true;
    }
    const base = { uptimeSeconds: uptimeSeconds(identity), version: identity.version };
    if (path !== "/health/ready") {
      sendJson(req, res, 200, { status: "ok", ...base });
      return true;
    }
    // Messages name paths and sizes: only a caller with the token sees them. Anyone else
    // learns which checks fail, and where to look.
    const detailed = authorized(req);
    const view = ({ name, message }: { name: string; message: string }) => (detailed ? { name, message } : { name });
    const hint = detailed ? {} : { detail: "send the bearer token (Authorization: Bearer ...) or run 'cara status' to see why" };
    monitor.evaluate().then(
      (evaluation) => {
        const warnings = evaluation.results.filter((r) => r.status === "warn").map(view);
        if (evaluation.ready) {
          sendJson(req, res, 200, { status: "ready", ...base, warnings, ...(warnings.length > 0 ? hint : {}) });
        } else {
          const failing = evaluation.results.filter((r) => r.status === "fail").map(view);
          sendJson(req, res, 503, { status: "not_ready", ...base, failing, warnings, ...hint }, { "retry-after": "5" });
        }
      },
      () =>
        sendJson(req, res, 503, { status: "not_ready", ...base, failing: [{ name: "health", message: "health evaluation failed" }] }, { "retry-after": "5" }),
    );
    return true;
  };
}
