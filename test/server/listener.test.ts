// Every connection is bounded: idle, slow and surplus connections are cut, and /health keeps
// answering. In-process: listen() with a trivial handler and short limits.
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { after, test } from "node:test";
import { defaultMaxConnections, listen, type Listener, type ListenerEvent } from "../../src/server/listener.js";
import { selfSignedCert } from "../helpers/tls-cert.js";

const listeners: Listener[] = [];
after(async () => {
  for (const l of listeners) await l.drain(100);
});

async function serve(limits: Parameters<typeof listen>[1]["limits"], extra: { tls?: { cert: Buffer; key: Buffer } } = {}) {
  const events: ListenerEvent[] = [];
  let onFirstEvent!: () => void;
  const firstEvent = new Promise<void>((resolve) => (onFirstEvent = resolve));
  const l = await listen(
    (req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`ok ${req.url}`);
    },
    {
      bind: "127.0.0.1",
      port: 0,
      limits,
      onEvent: (e) => {
        events.push(e);
        onFirstEvent();
      },
      ...extra,
    },
  );
  listeners.push(l);
  return { l, events, firstEvent };
}

const health = async (port: number) => (await fetch(`http://127.0.0.1:${port}/health`)).status;

/** Opens a TCP connection and resolves once it is open; `closed` resolves when the server cuts it. */
async function rawSocket(port: number): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const socket = net.connect(port, "127.0.0.1");
  const started = Date.now();
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - started)));
  socket.on("error", () => undefined);
  socket.resume(); // read what the server sends, so its close reaches us
  await once(socket, "connect");
  return { socket, closed };
}

test("a socket that never sends a byte is cut after firstByteMs; /health answers meanwhile", async () => {
  const { l } = await serve({ firstByteMs: 300 });
  const idle = await Promise.all(Array.from({ length: 50 }, () => rawSocket(l.port)));
  assert.equal(await health(l.port), 200);
  const times = await Promise.all(idle.map((s) => s.closed));
  for (const t of times) assert.ok(t >= 250 && t < 5_000, `cut after ${t} ms`);
});

test("slowloris: request headers that never complete are cut after headersMs", async () => {
  const { l } = await serve({ headersMs: 500 });
  const { socket, closed } = await rawSocket(l.port);
  let answer = "";
  socket.on("data", (d: Buffer) => (answer += d.toString()));
  socket.write("GET /health HTTP/1.1\r\nHost: x\r\n");
  const drip = setInterval(() => socket.write("X-Slow: a\r\n"), 100);
  const t = await closed;
  clearInterval(drip);
  assert.ok(t >= 400 && t < 5_000, `cut after ${t} ms`);
  assert.match(answer, /^HTTP\/1\.1 408 Request Timeout/);
});

test("an idle HTTP/1.1 keep-alive connection and an HTTP/2 connection with no stream are closed after idleMs", async () => {
  const { l } = await serve({ idleMs: 400 });
  const h1 = await rawSocket(l.port);
  h1.socket.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  const t1 = await h1.closed;
  assert.ok(t1 >= 350 && t1 < 5_000, `HTTP/1.1 idle cut after ${t1} ms`);

  const session = http2.connect(`http://127.0.0.1:${l.port}`);
  const started = Date.now();
  const req = session.request({ ":path": "/b" });
  req.resume();
  await once(req, "end");
  const [code] = (await once(session, "goaway")) as [number];
  assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
  const t2 = Date.now() - started;
  assert.ok(t2 >= 350 && t2 < 5_000, `HTTP/2 idle session closed after ${t2} ms`);
  session.destroy();
});

test("a quiet HTTP/2 stream keeps its connection past idleMs", async () => {
  let finish!: () => void;
  const l = await listen(
    (_req, res) => {
      res.writeHead(200);
      (res as import("node:http").ServerResponse).write("first");
      finish = () => res.end("last");
    },
    { bind: "127.0.0.1", port: 0, limits: { idleMs: 200 } },
  );
  listeners.push(l);
  const session = http2.connect(`http://127.0.0.1:${l.port}`);
  let goaway = false;
  session.on("goaway", () => (goaway = true));
  const req = session.request({ ":path": "/follow" });
  let body = "";
  req.on("data", (d: Buffer) => (body += d.toString()));
  await once(req, "data");
  // A session opened after it, with no stream, is cut when idleMs has passed: by then the
  // first has been quiet for longer than idleMs.
  const idle = http2.connect(`http://127.0.0.1:${l.port}`);
  idle.on("error", () => undefined);
  await once(idle, "close");
  assert.equal(goaway, false, "the session with an open stream was not closed");
  finish();
  await once(req, "end");
  assert.equal(body, "firstlast");
  session.destroy();
});

test("past maxConnections new connections are refused and logged once per burst; once the idle ones are cut, /health answers", async () => {
  const { l, events, firstEvent } = await serve({ maxConnections: 20, firstByteMs: 600 });
  const held = await Promise.all(Array.from({ length: 20 }, () => rawSocket(l.port)));
  const surplus = await Promise.all(Array.from({ length: 10 }, () => rawSocket(l.port)));
  const surplusTimes = await Promise.all(surplus.map((s) => s.closed));
  for (const t of surplusTimes) assert.ok(t < 500, `a surplus connection was closed at once (${t} ms)`);
  await Promise.all(held.map((s) => s.closed));
  assert.equal(await health(l.port), 200);
  await firstEvent; // one line for the burst, written a second after it began
  assert.deepEqual(events, [{ kind: "connections_dropped", count: 10, max: 20 }]);
});

test("TLS: a client that never finishes the handshake is cut after firstByteMs", async () => {
  const files = await selfSignedCert();
  const { l } = await serve({ firstByteMs: 400 }, { tls: { cert: await readFile(files.cert), key: await readFile(files.key) } });
  const { closed } = await rawSocket(l.port);
  const t = await closed;
  assert.ok(t >= 350 && t < 5_000, `cut after ${t} ms`);
  // A real TLS client still gets through.
  const ok = tls.connect({ port: l.port, host: "127.0.0.1", ca: await readFile(files.cert), ALPNProtocols: ["http/1.1"], servername: "localhost" });
  await once(ok, "secureConnect");
  ok.end();
});

test("the default connection cap stays below the process's open-file limit", async () => {
  const { writeFile } = await import("node:fs/promises");
  const { tempDir } = await import("../helpers/cara.js");
  const file = `${await tempDir()}/limits`;
  await writeFile(
    file,
    "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n",
  );
  assert.equal(defaultMaxConnections(file), 896);
  assert.equal(defaultMaxConnections("/nonexistent"), 4_096);
});

test("TLS: HTTP/1.1 request headers that never complete are cut after headersMs", async () => {
  const files = await selfSignedCert();
  const { l } = await serve({ headersMs: 500 }, { tls: { cert: await readFile(files.cert), key: await readFile(files.key) } });
  const socket = tls.connect({ port: l.port, host: "127.0.0.1", ca: await readFile(files.cert), ALPNProtocols: ["http/1.1"], servername: "localhost" });
  await once(socket, "secureConnect");
  const started = Date.now();
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - started)));
  socket.on("error", () => undefined);
  socket.resume();
  socket.write("GET /health HTTP/1.1\r\nHost: x\r\n");
  const drip = setInterval(() => socket.write("X-Slow: a\r\n"), 100);
  const t = await closed;
  clearInterval(drip);
  assert.ok(t >= 400 && t < 5_000, `cut after ${t} ms`);
});

test("a request body that stalls is cut after requestMs (HTTP/1.1: the whole request; HTTP/2: the stream)", async () => {
  const l = await listen(
    (req, res) => {
      req.resume();
      req.on("end", () => res.end("got it"));
    },
    { bind: "127.0.0.1", port: 0, limits: { requestMs: 600, headersMs: 300 } },
  );
  listeners.push(l);
  const h1 = await rawSocket(l.port);
  h1.socket.write("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly part of it");
  const t1 = await h1.closed;
  assert.ok(t1 >= 500 && t1 < 5_000, `HTTP/1.1 cut after ${t1} ms`);

  const session = http2.connect(`http://127.0.0.1:${l.port}`);
  const started = Date.now();
  const req = session.request({ ":method": "POST", ":path": "/y" }, { endStream: false });
  req.write("only part of it");
  req.resume();
  const [code] = await new Promise<[number]>((resolve) => req.once("close", () => resolve([req.rstCode])));
  const t2 = Date.now() - started;
  assert.equal(code, http2.constants.NGHTTP2_CANCEL);
  assert.ok(t2 >= 500 && t2 < 5_000, `HTTP/2 stream reset after ${t2} ms`);
  // A complete request on the same connection is answered.
  const ok = session.request({ ":method": "POST", ":path": "/z" });
  ok.end("all of it");
  let body = "";
  ok.on("data", (d: Buffer) => (body += d.toString()));
  await once(ok, "end");
  assert.equal(body, "got it");
  session.destroy();
});

test("every accepted socket has Nagle off (plain and TLS): a streamed message is not held for the client's delayed ACK", async (t) => {
  const noDelay: { port: number; on: boolean | undefined }[] = [];
  const original = net.Socket.prototype.setNoDelay;
  t.mock.method(net.Socket.prototype, "setNoDelay", function (this: net.Socket, on?: boolean) {
    noDelay.push({ port: this.remotePort ?? -1, on });
    return original.call(this, on);
  });
  const plain = await serve({});
  const client = await rawSocket(plain.l.port);
  const files = await selfSignedCert();
  const secure = await serve({}, { tls: { cert: await readFile(files.cert), key: await readFile(files.key) } });
  const tlsClient = tls.connect({ port: secure.l.port, host: "127.0.0.1", rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
  tlsClient.on("error", () => undefined);
  await once(tlsClient, "secureConnect");
  for (const port of [client.socket.localPort, tlsClient.localPort]) {
    assert.ok(
      noDelay.some((n) => n.port === port && n.on === true),
      `the server's socket for client port ${port} got setNoDelay(true): ${JSON.stringify(noDelay)}`,
    );
  }
  client.socket.destroy();
  tlsClient.destroy();
});
