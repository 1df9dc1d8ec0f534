/**
 * The load generator: a separate process from the server under test. It receives a LoadSpec over
 * IPC, opens `connections` keep-alive connections, runs a closed loop (one request in flight per
 * connection) for warm-up + duration, and answers with throughput, latency percentiles and its
 * own CPU use during the measured window.
 *
 * The default HTTP/1.1 client writes a precomputed request on a raw socket and parses only the
 * status line and framing (content-length or chunked): it costs a few µs per request, so on a
 * small machine it is the server, not the client, that saturates. `h1-nodehttp` uses node:http
 * with a keep-alive Agent instead (several times more CPU per request).
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { percentileSorted } from "../lib/stats.js";
import type { LoadResult, LoadSpec } from "../lib/load.js";

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

class Recorder {
  measuring = false;
  stopping = false;
  lat: number[] = [];
  ok = 0;
  errors = 0;
  statuses: Record<string, number> = {};
  firstError: string | undefined;
  windowStart = 0;

  done(startMs: number, status: string, success: boolean): void {
    if (!this.measuring || startMs < this.windowStart) return;
    if (success) {
      this.ok++;
      this.lat.push(performance.now() - startMs);
    } else {
      this.errors++;
    }
    this.statuses[status] = (this.statuses[status] ?? 0) + 1;
  }

  error(err: unknown): void {
    this.firstError ??= String((err as Error)?.message ?? err);
    if (this.measuring) {
      this.errors++;
      this.statuses.error = (this.statuses.error ?? 0) + 1;
    }
  }
}

function addressFor(index: number): string {
  const z = 1 + (index % 250);
  const y = Math.floor(index / 250) % 250;
  const x = 1 + Math.floor(index / 62_500);
  return `127.${x}.${y}.${z}`;
}

// ---------------------------------------------------------------- raw HTTP/1.1 client

interface Runner {
  start(): void;
  /** Resolves when the request in flight (if any) has finished. */
  idle(): Promise<void>;
  close(): void;
}

function rawRequest(spec: LoadSpec): Buffer {
  const body = Buffer.from(spec.body, "base64");
  const head =
    `${spec.method ?? "POST"} ${spec.path} HTTP/1.1\r\nhost: 127.0.0.1:${spec.port}\r\n` +
    Object.entries(spec.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("") +
    `content-length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), body]);
}

class RawH1 implements Runner {
  private socket!: net.Socket;
  private buf: Buffer | null = null;
  private t0 = 0;
  private inFlight = false;
  private onIdle: (() => void) | undefined;
  private sinceConnect = 0;
  private closed = false;

  constructor(
    private readonly spec: LoadSpec,
    private readonly req: Buffer,
    private readonly rec: Recorder,
    private readonly nextAddress: () => string | undefined,
  ) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const localAddress = this.nextAddress();
      const socket = net.connect({ host: "127.0.0.1", port: this.spec.port, ...(localAddress ? { localAddress } : {}) });
      socket.setNoDelay(true);
      this.socket = socket;
      this.buf = null;
      this.sinceConnect = 0;
      socket.once("connect", () => resolve());
      socket.on("data", (chunk: Buffer) => this.onData(chunk));
      socket.on("error", (err) => {
        this.rec.error(err);
        reject(err);
      });
      socket.on("close", () => {
        if (socket !== this.socket || this.closed) return;
        // The server closed the connection: count the request in flight as failed and reconnect.
        if (this.inFlight) {
          this.inFlight = false;
          this.rec.done(this.t0, "closed", false);
        }
        if (this.rec.stopping) {
          this.onIdle?.();
          return;
        }
        setTimeout(
          () =>
            this.connect().then(
              () => this.send(),
              () => undefined,
            ),
          10,
        );
      });
    });
  }

  start(): void {
    this.send();
  }

  private send(): void {
    if (this.rec.stopping || this.closed) {
      this.onIdle?.();
      return;
    }
    this.inFlight = true;
    this.t0 = performance.now();
    this.socket.write(this.req);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const status = this.parse();
      if (status === undefined) return;
      this.inFlight = false;
      this.rec.done(this.t0, String(status), status === this.spec.expectStatus);
      this.sinceConnect++;
      const rotate = this.spec.rotateAddresses;
      if (rotate && this.sinceConnect >= rotate.perAddress) {
        const old = this.socket;
        this.socket = undefined as unknown as net.Socket; // ignore the old socket's close
        old.destroy();
        if (this.rec.stopping) {
          this.onIdle?.();
          return;
        }
        this.connect().then(
          () => this.send(),
          () => undefined,
        );
        return;
      }
      this.send();
    }
  }

  /** Parses one complete response off the buffer; returns its status, or undefined if incomplete. */
  private parse(): number | undefined {
    const buf = this.buf;
    if (!buf) return undefined;
    const headerEnd = buf.indexOf("\r\n\r\n");
    if (headerEnd < 0) return undefined;
    const status = Number(buf.toString("latin1", 9, 12));
    const head = buf.toString("latin1", 0, headerEnd).toLowerCase();
    let end: number;
    const cl = head.indexOf("\r\ncontent-length:");
    if (cl >= 0) {
      const len = parseInt(head.slice(cl + 17, head.indexOf("\r\n", cl + 2) >>> 0), 10);
      end = headerEnd + 4 + len;
      if (buf.length < end) return undefined;
    } else if (head.includes("\r\ntransfer-encoding: chunked")) {
      let p = headerEnd + 4;
      for (;;) {
        const lineEnd = buf.indexOf("\r\n", p);
        if (lineEnd < 0) return undefined;
        const size = parseInt(buf.toString("latin1", p, lineEnd), 16);
        p = lineEnd + 2;
        if (size === 0) {
          if (buf.length < p + 2) return undefined;
          p += 2;
          break;
        }
        if (buf.length < p + size + 2) return undefined;
        p += size + 2;
      }
      end = p;
    } else {
      end = headerEnd + 4;
    }
    this.buf = buf.length > end ? buf.subarray(end) : null;
    return status;
  }

  idle(): Promise<void> {
    if (!this.inFlight) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
  }
}

// ---------------------------------------------------------------- node:http client

class NodeHttpRunner implements Runner {
  private inFlight = false;
  private onIdle: (() => void) | undefined;
  private readonly body: Buffer;

  constructor(
    private readonly spec: LoadSpec,
    private readonly agent: http.Agent,
    private readonly rec: Recorder,
  ) {
    this.body = Buffer.from(spec.body, "base64");
  }

  start(): void {
    this.send();
  }

  private send(): void {
    if (this.rec.stopping) {
      this.inFlight = false;
      this.onIdle?.();
      return;
    }
    this.inFlight = true;
    const t0 = performance.now();
    const req = http.request(
      {
        agent: this.agent,
        host: "127.0.0.1",
        port: this.spec.port,
        method: this.spec.method ?? "POST",
        path: this.spec.path,
        headers: { ...this.spec.headers, "content-length": String(this.body.length) },
      },
      (res) => {
        res.on("data", () => undefined);
        res.on("end", () => {
          this.rec.done(t0, String(res.statusCode), res.statusCode === this.spec.expectStatus);
          this.send();
        });
      },
    );
    req.on("error", (err) => {
      this.rec.error(err);
      setTimeout(() => this.send(), 10);
    });
    req.end(this.body);
  }

  idle(): Promise<void> {
    if (!this.inFlight) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }

  close(): void {}
}

// ---------------------------------------------------------------- HTTP/2 (h2c) client

class H2Runner implements Runner {
  private session!: http2.ClientHttp2Session;
  private inFlight = false;
  private onIdle: (() => void) | undefined;
  private readonly body: Buffer;
  private readonly headers: http2.OutgoingHttpHeaders;

  constructor(
    private readonly spec: LoadSpec,
    private readonly rec: Recorder,
  ) {
    this.body = Buffer.from(spec.body, "base64");
    this.headers = { ":method": spec.method ?? "POST", ":path": spec.path, ...spec.headers };
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${this.spec.port}`);
      this.session = session;
      session.once("connect", () => resolve());
      session.on("error", (err) => {
        this.rec.error(err);
        reject(err);
      });
    });
  }

  start(): void {
    this.send();
  }

  private send(): void {
    if (this.rec.stopping) {
      this.inFlight = false;
      this.onIdle?.();
      return;
    }
    this.inFlight = true;
    const t0 = performance.now();
    let status = 0;
    let grpcStatus: string | undefined;
    const stream = this.session.request(this.headers);
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
    });
    stream.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) grpcStatus = String(t["grpc-status"]);
    });
    stream.on("data", () => undefined);
    stream.on("error", (err) => this.rec.error(err));
    stream.on("close", () => {
      const success = status === this.spec.expectStatus && (!this.spec.grpc || grpcStatus === "0");
      this.rec.done(t0, this.spec.grpc ? `${status}/grpc-${grpcStatus}` : String(status), success);
      if (this.session.destroyed || this.session.closed) {
        this.inFlight = false;
        this.onIdle?.();
        return;
      }
      this.send();
    });
    stream.end(this.body);
  }

  idle(): Promise<void> {
    if (!this.inFlight) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }

  close(): void {
    this.session?.destroy();
  }
}

// ---------------------------------------------------------------- one repetition

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const rec = new Recorder();
  let addressIndex = spec.rotateAddresses?.start ?? 0;
  const nextAddress = () => (spec.rotateAddresses ? addressFor(addressIndex++) : undefined);
  const runners: Runner[] = [];
  let agent: http.Agent | undefined;
  if (spec.mode === "h1") {
    const targets = (spec.targets ?? [{ port: spec.port, headers: spec.headers }]).map((t) => {
      const one = { ...spec, ...t };
      return { spec: one, req: rawRequest(one) };
    });
    for (let i = 0; i < spec.connections; i++) {
      const target = targets[i % targets.length]!;
      const r = new RawH1(target.spec, target.req, rec, nextAddress);
      await r.connect();
      runners.push(r);
    }
  } else if (spec.mode === "h1-nodehttp") {
    agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections, maxFreeSockets: spec.connections });
    for (let i = 0; i < spec.connections; i++) runners.push(new NodeHttpRunner(spec, agent, rec));
  } else {
    for (let i = 0; i < spec.connections; i++) {
      const r = new H2Runner(spec, rec);
      await r.connect();
      runners.push(r);
    }
  }
  for (const r of runners) r.start();
  await sleep(spec.warmupMs);

  rec.measuring = true;
  rec.windowStart = performance.now();
  const windowStartUs = nowUs();
  const cpu0 = process.cpuUsage();
  await sleep(spec.durationMs);
  const cpu = process.cpuUsage(cpu0);
  const elapsedMs = performance.now() - rec.windowStart;
  const windowEndUs = nowUs();
  // Stop counting, let the requests in flight finish (bounded), then close everything.
  rec.stopping = true;
  const result = {
    ok: rec.ok,
    errors: rec.errors,
    statuses: { ...rec.statuses },
    lat: rec.lat,
  };
  rec.measuring = false;
  await Promise.race([Promise.all(runners.map((r) => r.idle())), sleep(3000)]);
  for (const r of runners) r.close();
  agent?.destroy();

  const lat = Float64Array.from(result.lat).sort();
  let sum = 0;
  for (const v of lat) sum += v;
  const out: LoadResult = {
    requests: result.ok,
    errors: result.errors,
    statuses: result.statuses,
    elapsedMs,
    rps: (result.ok * 1000) / elapsedMs,
    latencyMs: {
      p50: percentileSorted(lat, 50),
      p90: percentileSorted(lat, 90),
      p99: percentileSorted(lat, 99),
      max: lat.length ? lat[lat.length - 1]! : NaN,
      mean: lat.length ? sum / lat.length : NaN,
    },
    cpu: { userMs: cpu.user / 1000, systemMs: cpu.system / 1000, pctOfCore: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100 },
    windowStartUs,
    windowEndUs,
  };
  if (spec.rotateAddresses) out.nextAddress = addressIndex;
  if (rec.firstError !== undefined) out.firstError = rec.firstError;
  return out;
}

process.on("message", (msg: { type: string; id?: number; spec?: LoadSpec }) => {
  if (msg.type === "exit") process.exit(0);
  if (msg.type === "run" && msg.spec) {
    runLoad(msg.spec).then(
      (result) => process.send!({ type: "result", id: msg.id, result }),
      (err: unknown) => process.send!({ type: "result", id: msg.id, error: String((err as Error)?.stack ?? err) }),
    );
  }
});
process.on("disconnect", () => process.exit(0));
process.send!({ type: "ready" });
