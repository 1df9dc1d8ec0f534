/**
 * Node stream errors and HTTP/2 reset codes as ConnectErrors, for our own request/response
 * conversion (node-request.ts, node-response.ts). The reset codes map as gRPC's HTTP/2 protocol
 * specification says (CANCEL is CANCELLED, REFUSED_STREAM is UNAVAILABLE, ENHANCE_YOUR_CALM is
 * RESOURCE_EXHAUSTED, ...), so a client sees the same codes it saw through connect-node's adapter.
 */
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";

// The client went away: a reset, a write to a destroyed stream, or (Node 22+) a write the closed
// socket cancelled (ECANCELED) or that found the peer gone (EPIPE).
const ABORTED = new Set(["ERR_STREAM_WRITE_AFTER_END", "ERR_STREAM_DESTROYED", "ERR_HTTP2_INVALID_STREAM", "ECONNRESET", "ECANCELED", "EPIPE"]);
const UNAVAILABLE = new Set(["ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED"]);

/** A client that hung up (a destroyed stream, a reset) is `aborted`, which the adapter does not log. */
export function connectErrorFromNodeReason(reason: unknown): ConnectError {
  let code = Code.Internal;
  const seen: unknown[] = [];
  for (let e = reason; e instanceof Error && !seen.includes(e); e = (e as { cause?: unknown }).cause) {
    seen.push(e);
    const c = (e as { code?: unknown }).code;
    if (typeof c !== "string") continue;
    if (ABORTED.has(c)) code = Code.Aborted;
    else if (UNAVAILABLE.has(c) && code === Code.Internal) code = Code.Unavailable;
  }
  const ce = ConnectError.from(reason, code);
  if (ce !== reason) ce.cause = reason;
  return ce;
}

const { constants: h2 } = http2;
const RST_CODES: Record<number, [string, Code]> = {
  [h2.NGHTTP2_PROTOCOL_ERROR]: ["PROTOCOL_ERROR", Code.Internal],
  [h2.NGHTTP2_INTERNAL_ERROR]: ["INTERNAL_ERROR", Code.Internal],
  [h2.NGHTTP2_FLOW_CONTROL_ERROR]: ["FLOW_CONTROL_ERROR", Code.Internal],
  [h2.NGHTTP2_SETTINGS_TIMEOUT]: ["SETTINGS_TIMEOUT", Code.Internal],
  [h2.NGHTTP2_FRAME_SIZE_ERROR]: ["FRAME_SIZE_ERROR", Code.Internal],
  [h2.NGHTTP2_COMPRESSION_ERROR]: ["COMPRESSION_ERROR", Code.Internal],
  [h2.NGHTTP2_CONNECT_ERROR]: ["CONNECT_ERROR", Code.Internal],
  [h2.NGHTTP2_REFUSED_STREAM]: ["REFUSED_STREAM", Code.Unavailable],
  [h2.NGHTTP2_CANCEL]: ["CANCEL", Code.Canceled],
  [h2.NGHTTP2_ENHANCE_YOUR_CALM]: ["ENHANCE_YOUR_CALM", Code.ResourceExhausted],
  [h2.NGHTTP2_INADEQUATE_SECURITY]: ["INADEQUATE_SECURITY", Code.PermissionDenied],
  [h2.NGHTTP2_HTTP_1_1_REQUIRED]: ["HTTP_1_1_REQUIRED", Code.PermissionDenied],
};

/** The error an HTTP/2 RST_STREAM code stands for; undefined for NO_ERROR and STREAM_CLOSED (as gRPC). */
export function connectErrorFromH2ResetCode(rstCode: number): ConnectError | undefined {
  const known = RST_CODES[rstCode];
  return known && new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode.toString(16)})`, known[1]);
}
