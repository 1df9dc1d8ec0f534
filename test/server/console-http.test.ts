// The console and CORS on a real `cara start`: what a browser gets, and what the API keeps doing.
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from "../../src/server/cors.js";
import { connectJson, ROOT, serveCara, tempDir } from "../helpers/cara.js";

const ALLOWED = "http://allowed.example:8080";

async function stateWithConfig(config: unknown): Promise<string> {
  const stateDir = join(await tempDir(), "state");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify(config), { mode: 0o600 });
  return stateDir;
}

test("the server serves the built console at / and /console/..., says where on start, and the API and /health are unchanged", async () => {
  const s = await serveCara();
  const listening = s.lines.map((l) => JSON.parse(l) as { msg: string; console?: string }).find((r) => r.msg.startsWith("listening on"))!;
  assert.equal(listening.msg, `listening on http://127.0.0.1:${s.port}; console at http://127.0.0.1:${s.port}/`);
  assert.equal(listening.console, `http://127.0.0.1:${s.port}/`);

  const built = await readFile(join(ROOT, "dist", "web", "index.html"), "utf8");
  for (const path of ["/", "/console/tasks/abc", "/console/backups"]) {
    const res = await fetch(`${s.baseUrl}${path}`);
    assert.equal(res.status, 200, path);
    assert.equal(await res.text(), built, path);
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.match(
      res.headers.get("content-security-policy") ?? "",
      /^default-src 'none'; script-src 'self'; style-src 'self';.* connect-src 'self';.* frame-ancestors 'none'/,
    );
  }
  // Every file the page names is served with its type, long-cached, gzip when asked.
  const names = [...built.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
  assert.equal(names.length, 3, built);
  for (const name of names) {
    const res = await fetch(`${s.baseUrl}${name}`, { headers: { "accept-encoding": "gzip" } });
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(
      res.headers.get("content-type"),
      name.endsWith(".js") ? "text/javascript; charset=utf-8" : name.endsWith(".css") ? "text/css; charset=utf-8" : "image/svg+xml",
    );
    assert.equal(res.headers.get("content-encoding"), "gzip");
    const onDisk = await readFile(join(ROOT, "dist", "web", name));
    // fetch decodes the body; it must be the very file.
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), onDisk);
    assert.deepEqual(gunzipSync(await readFile(join(ROOT, "dist", "web", `${name}.gz`))), onDisk);
  }
  // API behaviour is unchanged: unknown routes answer JSON 404, /health and RPCs as before.
  const post = await fetch(`${s.baseUrl}/`, { method: "POST" });
  assert.equal(post.status, 404);
  assert.equal(((await post.json()) as { error: string }).error, "no route for POST /");
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200);
  assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).status, 200);
  assert.equal((await fetch(`${s.baseUrl}/assets/..%2f..%2fpackage.json`)).status, 404);
  await s.stop();
});

test("server.console: false turns the console off; the API and /health are unchanged", async () => {
  const s = await serveCara({ stateDir: await stateWithConfig({ server: { console: false } }) });
  const listening = s.lines.map((l) => JSON.parse(l) as { msg: string; console?: string }).find((r) => r.msg.startsWith("listening on"))!;
  assert.equal(listening.msg, `listening on http://127.0.0.1:${s.port}`);
  assert.equal(listening.console, undefined);
  for (const path of ["/", "/console/logs", "/assets/app.js"]) {
    const res = await fetch(`${s.baseUrl}${path}`);
    assert.equal(res.status, 404, path);
    assert.deepEqual(await res.json(), { error: `no route for GET ${path}`, see: "GET /health, GET /health/ready, or POST /<package>.<Service>/<Method>" });
  }
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200);
  assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).status, 200);
  await s.stop();
});

test("CORS: preflights from an allowed origin get Connect's, gRPC-Web's and Connect GET's headers; other origins get none", async () => {
  const s = await serveCara({ stateDir: await stateWithConfig({ server: { cors: { allowedOrigins: [ALLOWED] } } }) });
  const url = `${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`;
  const preflight = (origin: string, method: string, headers: string) =>
    fetch(url, { method: "OPTIONS", headers: { origin, "access-control-request-method": method, "access-control-request-headers": headers } });

  for (const [method, headers] of [
    ["POST", "authorization,connect-protocol-version,connect-timeout-ms,content-type"], // Connect
    ["POST", "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout"], // gRPC-Web
    ["GET", "authorization,connect-protocol-version"], // Connect GET
  ] as const) {
    const res = await preflight(ALLOWED, method, headers);
    assert.equal(res.status, 204, `${method} ${headers}`);
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED);
    assert.equal(res.headers.get("access-control-allow-methods"), "POST, GET");
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").split(", ");
    for (const h of headers.split(",")) assert.ok(allowed.includes(h), `${h} is allowed (${allowed.join(", ")})`);
    assert.equal(res.headers.get("access-control-max-age"), "7200");
    assert.match(res.headers.get("vary") ?? "", /Origin/);
  }
  for (const h of ["connect-protocol-version", "connect-timeout-ms", "content-type", "authorization", "x-grpc-web", "x-user-agent", "grpc-timeout"])
    assert.ok(CORS_ALLOWED_HEADERS.includes(h), h);
  for (const h of ["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after"]) assert.ok(CORS_EXPOSED_HEADERS.includes(h), h);

  // Another origin (or the same host on another port or scheme): no CORS header at all.
  for (const origin of ["http://evil.example", "http://allowed.example:8081", "https://allowed.example:8080", "null"]) {
    const res = await preflight(origin, "POST", "authorization,content-type");
    assert.equal(res.status, 403, origin);
    assert.equal(res.headers.get("access-control-allow-origin"), null, origin);
    assert.equal(res.headers.get("access-control-allow-headers"), null, origin);
  }

  // Actual calls: the allowed origin may read the answer and its status headers (also a 401).
  const call = (origin: string, token?: string) =>
    fetch(url, { method: "POST", headers: { origin, "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: "{}" });
  const ok = await call(ALLOWED, s.token);
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), ALLOWED);
  assert.deepEqual((ok.headers.get("access-control-expose-headers") ?? "").split(", "), [...CORS_EXPOSED_HEADERS]);
  const denied = await call(ALLOWED);
  assert.equal(denied.status, 401);
  assert.equal(denied.headers.get("access-control-allow-origin"), ALLOWED);
  const other = await call("http://evil.example", s.token);
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  assert.equal(other.headers.get("access-control-expose-headers"), null);
  // Same-origin pages (the console) need nothing, and a preflight without Origin is not CORS.
  const same = await call(s.baseUrl, s.token);
  assert.equal(same.status, 200);
  assert.equal(same.headers.get("access-control-allow-origin"), null);
  assert.equal((await fetch(url, { method: "OPTIONS" })).status, 405);
  await s.stop();
});

test("default: no origin is allowed", async () => {
  const s = await serveCara();
  const res = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`, {
    method: "OPTIONS",
    headers: { origin: "http://localhost:1", "access-control-request-method": "POST" },
  });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  await s.stop();
});

test("over TLS (h2, as browsers use it) the console answers with the same headers and precompressed bodies", async () => {
  const { selfSignedCert } = await import("../helpers/tls-cert.js");
  const http2 = await import("node:http2");
  const { cert, key } = await selfSignedCert();
  const s = await serveCara({ flags: { tlsCert: cert, tlsKey: key } });
  const listening = s.lines.map((l) => JSON.parse(l) as { msg: string }).find((r) => r.msg.startsWith("listening on"))!;
  assert.equal(listening.msg, `listening on https://127.0.0.1:${s.port}; console at https://127.0.0.1:${s.port}/`);
  const session = http2.connect(`https://127.0.0.1:${s.port}`, { ca: await readFile(cert) });
  try {
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
        const req = session.request({ ":path": path, ...headers });
        const chunks: Buffer[] = [];
        let head: Record<string, unknown> = {};
        req.on("response", (h) => (head = h));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve({ headers: head, body: Buffer.concat(chunks) }));
        req.on("error", reject);
        req.end();
      });
    const page = await get("/console/logs", { "accept-encoding": "br" });
    assert.equal(page.headers[":status"], 200);
    assert.equal(page.headers["content-encoding"], "br");
    assert.match(String(page.headers["content-security-policy"]), /frame-ancestors 'none'/);
    assert.deepEqual(page.body, await readFile(join(ROOT, "dist", "web", "index.html.br")));
    const missing = await get("/assets/%2e%2e/%2e%2e/package.json");
    assert.equal(missing.headers[":status"], 404);
  } finally {
    session.close();
  }
  await s.stop();
});
