// Our own Node request/response conversion (src/server/node-request.ts, node-response.ts): a
// client that leaves ends the server's stream (HTTP/1.1 close, HTTP/2 RST_STREAM), a unary answer
// is written whole with its content-length, writes to a client that left do not crash the
// server, and a large stream to a slow reader arrives complete. In-process: rpcAdapter + listen.
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { after, test } from "node:test";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { listen, type Listener } from "../../src/server/listener.js";
import { rpcAdapter } from "../../src/server/rpc-adapter.js";

interface Follow {
  /** Resolves with the handler's signal reason once the signal fires. */
  aborted: Promise<unknown>;
  /** Resolves once the handler's generator is done (returned, thrown into, or failed). */
  ended: Promise<void>;
}

const follows: Follow[] = [];
let nextFollow: ((f: Follow) => void) | undefined;
const handlerErrors: unknown[] = [];
/** Messages per FollowLogs stream and the size of each one's text. */
let streamShape = { count: Infinity, bytes: 10, everyMs: 5 };
/** How long GetStatus takes to answer. */
let slowUnaryMs = 0;

const listeners: Listener[] = [];
after(async () => {
  for (const l of listeners) await l.drain(200);
});

async function serve(): Promise<Listener> {
  const handler = rpcAdapter({
    routes(router) {
      router.service(OpsService, {
        async getStatus() {
          if (slowUnaryMs > 0) await new Promise((r) => setTimeout(r, slowUnaryMs));
          return { version: "1.2.3" };
        },
        async *followLogs(_req, ctx: HandlerContext) {
          let onAborted!: (r: unknown) => void;
          let onEnded!: () => void;
          const f: Follow = { aborted: new Promise((r) => (onAborted = r)), ended: new Promise((r) => (onEnded = r)) };
          ctx.signal.addEventListener("abort", () => onAborted(ctx.signal.reason));
          follows.push(f);
          nextFollow?.(f);
          try {
            // Deliberately deaf to the signal: only a failed write can stop this one.
            for (let i = 0; i < streamShape.count; i++) {
              yield { event: { case: "entry", value: { seq: BigInt(i + 1), message: "x".repeat(streamShape.bytes) } } };
              if (streamShape.everyMs > 0) await new Promise((r) => setTimeout(r, streamShape.everyMs));
            }
          } finally {
            onEnded();
          }
        },
      });
    },
    fallback: (_req, res) => {
      res.writeHead(404);
      res.end();
    },
    onHandlerError: (_m, reason) => handlerErrors.push(reason),
  });
  const l = await listen(handler, { bind: "127.0.0.1", port: 0 });
  listeners.push(l);
  return l;
}

const followStarted = () => new Promise<Follow>((resolve) => (nextFollow = resolve));
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);
/** A Connect end-of-stream-less envelope stream request for FollowLogs: one empty message. */
const FOLLOW_BODY = Buffer.from([0, 0, 0, 0, 0]);

test("a unary answer is written whole: status, content-length and the body in one response", async () => {
  const l = await serve();
  const socket = net.connect(l.port, "127.0.0.1");
  await once(socket, "connect");
  socket.write("POST /carapace.ops.v1.OpsService/GetStatus HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  let text = "";
  socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
  await until(() => /\r\n\r\n[\s\S]*\}$/.test(text));
  socket.destroy();
  const [head, body] = text.split("\r\n\r\n");
  assert.match(head!, /^HTTP\/1\.1 200 /);
  assert.equal(Number(/content-length: (\d+)/i.exec(head!)?.[1]), Buffer.byteLength(body!, "latin1"));
  assert.doesNotMatch(head!, /transfer-encoding/i);
  assert.deepEqual(JSON.parse(body!), { version: "1.2.3" });
});

test("HTTP/1.1: a client that disconnects mid FollowLogs ends the stream on the server", async () => {
  const l = await serve();
  streamShape = { count: Infinity, bytes: 10, everyMs: 5 };
  const started = followStarted();
  const req = http.request({
    host: "127.0.0.1",
    port: l.port,
    method: "POST",
    path: "/carapace.ops.v1.OpsService/FollowLogs",
    headers: { "content-type": "application/connect+proto" },
  });
  req.on("error", () => undefined);
  req.end(FOLLOW_BODY);
  const [res] = (await once(req, "response")) as [http.IncomingMessage];
  assert.equal(res.statusCode, 200);
  await once(res, "data");
  const f = await started;
  req.destroy();
  await within(f.aborted, 5_000, "the handler's signal");
  await within(f.ended, 5_000, "the handler's generator");
  await until(() => l.inFlight === 0);
  assert.deepEqual(
    handlerErrors.filter((e) => ConnectError.from(e).code !== Code.Aborted),
    [],
  );
});

test("HTTP/2: an RST_STREAM CANCEL ends the stream on the server, as CANCELED", async () => {
  const l = await serve();
  streamShape = { count: Infinity, bytes: 10, everyMs: 5 };
  const started = followStarted();
  const session = http2.connect(`http://127.0.0.1:${l.port}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/carapace.ops.v1.OpsService/FollowLogs",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.end(FOLLOW_BODY);
    await once(stream, "data");
    const f = await started;
    stream.close(http2.constants.NGHTTP2_CANCEL);
    const reason = await within(f.aborted, 5_000, "the handler's signal");
    assert.equal(ConnectError.from(reason).code, Code.Canceled);
    await within(f.ended, 5_000, "the handler's generator");
    await until(() => l.inFlight === 0);
  } finally {
    session.destroy();
  }
});

test("writes to a client that left fail into the handler's stream, not the process", async () => {
  const l = await serve();
  // No pause between messages: the server is mid-write when the socket goes.
  streamShape = { count: Infinity, bytes: 4_000, everyMs: 0 };
  for (let round = 0; round < 5; round++) {
    const started = followStarted();
    const socket = net.connect(l.port, "127.0.0.1");
    socket.on("error", () => undefined);
    await once(socket, "connect");
    socket.write("POST /carapace.ops.v1.OpsService/FollowLogs HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+proto\r\nContent-Length: 5\r\n\r\n");
    socket.write(FOLLOW_BODY);
    const f = await started;
    await once(socket, "data");
    socket.resetAndDestroy();
    await within(f.ended, 5_000, "the handler's generator");
  }
  await until(() => l.inFlight === 0);
  assert.deepEqual(
    handlerErrors.filter((e) => ConnectError.from(e).code !== Code.Aborted),
    [],
  );
  // Still serving.
  const client = createClient(OpsService, createConnectTransport({ baseUrl: `http://127.0.0.1:${l.port}`, httpVersion: "1.1" }));
  assert.equal((await client.getStatus({})).version, "1.2.3");
});

test("a large stream to a slow reader arrives complete (the writer waits for 'drain')", async () => {
  const l = await serve();
  streamShape = { count: 200, bytes: 64 * 1024, everyMs: 0 };
  const client = createClient(OpsService, createConnectTransport({ baseUrl: `http://127.0.0.1:${l.port}`, httpVersion: "2" }));
  let n = 0;
  for await (const m of client.followLogs({})) {
    assert.equal(m.event.case === "entry" && m.event.value.message.length, 64 * 1024);
    n++;
    if (n % 20 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  // 200 × 64 KiB: far more than the socket and stream buffers hold.
  assert.equal(n, 200);
});

test("a unary answer to a client that left (HTTP/1.1 close, HTTP/2 RST_STREAM) is dropped quietly", async () => {
  const l = await serve();
  slowUnaryMs = 200;
  try {
    const before = handlerErrors.length;
    const socket = net.connect(l.port, "127.0.0.1");
    socket.on("error", () => undefined);
    await once(socket, "connect");
    socket.write("POST /carapace.ops.v1.OpsService/GetStatus HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    const session = http2.connect(`http://127.0.0.1:${l.port}`);
    const stream = session.request({ ":method": "POST", ":path": "/carapace.ops.v1.OpsService/GetStatus", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => undefined);
    stream.end(FOLLOW_BODY);
    await new Promise((r) => setTimeout(r, 50));
    socket.destroy();
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => setTimeout(r, 400));
    await until(() => l.inFlight === 0);
    session.destroy();
    assert.deepEqual(handlerErrors.slice(before), []);
    const client = createClient(OpsService, createConnectTransport({ baseUrl: `http://127.0.0.1:${l.port}`, httpVersion: "2" }));
    slowUnaryMs = 0;
    assert.equal((await client.getStatus({})).version, "1.2.3");
  } finally {
    slowUnaryMs = 0;
  }
});

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One raw request on a fresh connection; resolves with everything the server sent until it closed. */
async function rawExchange(port: number, request: string): Promise<string> {
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  let text = "";
  socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
  socket.write(request);
  await within(once(socket, "close"), 5000, "the server closing the exchange");
  return text;
}

test("a request without a usable Host is answered invalid_argument (400), and the server keeps serving", async () => {
  const l = await serve();
  const cases = [
    // HTTP/1.0 needs no Host, so Node's parser lets it through: there is no authority to build the URL from.
    "POST /carapace.ops.v1.OpsService/GetStatus HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "POST /carapace.ops.v1.OpsService/GetStatus HTTP/1.1\r\nHost: a b\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
  ];
  for (const request of cases) {
    const text = await rawExchange(l.port, request);
    const [head, body] = text.split("\r\n\r\n");
    assert.match(head!, /^HTTP\/1\.[01] 400 /, text);
    const answer = JSON.parse(body!.startsWith("{") ? body! : body!.split("\r\n")[1]!) as { code: string; message: string };
    assert.equal(answer.code, "invalid_argument");
    assert.match(answer.message, /^the request's Host header is missing or is not host\[:port\]/);
  }
  const client = createClient(OpsService, createConnectTransport({ baseUrl: `http://127.0.0.1:${l.port}`, httpVersion: "1.1" }));
  assert.equal((await client.getStatus({})).version, "1.2.3");
});
