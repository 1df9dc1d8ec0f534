/**
 * Writes connect's universal response to a Node response, as connect-node's
 * `universalResponseToNodeResponse` does, at less cost per call (issue 17, bench/README.md):
 * - an answer that is one piece (a unary call, any refusal) is gathered first and written with
 *   its headers in one go (`writeHead` + `end(body)`: one write on the socket), rather than
 *   write, wait, end;
 * - a stream is written chunk by chunk as it comes, waiting for 'drain' when the socket is full;
 *   a write that fails (the client left) is thrown into the handler's iterator so the handler
 *   stops, and reported as `aborted`, as connect-node does.
 * Tests: test/server/node-adapter.test.ts.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { connectErrorFromNodeReason } from "./node-error.js";

type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;
type NodeHeaders = Record<string, string | string[]>;

/** `whole`: the answer is one piece (unary, or not a 200): gather it, then write it at once. */
export async function writeUniversalResponse(uRes: UniversalServerResponse, res: NodeResponse, whole: boolean): Promise<void> {
  const it = (uRes.body as AsyncIterable<Uint8Array> | undefined)?.[Symbol.asyncIterator]();
  let finished = it === undefined;
  let writing = false;
  try {
    if (whole) {
      const chunks: Uint8Array[] = [];
      if (it) for (let r = await it.next(); r.done !== true; r = await it.next()) chunks.push(r.value);
      finished = true;
      // The client left while the answer was computed: nothing to write, nobody to tell.
      if (res.destroyed) return;
      writing = true;
      res.writeHead(uRes.status, nodeHeaders(uRes.header));
      if (uRes.trailer) res.addTrailers(nodeHeaders(uRes.trailer));
      if (chunks.length === 0) res.end();
      else res.end(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      return;
    }
    let r = it ? await it.next() : { done: true as const, value: undefined };
    // Headers go after the first chunk, not before: the handler may still set response headers.
    writing = true;
    res.writeHead(uRes.status, nodeHeaders(uRes.header));
    writing = false;
    for (; r.done !== true; r = await it!.next()) {
      writing = true;
      await write(res, r.value);
      writing = false;
    }
    finished = true;
    if (uRes.trailer) res.addTrailers(nodeHeaders(uRes.trailer));
    res.end();
  } catch (e) {
    // A failed write: tell the handler (its stream stops), as connect-node does.
    if (writing && !finished) it?.throw?.(e).catch(() => undefined);
    finished = true;
    throw connectErrorFromNodeReason(e);
  } finally {
    if (!finished) it?.return?.().catch(() => undefined);
  }
}

/**
 * Resolves once the chunk is handed over and the socket can take more ('drain'). A write the
 * stream refuses fails through its callback (HTTP/2: a reset stream's response neither throws
 * nor emits anything else; test: RST_STREAM in test/server/node-adapter.test.ts).
 */
function write(res: NodeResponse, chunk: Uint8Array): Promise<void> | undefined {
  if (res.destroyed || res.writableEnded) return Promise.reject(res.errored ?? destroyed());
  let fail: ((err: Error) => void) | undefined;
  const flushed = (res as http.ServerResponse).write(chunk, (err) => {
    if (err) fail?.(err);
  });
  if (flushed) return undefined;
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error | null) => {
      fail = undefined;
      res.off("drain", onDrain);
      res.off("close", onClose);
      res.off("error", done);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(res.errored ?? destroyed());
    fail = done;
    res.once("drain", onDrain);
    res.once("close", onClose);
    res.once("error", done);
  });
}

function destroyed(): Error {
  return Object.assign(new Error("Cannot call write after a stream was destroyed"), { code: "ERR_STREAM_DESTROYED" });
}

/** Fetch headers (or a HeadersInit) as a Node header object; repeated names become arrays. */
function nodeHeaders(init: UniversalServerResponse["header"]): NodeHeaders {
  const o: NodeHeaders = Object.create(null) as NodeHeaders;
  const add = (value: string, key: string) => {
    const k = key.toLowerCase();
    const have = o[k];
    if (have === undefined) o[k] = value;
    else if (Array.isArray(have)) have.push(value);
    else o[k] = [have, value];
  };
  if (init === undefined) return o;
  if (Array.isArray(init)) for (const [k, v] of init) add(v!, k!);
  else if (typeof (init as Headers).forEach === "function") (init as Headers).forEach(add);
  else for (const [k, v] of Object.entries(init as unknown as Record<string, string>)) add(v, k);
  return o;
}
