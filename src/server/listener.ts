import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { once } from "node:events";
import { readFileSync } from "node:fs";

export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface Listener {
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
  /** Requests (streams included) that have not finished yet. */
  readonly inFlight: number;
  /**
   * Stops accepting connections, asks HTTP/2 clients to go away (GOAWAY) and closes idle
   * HTTP/1.1 connections, then waits for in-flight requests to finish. After `timeoutMs`,
   * whatever is left is cut. Resolves true when everything finished in time.
   */
  drain(timeoutMs: number): Promise<boolean>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * What one connection may cost before it is cut. Every connection is bounded, so idle, slow or
 * half-open sockets cannot exhaust file descriptors or memory: an unauthenticated client gets
 * a few seconds to say something useful.
 */
export interface ConnectionLimits {
  /** Plaintext: until the first bytes arrive (HTTP/1.1 or the HTTP/2 preface). TLS: the handshake. */
  firstByteMs: number;
  /** HTTP/1.1: until a request's headers are complete (slowloris). */
  headersMs: number;
  /** HTTP/1.1 keep-alive between requests, and an HTTP/2 connection with no open stream. */
  idleMs: number;
  /**
   * A request body that stalls: HTTP/1.1, the whole request must arrive within this time;
   * HTTP/2, a stream whose request is not complete is reset after this long without a byte.
   * (A client that vanished mid-request holds nothing for longer.)
   */
  requestMs: number;
  /** Open connections at most; more are closed at once (and logged). */
  maxConnections: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  firstByteMs: 10_000,
  headersMs: 10_000,
  idleMs: 60_000,
  requestMs: 60_000,
  maxConnections: defaultMaxConnections(),
};

/**
 * 4,096, or fewer when the process may open fewer files: the cap must bite before the file
 * descriptor limit does, leaving room for the stores, logs and backups.
 */
export function defaultMaxConnections(limitsFile = "/proc/self/limits"): number {
  try {
    const text = readFileSync(limitsFile, "utf8");
    const soft = /^Max open files\s+(\d+)/m.exec(text)?.[1];
    if (soft !== undefined) return Math.max(16, Math.min(4_096, Number(soft) - 128));
  } catch {
    // not Linux: keep the default
  }
  return 4_096;
}

/** Events worth a log line: connections refused at the cap (counted per burst). */
export type ListenerEvent = { kind: "connections_dropped"; count: number; max: number };

/**
 * Serves `handler` on one port: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) in plaintext,
 * told apart by the HTTP/2 connection preface; or, with TLS, h2 and HTTP/1.1 chosen by ALPN.
 */
export async function listen(
  handler: RequestHandler,
  options: { bind: string; port: number; tls?: { cert: Buffer; key: Buffer }; limits?: Partial<ConnectionLimits>; onEvent?: (event: ListenerEvent) => void },
): Promise<Listener> {
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
  const sockets = new Set<net.Socket>();
  const h1Sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const activeOnSocket = new WeakMap<net.Socket, number>();
  let inFlight = 0;
  let draining = false;
  let onIdle: (() => void) | undefined;

  const tracked: RequestHandler = (req, res) => {
    inFlight++;
    const socket = req.httpVersionMajor === 1 ? (req.socket as net.Socket) : undefined;
    if (socket) activeOnSocket.set(socket, (activeOnSocket.get(socket) ?? 0) + 1);
    if (draining && socket) (res as http.ServerResponse).shouldKeepAlive = false;
    res.once("close", () => {
      inFlight--;
      if (socket) {
        const left = (activeOnSocket.get(socket) ?? 1) - 1;
        activeOnSocket.set(socket, left);
        if (draining && left === 0) socket.destroySoon();
      }
      if (inFlight === 0) onIdle?.();
    });
    handler(req, res);
  };

  const trackSocket = (socket: net.Socket) => {
    // Nagle off, as node:http does for the sockets it accepts itself (these are accepted here):
    // with it on, a streamed message written within 40 ms of the previous one waited for the
    // client's delayed ACK (a WatchTask update, a followed log line, an HTTP/2 frame: +40 ms).
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const trackH1Socket = (socket: net.Socket) => {
    h1Sockets.add(socket);
    socket.once("close", () => h1Sockets.delete(socket));
  };
  const trackSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
    // Idle: no open stream for idleMs. A quiet stream (a log follow) keeps its session.
    let open = 0;
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      stream.once("close", () => open--);
      // Quiet for requestMs: fine once the request is complete (a follow waiting for news),
      // not while its body is still expected (a client that went away mid-upload).
      stream.setTimeout(limits.requestMs, () => {
        if (!stream.endAfterHeaders && !stream.readableEnded) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
    });
    session.setTimeout(limits.idleMs, () => {
      if (open === 0) session.close();
    });
  };
  const httpTimeouts = (server: { headersTimeout: number; requestTimeout: number; keepAliveTimeout?: number }) => {
    server.headersTimeout = limits.headersMs;
    server.keepAliveTimeout = limits.idleMs;
    // The whole request (not the response: streams may last hours). Uploads go over HTTP/2.
    server.requestTimeout = Math.max(limits.headersMs, limits.requestMs);
  };

  let server: net.Server;
  if (options.tls) {
    const secure = http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, handshakeTimeout: limits.firstByteMs }, tracked);
    httpTimeouts(secure as unknown as http.Server);
    // HTTP/1.1 over TLS: timeouts are checked every second (the option is not read here, the
    // property is, when the server starts listening).
    (secure as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = 1_000;
    secure.on("connection", trackSocket);
    secure.on("secureConnection", (socket: import("node:tls").TLSSocket) => {
      if (socket.alpnProtocol !== "h2") trackH1Socket(socket);
    });
    secure.on("session", trackSession);
    server = secure;
  } else {
    // Timeouts are checked every second (Node's default is every 30 s).
    const h1 = http.createServer({ connectionsCheckingInterval: 1_000 }, tracked);
    httpTimeouts(h1);
    // This server never listens itself (it is handed sockets), but Node enforces headersTimeout
    // and requestTimeout only for servers whose connection tracking started, which happens on
    // 'listening'. Start it (test: slowloris in test/server/listener.test.ts).
    h1.emit("listening");
    const h2 = http2.createServer({}, tracked);
    h2.on("session", trackSession);
    const plain = net.createServer((socket) => {
      trackSocket(socket);
      // Until the first bytes tell the protocol, the socket is nobody's: bound it here.
      socket.setTimeout(limits.firstByteMs, () => socket.destroy());
      // Decide by the first bytes: the HTTP/2 preface, or anything else for HTTP/1.1.
      let seen = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, H2_PREFACE.length);
        const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        if (isH2 && seen.length < H2_PREFACE.length) return; // need more bytes to be sure
        socket.off("data", onData);
        socket.setTimeout(0);
        socket.pause();
        socket.unshift(seen);
        if (isH2) {
          // The HTTP/2 session takes the bytes already read from the socket's buffer itself.
          h2.emit("connection", socket);
        } else {
          trackH1Socket(socket);
          h1.emit("connection", socket);
          socket.resume();
        }
      };
      socket.on("data", onData);
      socket.on("error", () => socket.destroy());
    });
    server = plain;
  }

  server.maxConnections = limits.maxConnections;
  // One log line per burst of refused connections, not one per connection.
  let dropped = 0;
  server.on("drop", () => {
    if (dropped++ > 0) return;
    setTimeout(() => {
      options.onEvent?.({ kind: "connections_dropped", count: dropped, max: limits.maxConnections });
      dropped = 0;
    }, 1_000).unref();
  });
  server.listen({ host: options.bind, port: options.port });
  await Promise.race([
    once(server, "listening"),
    once(server, "error").then(([err]) => {
      throw err;
    }),
  ]);
  const addr = server.address() as net.AddressInfo;

  return {
    address: addr.address,
    port: addr.port,
    tls: options.tls !== undefined,
    get inFlight() {
      return inFlight;
    },
    async drain(timeoutMs: number) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      // HTTP/1.1 sockets with nothing in flight are idle keep-alives: close them now; the others
      // close when their response is done.
      for (const socket of h1Sockets) if ((activeOnSocket.get(socket) ?? 0) === 0) socket.destroySoon();
      const deadline = Date.now() + timeoutMs;
      const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (onIdle = resolve));
      const finished = await withDeadline(idle, deadline);
      // Let HTTP/2 sessions flush their last frames (trailers, GOAWAY) and close on their own.
      // (Up to 3 s: a loaded client can take a while to read them and close its side.)
      await withDeadline(Promise.all([...sessions].map((s) => (s.closed ? undefined : once(s, "close")))), Math.min(deadline, Date.now() + 3000));
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      await closed;
      return finished;
    },
  };
}

/** Resolves true when `promise` settles before the deadline (epoch ms), false otherwise. */
async function withDeadline(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
