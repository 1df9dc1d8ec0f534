/**
 * A minimal HTTP/1.1 GET for large bodies: one request per connection, the socket read into one
 * reused buffer (the `onread` option of net/tls), the body handed to a synchronous consumer as
 * views into that buffer. No allocation per read, no stream machinery, no copy in JavaScript.
 *
 * Why not node:http or undici: on the 2-vCPU machines this runs on, receiving a 128 MiB artifact
 * over loopback with node:http costs about twice the CPU of this reader (a 64 KiB buffer allocated
 * per read, then the parser, IncomingMessage and Readable on every chunk), and undici's `request`
 * and `dispatch` are slower still (bench/README.md, "self-update"). That difference decides whether
 * the updater keeps up with curl.
 *
 * Scope, on purpose small:
 * - GET only, `Connection: close` (no keep-alive, no pipelining); the caller follows redirects.
 * - Response head (status line and headers) up to 64 KiB; interim 1xx responses are skipped.
 * - Body framed by `Transfer-Encoding: chunked`, `Content-Length`, or the end of the connection;
 *   any other transfer coding is refused (the caller asks for `Accept-Encoding: identity`).
 * - https with Node's default certificate verification (system store plus NODE_EXTRA_CA_CERTS),
 *   SNI and ALPN `http/1.1`; credentials in the URL become Basic authorization, as with node:http.
 * - No proxy support (node:http has none either).
 */
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type SecureContextOptions } from "node:tls";

/** The server broke the HTTP/1.1 rules (bad status line, header, framing, or chunk). */
export class HttpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HttpProtocolError";
  }
}

/** The connection ended before the body's announced end (Content-Length or the last chunk). */
export class HttpTruncatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HttpTruncatedError";
  }
}

/** Nothing arrived for `ms` (connecting, waiting for the head, or between two reads). */
export class HttpTimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`no data for ${ms} ms`);
    this.name = "HttpTimeoutError";
  }
}

export interface Http1GetOptions {
  /** Request headers; Host, Connection and (with URL credentials) Authorization are added. */
  headers: Record<string, string>;
  /** Longest wait for the connection, the response head, or between two reads. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Extra trust for https (tests: a local CA); the default store is used otherwise. */
  ca?: SecureContextOptions["ca"];
  /** Size of the one read buffer; default 1 MiB. */
  readBufferBytes?: number;
}

export interface Http1Response {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Readonly<Record<string, string>>;
  /** The body's length when the server framed it with Content-Length. */
  contentLength: number | undefined;
  /**
   * Reads the body to its end, calling `onChunk` synchronously with views into the read buffer
   * that are valid only during the call (copy what must outlive it). Resolves once the body is
   * complete; rejects on a transport error, timeout, abort, framing error or early end, or with
   * whatever `onChunk` threw. Call at most once.
   */
  readBody(onChunk: (chunk: Buffer) => void): Promise<void>;
  /** Closes the connection without reading (the rest of) the body. */
  destroy(err?: Error): void;
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_INTERIM = 10;
const STOP = Symbol("stop reading");
const MAX_CHUNK_LINE = 4096;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, obs-text, space and tab; no CR, LF or NUL.
const BAD_FIELD_VALUE = /[\0\r\n]/;

interface BodyDecoder {
  /** Consumes `buf`, emitting body bytes; returns true once the body is complete. */
  feed(buf: Buffer, emit: (chunk: Buffer) => void): boolean;
  /** The connection ended: true if that completes the body, else a description of what is missing. */
  end(): true | string;
}

class LengthDecoder implements BodyDecoder {
  private received = 0;
  constructor(private readonly length: number) {}
  feed(buf: Buffer, emit: (chunk: Buffer) => void): boolean {
    const n = Math.min(buf.length, this.length - this.received);
    if (n > 0) {
      this.received += n;
      emit(n === buf.length ? buf : buf.subarray(0, n));
    }
    return this.received === this.length;
  }
  end(): true | string {
    return this.received === this.length ? true : `after ${this.received} of ${this.length} body bytes`;
  }
}

class CloseDelimitedDecoder implements BodyDecoder {
  feed(buf: Buffer, emit: (chunk: Buffer) => void): boolean {
    if (buf.length > 0) emit(buf);
    return false;
  }
  end(): true {
    return true;
  }
}

/** RFC 9112 §7.1: size line (hex, optional extensions), data, CRLF, ..., `0`, trailer fields, empty line. */
class ChunkedDecoder implements BodyDecoder {
  private state: "size" | "data" | "data-end" | "trailer" | "done" = "size";
  private line = "";
  private remaining = 0;
  private received = 0;

  feed(buf: Buffer, emit: (chunk: Buffer) => void): boolean {
    let i = 0;
    while (i < buf.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.remaining, buf.length - i);
        emit(buf.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        this.received += n;
        if (this.remaining === 0) this.state = "data-end";
        continue;
      }
      // A line: the chunk size, the CRLF after a chunk's data, or a trailer field.
      const lf = buf.indexOf(0x0a, i);
      const stop = lf === -1 ? buf.length : lf;
      this.line += buf.toString("latin1", i, stop);
      if (this.line.length > MAX_CHUNK_LINE) throw new HttpProtocolError(`chunked body: a line longer than ${MAX_CHUNK_LINE} bytes`);
      i = stop;
      if (lf === -1) break;
      i++;
      const line = this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line;
      this.line = "";
      this.onLine(line);
    }
    return this.state === "done";
  }

  private onLine(line: string): void {
    switch (this.state) {
      case "size": {
        const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (!m) throw new HttpProtocolError(`chunked body: invalid chunk size line ${JSON.stringify(line.slice(0, 40))}`);
        this.remaining = Number.parseInt(m[1]!, 16);
        this.state = this.remaining === 0 ? "trailer" : "data";
        return;
      }
      case "data-end":
        if (line !== "") throw new HttpProtocolError("chunked body: chunk data not followed by CRLF");
        this.state = "size";
        return;
      case "trailer":
        if (line === "") this.state = "done";
        return;
      default:
        return;
    }
  }

  end(): true | string {
    return this.state === "done" ? true : `after ${this.received} body bytes, before the last chunk`;
  }
}

/** Where the head ends: after the first empty line (CRLF CRLF, or a bare LF for either line end). */
function headEnd(buf: Buffer): number {
  const crlf = buf.indexOf("\n\r\n");
  const lf = buf.indexOf("\n\n");
  if (crlf === -1) return lf === -1 ? -1 : lf + 2;
  return lf === -1 || crlf < lf ? crlf + 3 : lf + 2;
}

interface ParsedHead {
  status: number;
  headers: Record<string, string>;
}

function parseHead(text: string): ParsedHead {
  const lines = text.split(/\r?\n/);
  const statusLine = lines.shift() ?? "";
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!m) throw new HttpProtocolError(`invalid status line ${JSON.stringify(statusLine.slice(0, 60))}`);
  // No prototype: a header named "constructor" is just a header.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const line of lines) {
    if (line === "") continue;
    if (line[0] === " " || line[0] === "\t") throw new HttpProtocolError("folded header lines are not allowed");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new HttpProtocolError(`invalid header line ${JSON.stringify(line.slice(0, 60))}`);
    const key = name.toLowerCase();
    // Optional whitespace is space and tab only (String.trim would also take e.g. U+00A0).
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (/[\0\r]/.test(value)) throw new HttpProtocolError(`invalid value in header ${JSON.stringify(name)}`);
    const previous = headers[key];
    if (previous === undefined) headers[key] = value;
    else if (key === "content-length") {
      if (previous !== value) throw new HttpProtocolError("conflicting Content-Length headers");
    } else headers[key] = `${previous}, ${value}`;
  }
  return { status: Number(m[1]), headers };
}

function decoderFor(status: number, headers: Record<string, string>): { decoder: BodyDecoder; contentLength: number | undefined } {
  if (status === 204 || status === 304) return { decoder: new LengthDecoder(0), contentLength: 0 };
  const te = headers["transfer-encoding"];
  if (te !== undefined) {
    const codings = te.split(",").map((c) => c.trim().toLowerCase());
    if (codings.length !== 1 || codings[0] !== "chunked") throw new HttpProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    return { decoder: new ChunkedDecoder(), contentLength: undefined };
  }
  const cl = headers["content-length"];
  if (cl !== undefined) {
    if (!/^\d{1,15}$/.test(cl)) throw new HttpProtocolError(`invalid Content-Length ${JSON.stringify(cl.slice(0, 40))}`);
    return { decoder: new LengthDecoder(Number(cl)), contentLength: Number(cl) };
  }
  return { decoder: new CloseDelimitedDecoder(), contentLength: undefined };
}

function requestHead(url: URL, headers: Record<string, string>): string {
  const all: Record<string, string> = { Host: url.host, ...headers, Connection: "close" };
  if (url.username || url.password) {
    all.Authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`;
  }
  let head = `GET ${url.pathname || "/"}${url.search} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(all)) {
    if (!TOKEN.test(name) || BAD_FIELD_VALUE.test(value)) throw new TypeError(`invalid request header ${JSON.stringify(name)}`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

/** Sends one GET and resolves once the response head has arrived (see the module comment). */
export function http1Get(url: URL, opts: Http1GetOptions): Promise<Http1Response> {
  if (url.protocol !== "http:" && url.protocol !== "https:") return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
  let head: string;
  try {
    head = requestHead(url, opts.headers);
  } catch (err) {
    return Promise.reject(err);
  }
  if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);

  return new Promise<Http1Response>((resolveHead, rejectHead) => {
    const readBuffer = Buffer.allocUnsafe(opts.readBufferBytes ?? 1024 * 1024);
    let phase: "head" | "waiting" | "body" | "done" = "head";
    let headBytes: Buffer = Buffer.alloc(0);
    /** Bytes of interim (1xx) heads already consumed, and how many there were. */
    let headSeen = 0;
    let interim = 0;
    /** Body bytes that arrived with the head, before readBody was called. */
    let early: Buffer[] = [];
    let decoder: BodyDecoder;
    let consumer: ((chunk: Buffer) => void) | undefined;
    let settleBody: { resolve: () => void; reject: (err: unknown) => void } | undefined;
    let failure: unknown;

    const fail = (err: unknown) => {
      if (phase === "done") return;
      failure ??= err;
      const wasHead = phase === "head";
      phase = "done";
      socket.destroy();
      opts.signal?.removeEventListener("abort", onAbort);
      if (wasHead) rejectHead(failure);
      else settleBody?.reject(failure);
    };
    const complete = () => {
      if (phase === "done") return;
      phase = "done";
      socket.destroy();
      opts.signal?.removeEventListener("abort", onAbort);
      settleBody?.resolve();
    };
    /** The consumer, until the response is destroyed or aborted from inside it: then no more bytes. */
    const emit = (chunk: Buffer) => {
      if (phase !== "body") throw STOP;
      consumer!(chunk);
    };
    /** Feeds body bytes to the decoder; false once the body is complete or failed. */
    const feedBody = (buf: Buffer): boolean => {
      try {
        if (decoder.feed(buf, emit)) {
          complete();
          return false;
        }
        return true;
      } catch (err) {
        if (err !== STOP) fail(err);
        return false;
      }
    };
    const onHeadBytes = (buf: Buffer): boolean => {
      headBytes = headBytes.length === 0 ? Buffer.from(buf) : Buffer.concat([headBytes, buf]);
      for (;;) {
        const end = headEnd(headBytes);
        // One budget for all heads of this response, interim ones included.
        if ((end === -1 ? headBytes.length : end) + headSeen > MAX_HEAD_BYTES) {
          fail(new HttpProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`));
          return false;
        }
        if (end === -1) return true;
        let parsed: ParsedHead;
        let framing: ReturnType<typeof decoderFor>;
        try {
          parsed = parseHead(headBytes.toString("latin1", 0, end));
          const rest = headBytes.subarray(end);
          if (parsed.status === 101) throw new HttpProtocolError("unexpected 101 Switching Protocols");
          if (parsed.status >= 100 && parsed.status < 200) {
            // Interim (100 Continue, 103 Early Hints): the real response follows.
            if (++interim > MAX_INTERIM) throw new HttpProtocolError(`more than ${MAX_INTERIM} interim (1xx) responses`);
            headSeen += end;
            headBytes = rest;
            continue;
          }
          framing = decoderFor(parsed.status, parsed.headers);
          if (rest.length > 0) early.push(Buffer.from(rest));
        } catch (err) {
          fail(err);
          return false;
        }
        headBytes = Buffer.alloc(0);
        decoder = framing.decoder;
        phase = "waiting";
        resolveHead(response(parsed, framing.contentLength));
        // Hold the socket until the caller asks for the body.
        return false;
      }
    };
    const onRead = (n: number): boolean => {
      const buf = readBuffer.subarray(0, n);
      switch (phase) {
        case "head":
          return onHeadBytes(buf);
        case "waiting":
          early.push(Buffer.from(buf));
          return false;
        case "body":
          return feedBody(buf);
        default:
          return false;
      }
    };

    const response = (parsed: ParsedHead, contentLength: number | undefined): Http1Response => ({
      status: parsed.status,
      headers: parsed.headers,
      contentLength,
      readBody(onChunk) {
        if (consumer !== undefined) return Promise.reject(new Error("readBody was already called"));
        consumer = onChunk;
        return new Promise<void>((resolve, reject) => {
          settleBody = { resolve, reject };
          if (phase === "done") return reject(failure ?? new Error("the connection was closed"));
          phase = "body";
          const held = early;
          early = [];
          // An empty feed completes a zero-length body at once.
          if (!feedBody(Buffer.alloc(0))) return;
          for (const buf of held) if (!feedBody(buf)) return;
          if (ended) return onEnd();
          socket.resume();
        });
      },
      destroy(err) {
        if (phase !== "done") fail(err ?? new Error("the response was discarded"));
      },
    });

    let ended = false;
    const onEnd = () => {
      ended = true;
      if (phase === "head") return fail(new HttpProtocolError(headBytes.length > 0 ? "the connection closed in the middle of the response head" : "the connection closed before a response"));
      if (phase !== "body") return; // waiting: handled when the body is read
      const result = decoder.end();
      if (result === true) complete();
      else fail(new HttpTruncatedError(`the connection closed ${result}`));
    };
    const onAbort = () => fail(opts.signal!.reason);

    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const onread = { buffer: readBuffer, callback: onRead };
    let socket: Socket;
    if (url.protocol === "https:") {
      socket = tlsConnect({
        host,
        port: Number(url.port || 443),
        ...(isIP(host) === 0 ? { servername: host } : {}),
        ALPNProtocols: ["http/1.1"],
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        onread,
        // tls.connect accepts net's onread too; @types/node leaves it out of ConnectionOptions.
      } as ConnectionOptions);
    } else {
      socket = netConnect({ host, port: Number(url.port || 80), onread });
    }
    socket.setNoDelay(true);
    socket.setTimeout(opts.timeoutMs, () => fail(new HttpTimeoutError(opts.timeoutMs)));
    socket.on("error", fail);
    socket.on("end", onEnd);
    socket.on("close", () => {
      // After a clean end while the body is held, readBody finishes from what arrived.
      if (phase === "waiting" && ended) return;
      fail(new Error("the connection was closed"));
    });
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    socket.write(head);
  });
}
