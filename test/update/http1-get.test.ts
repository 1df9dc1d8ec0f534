import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { test } from "node:test";
import { createServer as createTlsServer } from "node:tls";
import { http1Get, HttpProtocolError, HttpTimeoutError, HttpTruncatedError, type Http1GetOptions, type Http1Response } from "../../src/update/http1-get.js";
import { selfSignedCert } from "../helpers/tls-cert.js";

const OPTS: Http1GetOptions = { headers: { "User-Agent": "cara-test" }, timeoutMs: 5000 };

interface Raw {
  url: (path?: string) => URL;
  /** Request heads received, in order. */
  requests: string[];
  /** Resolves when a connection the server accepted has closed. */
  closed: () => Promise<void>;
  close: () => Promise<void>;
}

/** A TCP server that reads one request head per connection and answers with `respond`. */
async function rawServer(respond: (socket: Socket, head: string) => void, host = "127.0.0.1"): Promise<Raw> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let closeWaiters: (() => void)[] = [];
  const server: Server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      sockets.delete(socket);
      for (const w of closeWaiters) w();
      closeWaiters = [];
    });
    let buf = "";
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      socket.off("data", onData);
      const head = buf.slice(0, end);
      requests.push(head);
      respond(socket, head);
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  const origin = host.includes(":") ? `http://[${host}]:${port}` : `http://${host}:${port}`;
  return {
    url: (path = "/asset.bin") => new URL(path, origin),
    requests,
    closed: () => new Promise<void>((resolve) => (sockets.size === 0 ? resolve() : closeWaiters.push(resolve))),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Reads the whole body into one buffer (the chunks are views into a reused buffer: copy them). */
async function body(res: Http1Response): Promise<Buffer> {
  const parts: Buffer[] = [];
  await res.readBody((chunk) => parts.push(Buffer.from(chunk)));
  return Buffer.concat(parts);
}

test("Content-Length body: status, headers in lower case (repeats joined), exact bytes through a small read buffer", async () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const srv = createHttpServer((_req, res) => {
    res.setHeader("X-Repeat", ["a", "b"]);
    res.writeHead(200, { "Content-Length": String(data.length), "Content-Type": "application/octet-stream" });
    res.end(data);
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  try {
    const url = new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/x`);
    const res = await http1Get(url, { ...OPTS, readBufferBytes: 16 * 1024 });
    assert.equal(res.status, 200);
    assert.equal(res.contentLength, data.length);
    assert.equal(res.headers["content-type"], "application/octet-stream");
    assert.equal(res.headers["x-repeat"], "a, b");
    const got = await body(res);
    assert.equal(createHash("sha256").update(got).digest("hex"), createHash("sha256").update(data).digest("hex"));
    await assert.rejects(res.readBody(() => undefined), /readBody was already called/);
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
});

test("the request: GET with Host (port included), the caller's headers, Connection: close, Basic auth from URL credentials", async () => {
  const srv = await rawServer((s) => s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  try {
    const url = srv.url("/dl/a%20b.tar.gz?X-Sig=abc");
    url.username = "ops";
    url.password = "p@ss";
    const res = await http1Get(url, { headers: { "User-Agent": "cara/1.2.3", Range: "bytes=5-" }, timeoutMs: 5000 });
    assert.equal((await body(res)).toString(), "ok");
    assert.deepEqual(srv.requests[0]!.split("\r\n"), [
      "GET /dl/a%20b.tar.gz?X-Sig=abc HTTP/1.1",
      `Host: ${url.host}`,
      "User-Agent: cara/1.2.3",
      "Range: bytes=5-",
      "Connection: close",
      `Authorization: Basic ${Buffer.from("ops:p@ss").toString("base64")}`,
    ]);
    await assert.rejects(http1Get(srv.url(), { headers: { "User-Agent": "x\r\nEvil: 1" }, timeoutMs: 1000 }), /invalid request header "User-Agent"/);
    await assert.rejects(http1Get(new URL("ftp://127.0.0.1/x"), OPTS), /unsupported protocol ftp:/);
    assert.equal(srv.requests.length, 1);
  } finally {
    await srv.close();
  }
});

test("chunked body: extensions, a chunk split across reads, trailers; a node:http server without Content-Length", async () => {
  const srv = await rawServer((s) => {
    s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhel");
    setTimeout(() => s.write("lo\r\n"), 20);
    setTimeout(() => s.end("6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"), 40);
  });
  const data = randomBytes(700_000);
  const node = createHttpServer((_req, res) => {
    res.writeHead(200);
    for (let i = 0; i < data.length; i += 50_000) res.write(data.subarray(i, i + 50_000));
    res.end();
  });
  await new Promise<void>((resolve) => node.listen(0, "127.0.0.1", resolve));
  try {
    const res = await http1Get(srv.url(), OPTS);
    assert.equal(res.contentLength, undefined);
    assert.equal((await body(res)).toString(), "hello world");

    const res2 = await http1Get(new URL(`http://127.0.0.1:${(node.address() as AddressInfo).port}/`), { ...OPTS, readBufferBytes: 4096 });
    assert.equal(res2.headers["transfer-encoding"], "chunked");
    assert.ok((await body(res2)).equals(data));
  } finally {
    await srv.close();
    await new Promise<void>((resolve) => node.close(() => resolve()));
  }
});

test("a body ended by the connection's close; 1xx interim responses skipped; 204 and Content-Length: 0 are empty", async () => {
  const srv = await rawServer((s, head) => {
    if (head.startsWith("GET /close")) s.end("HTTP/1.0 200 OK\r\n\r\nuntil the end");
    else if (head.startsWith("GET /hints")) s.end("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    else if (head.startsWith("GET /204")) s.write("HTTP/1.1 204 No Content\r\n\r\n"); // and the connection stays open
    else s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  });
  try {
    assert.equal((await body(await http1Get(srv.url("/close"), OPTS))).toString(), "until the end");
    const hinted = await http1Get(srv.url("/hints"), OPTS);
    assert.equal(hinted.status, 200);
    assert.equal(hinted.headers.link, undefined);
    assert.equal((await body(hinted)).toString(), "abc");
    assert.equal((await body(await http1Get(srv.url("/204"), OPTS))).length, 0);
    assert.equal((await body(await http1Get(srv.url("/zero"), OPTS))).length, 0);
  } finally {
    await srv.close();
  }
});

test("lenient head endings (LF, LF CRLF); header names are not looked up on Object.prototype", async () => {
  const srv = await rawServer((s, head) => {
    if (head.startsWith("GET /lf")) s.end("HTTP/1.1 200 OK\nContent-Length: 2\n\nlf");
    else s.end("HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\nmixed");
  });
  try {
    const lf = await http1Get(srv.url("/lf"), OPTS);
    assert.equal((await body(lf)).toString(), "lf");
    const mixed = await http1Get(srv.url("/mixed"), OPTS);
    assert.equal(mixed.headers.constructor, undefined);
    assert.equal((await body(mixed)).toString(), "mixed");
  } finally {
    await srv.close();
  }
});

test("a body cut short is HttpTruncatedError: Content-Length and chunked", async () => {
  const srv = await rawServer((s, head) => {
    if (head.startsWith("GET /length")) s.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234");
    else s.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n");
  });
  try {
    const seen: string[] = [];
    const res = await http1Get(srv.url("/length"), OPTS);
    await assert.rejects(
      res.readBody((c) => seen.push(c.toString())),
      (err: unknown) => err instanceof HttpTruncatedError && err.message === "the connection closed after 4 of 10 body bytes",
    );
    assert.deepEqual(seen, ["1234"]);
    await assert.rejects(
      body(await http1Get(srv.url("/chunked"), OPTS)),
      (err: unknown) => err instanceof HttpTruncatedError && err.message === "the connection closed after 4 body bytes, before the last chunk",
    );
  } finally {
    await srv.close();
  }
});

test("protocol errors are HttpProtocolError, before or while reading the body", async () => {
  const answers: Record<string, string> = {
    "/status": "HTTP/2 200 OK\r\n\r\n",
    "/garbage": "hello there\r\n\r\n",
    "/fold": "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n",
    "/name": "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
    "/cl": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "/clbad": "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "/gzip": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "/101": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    "/huge": `HTTP/1.1 200 OK\r\n${"X-Pad: ".concat("a".repeat(1000), "\r\n").repeat(70)}\r\n`,
    "/early": "HTTP/1.1 200 OK\r\n",
    "/none": "",
    "/interim": `${"HTTP/1.1 100 Continue\r\n\r\n".repeat(11)}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`,
    "/interimbig": `${`HTTP/1.1 103 Early Hints\r\nLink: <${"a".repeat(20_000)}>\r\n\r\n`.repeat(4)}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`,
    "/nul": "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
    "/cr": "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
    "/nbsp": "HTTP/1.1 200 OK\r\nContent-Length: 5\xa0\r\n\r\nhello",
  };
  const srv = await rawServer((s, head) => s.end(Buffer.from(answers[head.split(" ")[1]!] ?? "", "latin1")));
  try {
    const cases: [string, string][] = [
      ["/status", 'invalid status line "HTTP/2 200 OK"'],
      ["/garbage", 'invalid status line "hello there"'],
      ["/fold", "folded header lines are not allowed"],
      ["/name", 'invalid header line "Bad Name: 1"'],
      ["/cl", "conflicting Content-Length headers"],
      ["/clbad", 'invalid Content-Length "-1"'],
      ["/gzip", 'unsupported Transfer-Encoding "gzip, chunked"'],
      ["/101", "unexpected 101 Switching Protocols"],
      ["/huge", "response head larger than 65536 bytes"],
      ["/early", "the connection closed in the middle of the response head"],
      ["/none", "the connection closed before a response"],
      ["/interim", "more than 10 interim (1xx) responses"],
      ["/interimbig", "response head larger than 65536 bytes"], // one budget for all heads
      ["/nul", 'invalid value in header "X-A"'],
      ["/cr", 'invalid value in header "X-A"'],
      ["/nbsp", 'invalid Content-Length "5\xa0"'], // only space and tab are trimmed
    ];
    for (const [path, message] of cases) {
      await assert.rejects(http1Get(srv.url(path), OPTS), (err: unknown) => {
        assert.ok(err instanceof HttpProtocolError, `${path}: ${String(err)}`);
        assert.equal(err.message, message, path);
        return true;
      });
    }
  } finally {
    await srv.close();
  }

  const chunked = await rawServer((s) => s.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXYZ\r\n"));
  const badSize = await rawServer((s) => s.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  try {
    await assert.rejects(body(await http1Get(chunked.url(), OPTS)), (err: unknown) => err instanceof HttpProtocolError && err.message === "chunked body: chunk data not followed by CRLF");
    await assert.rejects(body(await http1Get(badSize.url(), OPTS)), (err: unknown) => err instanceof HttpProtocolError && err.message === 'chunked body: invalid chunk size line "zz"');
  } finally {
    await chunked.close();
    await badSize.close();
  }
});

test("timeouts: no answer, and a body that stalls; an abort; a consumer that throws closes the connection", async () => {
  const srv = await rawServer((s, head) => {
    if (head.startsWith("GET /stall")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    else if (head.startsWith("GET /big")) s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n${"x".repeat(1000)}`);
    else if (head.startsWith("GET /chunks")) s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${"1\r\nx\r\n".repeat(50)}`);
    // GET /hang: never answered
  });
  try {
    await assert.rejects(http1Get(srv.url("/hang"), { ...OPTS, timeoutMs: 150 }), (err: unknown) => err instanceof HttpTimeoutError && err.message === "no data for 150 ms");
    const stalled = await http1Get(srv.url("/stall"), { ...OPTS, timeoutMs: 150 });
    const seen: number[] = [];
    await assert.rejects(
      stalled.readBody((c) => seen.push(c.length)),
      (err: unknown) => err instanceof HttpTimeoutError,
    );
    assert.deepEqual(seen, [10]);

    const controller = new AbortController();
    const pending = http1Get(srv.url("/hang"), { ...OPTS, signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop now")), 50);
    await assert.rejects(pending, /stop now/);
    await assert.rejects(http1Get(srv.url("/hang"), { ...OPTS, signal: AbortSignal.abort(new Error("already")) }), /already/);
    const count = srv.requests.length;

    const big = await http1Get(srv.url("/big"), OPTS);
    const closed = srv.closed();
    await assert.rejects(
      big.readBody(() => {
        throw new Error("disk full");
      }),
      /disk full/,
    );
    await closed; // the server saw the connection go
    assert.equal(srv.requests.length, count + 1);

    // Destroyed from inside the consumer: no further bytes are handed over, even from the same read.
    const stopped = await http1Get(srv.url("/chunks"), { ...OPTS, readBufferBytes: 64 * 1024 });
    let calls = 0;
    await assert.rejects(
      stopped.readBody(() => {
        calls++;
        stopped.destroy();
      }),
      /the response was discarded/,
    );
    assert.equal(calls, 1);

    const discarded = await http1Get(srv.url("/big"), OPTS);
    discarded.destroy();
    await assert.rejects(discarded.readBody(() => undefined), /the response was discarded/);
  } finally {
    await srv.close();
  }
});

test("IPv6 literal hosts connect without brackets and send them in Host", async () => {
  const srv = await rawServer((s) => s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6"), "::1");
  try {
    const url = srv.url();
    assert.equal((await body(await http1Get(url, OPTS))).toString(), "v6");
    assert.match(srv.requests[0]!, new RegExp(`\\r\\nHost: \\[::1\\]:${url.port}\\r\\n`));
  } finally {
    await srv.close();
  }
});

test("https: the certificate is verified (an unknown CA is refused), SNI and ALPN http/1.1 are sent, the body arrives intact", async () => {
  const { cert, key } = await selfSignedCert();
  const ca = await readFile(cert);
  const data = randomBytes(2 * 1024 * 1024 + 5);
  const seen: { servername: string | false | null; alpn: string | false | null }[] = [];
  const server = createTlsServer({ cert: ca, key: await readFile(key), ALPNProtocols: ["http/1.1"] }, (socket) => {
    seen.push({ servername: socket.servername, alpn: socket.alpnProtocol });
    socket.once("data", () => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`);
      socket.end(data);
    });
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    await assert.rejects(http1Get(new URL(`https://localhost:${port}/a`), OPTS), (err: NodeJS.ErrnoException) => err.code === "DEPTH_ZERO_SELF_SIGNED_CERT");
    const res = await http1Get(new URL(`https://localhost:${port}/a`), { ...OPTS, ca, readBufferBytes: 64 * 1024 });
    assert.ok((await body(res)).equals(data));
    const byIp = await http1Get(new URL(`https://127.0.0.1:${port}/a`), { ...OPTS, ca });
    assert.ok((await body(byIp)).equals(data));
    assert.deepEqual(seen.slice(-2), [
      { servername: "localhost", alpn: "http/1.1" },
      { servername: false, alpn: "http/1.1" }, // no SNI for an IP address
    ]);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
