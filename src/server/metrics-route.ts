import type http from "node:http";
import type http2 from "node:http2";
import type { ServerMetrics } from "../ops/metrics.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Who may scrape: `token` (the bearer token, as Prometheus sends with `authorization`), `open`, or `off`. */
export type MetricsAccess = "token" | "open" | "off";

function send(res: Res, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { "cache-control": "no-store", "x-content-type-options": "nosniff", "content-length": String(Buffer.byteLength(body)), ...headers });
  (res as http.ServerResponse).end(body);
}

/**
 * `GET /metrics` for Prometheus (OpenMetrics when the scraper's Accept asks for it). With
 * `token` a scrape without the right bearer token gets 401 and nothing else; `off` serves
 * nothing (the path is then an ordinary unknown path). Returns false for other paths.
 */
export function metricsRoute(metrics: ServerMetrics, access: MetricsAccess, authorized: (req: Req) => boolean): (req: Req, res: Res) => boolean {
  return (req, res) => {
    if (access === "off" || (req.url ?? "").split("?", 1)[0] !== "/metrics") return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }, "use GET /metrics\n");
      return true;
    }
    if (access === "token" && !authorized(req)) {
      send(
        res,
        401,
        { "www-authenticate": 'Bearer realm="cara"', "content-type": "text/plain; charset=utf-8" },
        'a scrape needs the bearer token (Prometheus: authorization: {credentials_file: <state>/auth/token}), or server.metrics: "open"\n',
      );
      return true;
    }
    const accept = Array.isArray(req.headers.accept) ? req.headers.accept.join(",") : req.headers.accept;
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    metrics.render(accept).then(
      // Server-Timing: what the scrape cost here, apart from queueing (the benchmark reads it):
      // the time from the request to the rendered text (a busy machine stretches it) and the
      // process CPU time in between (the render runs in one turn of the event loop: it awaits
      // no I/O, so that CPU time is the render's).
      ({ contentType, body }) => {
        const cpu = process.cpuUsage(cpuStarted);
        const timing = `render;dur=${(performance.now() - started).toFixed(3)}, cpu;dur=${((cpu.user + cpu.system) / 1000).toFixed(3)}`;
        send(res, 200, { "content-type": contentType, "server-timing": timing }, req.method === "HEAD" ? "" : body);
      },
      (err: Error) => send(res, 500, { "content-type": "text/plain; charset=utf-8" }, `metrics could not be collected: ${err.message}\n`),
    );
    return true;
  };
}
