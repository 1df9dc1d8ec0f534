/**
 * The updater's HTTP client (src/update/http-client.ts) behind a proxy: a real local HTTP proxy
 * that only speaks CONNECT (as corporate proxies do for https) relays both the release JSON and
 * the artifact download when HTTP_PROXY / HTTPS_PROXY name it, and is bypassed for hosts in
 * NO_PROXY. The https case runs in a child process, which trusts the test certificate through
 * NODE_EXTRA_CA_CERTS (read at start-up, like an operator's private CA).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect, type AddressInfo } from "node:net";
import { join } from "node:path";
import { after, afterEach, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { downloadFile } from "../../src/update/download.js";
import { updateDispatcher } from "../../src/update/http-client.js";
import { ReleaseSource } from "../../src/update/releases.js";
import { tempDir } from "../helpers/cara.js";
import { startReleaseServer, type ReleaseServer } from "../helpers/release-server.js";
import { selfSignedCert } from "../helpers/tls-cert.js";

const NAME = "carapace-1.0.0.tar.gz";
const DATA = randomBytes(1024 * 1024 + 17);
const SHA = createHash("sha256").update(DATA).digest("hex");
const PROXY_VARS = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"];

interface Proxy {
  url: string;
  /** CONNECT targets (host:port) in arrival order, with the Proxy-Authorization each sent. */
  tunnels: { target: string; auth: string | undefined }[];
  /** Bytes relayed from the targets to the client. */
  relayed: number;
  close(): Promise<void>;
}

/** A CONNECT-only HTTP proxy on 127.0.0.1: anything else gets 405. */
async function startProxy(): Promise<Proxy> {
  const tunnels: Proxy["tunnels"] = [];
  let relayed = 0;
  const server: Server = createServer((_req, res) => res.writeHead(405).end());
  server.on("connect", (req, client, head) => {
    tunnels.push({ target: req.url ?? "", auth: req.headers["proxy-authorization"] });
    const [host, port] = (req.url ?? "").split(":");
    const upstream = connect(Number(port), host!, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.on("data", (c: Buffer) => (relayed += c.length));
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    get relayed() {
      return relayed;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let releases: ReleaseServer;
let proxy: Proxy;
const savedEnv = new Map(PROXY_VARS.map((k) => [k, process.env[k]]));

before(async () => {
  const dir = await tempDir();
  await writeFile(join(dir, NAME), DATA);
  releases = await startReleaseServer([{ tag: "v1.0.0", assets: [{ name: NAME, file: join(dir, NAME) }] }]);
  proxy = await startProxy();
});
afterEach(() => {
  for (const [k, v] of savedEnv) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
after(async () => {
  await (await updateDispatcher()).close();
  await releases.close();
  await proxy.close();
});

function setProxyEnv(vars: Record<string, string>): void {
  for (const k of PROXY_VARS) delete process.env[k];
  Object.assign(process.env, vars);
}

test("HTTP_PROXY: release JSON and the artifact both go through the proxy's CONNECT tunnel", async () => {
  setProxyEnv({ HTTP_PROXY: proxy.url });
  proxy.tunnels.length = 0;
  const relayedBefore = proxy.relayed;
  const target = `127.0.0.1:${releases.port}`;
  const release = await new ReleaseSource({ baseUrl: releases.baseUrl, userAgent: "cara-test" }).latest();
  assert.equal(release.tag, "v1.0.0");
  const dest = join(await tempDir(), NAME);
  const result = await downloadFile({ url: releases.assetUrl("v1.0.0", NAME), dest, userAgent: "cara-test", expectedSize: DATA.length });
  assert.deepEqual(result, { path: dest, bytes: DATA.length, sha256: SHA, resumedFrom: 0 });
  // One tunnel, kept alive for both requests (or one each); every byte came through the proxy.
  assert.ok(proxy.tunnels.length >= 1 && proxy.tunnels.every((t) => t.target === target), JSON.stringify(proxy.tunnels));
  assert.ok(proxy.relayed - relayedBefore > DATA.length, `relayed ${proxy.relayed - relayedBefore} bytes`);
});

test("proxy credentials in the URL go to the proxy as Proxy-Authorization", async () => {
  setProxyEnv({ http_proxy: proxy.url.replace("http://", "http://op:s%3Acret@") });
  proxy.tunnels.length = 0;
  await new ReleaseSource({ baseUrl: releases.baseUrl, userAgent: "cara-test" }).latest();
  assert.deepEqual(proxy.tunnels, [{ target: `127.0.0.1:${releases.port}`, auth: `Basic ${Buffer.from("op:s:cret").toString("base64")}` }]);
});

test("NO_PROXY: a listed host is reached directly", async () => {
  setProxyEnv({ HTTP_PROXY: proxy.url, NO_PROXY: "example.com, 127.0.0.1" });
  proxy.tunnels.length = 0;
  const dest = join(await tempDir(), NAME);
  assert.equal((await downloadFile({ url: releases.assetUrl("v1.0.0", NAME), dest, userAgent: "cara-test" })).sha256, SHA);
  assert.equal((await new ReleaseSource({ baseUrl: releases.baseUrl, userAgent: "cara-test" }).latest()).tag, "v1.0.0");
  assert.deepEqual(proxy.tunnels, []);
});

test("without proxy variables nothing goes to the proxy", async () => {
  setProxyEnv({});
  proxy.tunnels.length = 0;
  const dest = join(await tempDir(), NAME);
  assert.equal((await downloadFile({ url: releases.assetUrl("v1.0.0", NAME), dest, userAgent: "cara-test" })).sha256, SHA);
  assert.deepEqual(proxy.tunnels, []);
});

test("HTTPS_PROXY: an https download is tunnelled, TLS end to end with the server's certificate verified", async () => {
  const { cert, key } = await selfSignedCert();
  const https = createHttpsServer({ cert: await readFile(cert), key: await readFile(key) }, (_req, res) => {
    res.writeHead(200, { "Content-Length": String(DATA.length) });
    res.end(DATA);
  });
  https.listen(0, "127.0.0.1");
  await once(https, "listening");
  const port = (https.address() as AddressInfo).port;
  const dir = await tempDir();
  const script = join(dir, "download.mts");
  const dest = join(dir, NAME);
  const module = fileURLToPath(new URL("../../src/update/download.ts", import.meta.url));
  await writeFile(
    script,
    `const { downloadFile } = await import(${JSON.stringify(module)});
const r = await downloadFile({ url: "https://localhost:${port}/${NAME}", dest: ${JSON.stringify(dest)}, userAgent: "cara-test" });
process.stdout.write(r.sha256);
`,
  );
  proxy.tunnels.length = 0;
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: cert, HTTPS_PROXY: proxy.url, NO_PROXY: "" };
    for (const k of ["HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy"]) delete env[k];
    const child = spawn(process.execPath, ["--import", "tsx", script], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0, stderr);
    assert.equal(stdout, SHA);
    assert.deepEqual(
      proxy.tunnels.map((t) => t.target),
      [`localhost:${port}`],
    );
    assert.ok((await readFile(dest)).equals(DATA));
  } finally {
    https.closeAllConnections();
    await new Promise<void>((resolve) => https.close(() => resolve()));
  }
});
