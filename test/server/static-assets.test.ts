import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { consoleRoutes, consoleUrl, loadAssetSet, SECURITY_HEADERS, type AssetSet } from "../../src/server/static-assets.js";
import type { EmbeddedDirectory } from "../../src/package-files.js";
import { tempDir } from "../helpers/cara.js";

const JS = "console.log('app');\n".repeat(50);

/** A built console in a temp dir, plus a secret file next to it and symlinks pointing at it. */
async function fixture(): Promise<{ dir: string; outside: string }> {
  const root = await tempDir("cara-web-");
  const dir = join(root, "web");
  await mkdir(join(dir, "assets"), { recursive: true });
  await writeFile(join(dir, "index.html"), "<!doctype html><title>t</title>");
  await writeFile(join(dir, "index.html.gz"), gzipSync("<!doctype html><title>t</title>"));
  await writeFile(join(dir, "assets", "app-ABCDEFGH.js"), JS);
  await writeFile(join(dir, "assets", "app-ABCDEFGH.js.gz"), gzipSync(JS));
  await writeFile(join(dir, "assets", "app-ABCDEFGH.js.br"), brotliCompressSync(JS));
  await writeFile(join(dir, "assets", "app-ABCDEFGH.css"), "body{}");
  await writeFile(join(dir, "assets", "logo-QWERTY23.svg"), "<svg/>");
  await writeFile(join(dir, "assets", "notes.txt"), "unhashed");
  const outside = join(root, "secret.txt");
  await writeFile(outside, "SECRET");
  await symlink(outside, join(dir, "assets", "link-ABCDEFGH.js"));
  await symlink(join(root), join(dir, "assets", "dir-link"));
  return { dir, outside };
}

async function serve(assets: AssetSet | undefined): Promise<{ port: number; close: () => Promise<void> }> {
  const routes = consoleRoutes(assets);
  const server = http.createServer((req, res) => {
    if (!routes(req, res)) {
      res.writeHead(418);
      res.end("fell through");
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

/** A request with the path exactly as given (no URL normalization, unlike fetch). */
function raw(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("loadAssetSet holds index.html and the regular files of assets/ only; symlinks are skipped; no dist/web is undefined", async () => {
  const { dir } = await fixture();
  const set = await loadAssetSet(dir);
  assert.ok(set);
  assert.deepEqual([...set.files.keys()].sort(), ["/assets/app-ABCDEFGH.css", "/assets/app-ABCDEFGH.js", "/assets/logo-QWERTY23.svg", "/assets/notes.txt"]);
  assert.ok(set.index.gzip && !set.index.br);
  assert.equal(await loadAssetSet(join(dir, "nope")), undefined);
  // A symlinked index.html is not the console either.
  const other = join(await tempDir(), "web");
  await mkdir(other);
  await symlink(join(dir, "index.html"), join(other, "index.html"));
  assert.equal(await loadAssetSet(other), undefined);
});

test("loadAssetSet reads the executable's embedded dist/web as it reads the directory: the same set; no embedded index.html is undefined", async () => {
  const { dir } = await fixture();
  // What the executable embeds: the regular files of dist/web, by relative path (the symlinks
  // never get there: the build embeds regular files only).
  const files = new Map<string, Buffer>();
  for (const rel of ["index.html", "index.html.gz"]) files.set(rel, await readFile(join(dir, rel)));
  for (const name of ["app-ABCDEFGH.js", "app-ABCDEFGH.js.gz", "app-ABCDEFGH.js.br", "app-ABCDEFGH.css", "logo-QWERTY23.svg", "notes.txt"]) {
    files.set(`assets/${name}`, await readFile(join(dir, "assets", name)));
  }
  const embedded = (map: Map<string, Buffer>): EmbeddedDirectory => ({
    label: "/opt/cara-x86_64-linux (embedded dist/web)",
    read: async (rel) => map.get(rel),
    list: async (rel) => [...map.keys()].filter((k) => k.startsWith(`${rel}/`)).map((k) => k.slice(rel.length + 1)),
  });
  const fromDisk = await loadAssetSet(dir);
  const fromExecutable = await loadAssetSet(embedded(files));
  assert.ok(fromDisk && fromExecutable);
  assert.deepEqual(fromExecutable, fromDisk);
  files.delete("index.html");
  assert.equal(await loadAssetSet(embedded(files)), undefined);
});

test("content types, caching (immutable for hashed names, no-cache for the page), ETag/304, precompressed variants, security headers", async () => {
  const { dir } = await fixture();
  const srv = await serve(await loadAssetSet(dir));
  try {
    const page = await raw(srv.port, "/");
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(page.headers["cache-control"], "no-cache");
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) assert.equal(page.headers[k], v, k);
    const csp = String(page.headers["content-security-policy"]);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(page.headers["referrer-policy"], "no-referrer");
    assert.equal(page.headers["x-content-type-options"], "nosniff");
    // Deep links and /console show the same page.
    for (const p of ["/console", "/console/", "/console/tasks/7c0e9a1b-1111-4222-8333-444455556666", "/console/logs?x=1"]) {
      const r = await raw(srv.port, p);
      assert.equal(r.status, 200, p);
      assert.equal(r.body.toString(), "<!doctype html><title>t</title>", p);
    }

    const js = await raw(srv.port, "/assets/app-ABCDEFGH.js");
    assert.equal(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert.equal(js.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(js.headers.vary, "Accept-Encoding");
    assert.equal(js.body.toString(), JS);
    assert.equal(js.headers["content-encoding"], undefined);
    assert.equal((await raw(srv.port, "/assets/app-ABCDEFGH.css")).headers["content-type"], "text/css; charset=utf-8");
    assert.equal((await raw(srv.port, "/assets/logo-QWERTY23.svg")).headers["content-type"], "image/svg+xml");
    assert.equal((await raw(srv.port, "/assets/notes.txt")).headers["cache-control"], "no-cache");

    const br = await raw(srv.port, "/assets/app-ABCDEFGH.js", { "accept-encoding": "gzip, deflate, br" });
    assert.equal(br.headers["content-encoding"], "br");
    assert.deepEqual(br.body, brotliCompressSync(JS));
    const gz = await raw(srv.port, "/assets/app-ABCDEFGH.js", { "accept-encoding": "gzip, br;q=0" });
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.deepEqual(gz.body, gzipSync(JS));
    assert.equal(Number(gz.headers["content-length"]), gz.body.length);
    // Each representation has its own ETag; any of them revalidates to 304 with no body.
    const tags = new Set([js.headers.etag, br.headers.etag, gz.headers.etag]);
    assert.equal(tags.size, 3);
    for (const tag of tags) {
      const again = await raw(srv.port, "/assets/app-ABCDEFGH.js", { "if-none-match": `W/${tag}`, "accept-encoding": "br" });
      assert.equal(again.status, 304);
      assert.equal(again.body.length, 0);
      assert.equal(again.headers.etag, br.headers.etag);
      assert.equal(again.headers["cache-control"], "public, max-age=31536000, immutable");
    }
    assert.equal((await raw(srv.port, "/", { "if-none-match": page.headers.etag! })).status, 304);
    assert.equal((await raw(srv.port, "/assets/app-ABCDEFGH.js", { "if-none-match": '"other"' })).status, 200);
    // HEAD: the same headers, no body.
    const head = await raw(srv.port, "/assets/app-ABCDEFGH.js", {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers["content-length"], String(JS.length));
    assert.equal(head.body.length, 0);
  } finally {
    await srv.close();
  }
});

test("paths outside the asset set never read a file: .., encoded dots, absolute paths, symlinks, other methods", async () => {
  const { dir, outside } = await fixture();
  const srv = await serve(await loadAssetSet(dir));
  try {
    const notFound = [
      "/assets/../index.html",
      "/assets/..%2findex.html",
      "/assets/%2e%2e/%2e%2e/secret.txt",
      "/assets/%2E%2E%2Fsecret.txt",
      "/assets/../../secret.txt",
      `/assets/${outside}`,
      "/assets//etc/passwd",
      "/assets/link-ABCDEFGH.js",
      "/assets/dir-link/secret.txt",
      "/assets/app-ABCDEFGH.js.gz",
      "/assets/",
      "/assets/app-abcdefgh.js",
      "/console/../../secret.txt",
      "/console/%2e%2e/secret.txt",
      "/console/a\\b",
    ];
    for (const p of notFound) {
      const r = await raw(srv.port, p);
      assert.equal(r.status, 404, p);
      assert.equal(r.body.toString(), "not found\n", p);
      assert.ok(!r.body.includes("SECRET"), p);
      assert.equal(r.headers["x-content-type-options"], "nosniff", p);
    }
    // Not the console's: left to the other routes (the API answers those).
    for (const p of [
      "/etc/passwd",
      "//etc/passwd",
      "/index.html",
      "/health",
      "/carapace.ops.v1.OpsService/GetStatus",
      "http://127.0.0.1/assets/app-ABCDEFGH.js",
    ]) {
      assert.equal((await raw(srv.port, p)).status, 418, p);
    }
    assert.equal((await raw(srv.port, "/", {}, "POST")).status, 418);
    assert.equal((await raw(srv.port, "/assets/app-ABCDEFGH.js", {}, "DELETE")).status, 418);
  } finally {
    await srv.close();
  }
});

test("without a built console the page routes say how to build it (503), and nothing else changes", async () => {
  const srv = await serve(undefined);
  try {
    const r = await raw(srv.port, "/");
    assert.equal(r.status, 503);
    assert.equal(r.body.toString(), "The console is not built. Run `npm run build` where cara is installed, then restart.\n");
    assert.equal((await raw(srv.port, "/health")).status, 418);
  } finally {
    await srv.close();
  }
});

test("consoleUrl: the bound address, brackets for IPv6, localhost for a wildcard", () => {
  assert.equal(consoleUrl("127.0.0.1", 18789, false), "http://127.0.0.1:18789/");
  assert.equal(consoleUrl("::1", 8443, true), "https://[::1]:8443/");
  assert.equal(consoleUrl("0.0.0.0", 1, false), "http://localhost:1/");
});
