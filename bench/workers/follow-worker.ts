/**
 * FollowLogs followers, in their own process: N concurrent server streams through the generated
 * client (connect-node, Connect protocol, binary), counting the entries each receives and the
 * delivery latency (entry time → receipt). IPC:
 *   {type:"start", port, token, followers, contains, httpVersion} → {type:"ready"} or {type:"unavailable", message}
 *   {type:"reset"}  → {type:"reset-done"}        (zero the counters)
 *   {type:"report"} → {type:"report", counts, dropped, latencyMs:{p50,p99}, errors}
 */
import { setMaxListeners } from "node:events";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { percentileSorted } from "../lib/stats.js";

interface Start {
  type: "start";
  port: number;
  token: string;
  followers: number;
  contains: string;
  httpVersion: "1.1" | "2";
}

let counts: number[] = [];
let dropped: number[] = [];
let latencies: number[] = [];
let errors: string[] = [];
const abort = new AbortController();
setMaxListeners(0, abort.signal); // one listener per follower stream

async function start(msg: Start): Promise<void> {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${msg.token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${msg.port}`,
    httpVersion: msg.httpVersion,
    useBinaryFormat: true,
    interceptors: [auth],
  });
  const client = createClient(OpsService, transport);
  counts = new Array<number>(msg.followers).fill(0);
  dropped = new Array<number>(msg.followers).fill(0);
  let unavailable: string | undefined;
  const follow = async (i: number) => {
    try {
      for await (const res of client.followLogs({ tail: 0, filter: { contains: msg.contains } }, { signal: abort.signal })) {
        if (res.event.case === "entry") {
          counts[i]!++;
          const t = res.event.value.time;
          if (t && latencies.length < 2_000_000) latencies.push(Date.now() - timestampMs(t));
        } else if (res.event.case === "dropped") {
          dropped[i]! += Number(res.event.value);
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
      const e = ConnectError.from(err);
      if (e.code === Code.Unimplemented) unavailable = e.rawMessage;
      else if (errors.length < 5) errors.push(`${Code[e.code]}: ${e.rawMessage}`);
    }
  };
  for (let i = 0; i < msg.followers; i++) void follow(i);
  // Give the streams time to be accepted (or refused) by the server.
  const deadline = Date.now() + 3000;
  await new Promise((r) => setTimeout(r, 300));
  while (Date.now() < deadline && unavailable === undefined && errors.length === 0) {
    await new Promise((r) => setTimeout(r, 100));
    if (Date.now() > deadline - 2300) break;
  }
  if (unavailable !== undefined) process.send!({ type: "unavailable", message: unavailable });
  else if (errors.length > 0) process.send!({ type: "unavailable", message: errors[0] });
  else process.send!({ type: "ready" });
}

process.on("message", (msg: { type: string }) => {
  if (msg.type === "start") void start(msg as Start);
  else if (msg.type === "reset") {
    counts.fill(0);
    dropped.fill(0);
    latencies = [];
    errors = [];
    process.send!({ type: "reset-done" });
  } else if (msg.type === "report") {
    const sorted = Float64Array.from(latencies).sort();
    process.send!({
      type: "report",
      counts: [...counts],
      dropped: [...dropped],
      latencyMs: { p50: percentileSorted(sorted, 50), p99: percentileSorted(sorted, 99) },
      errors: [...errors],
    });
  } else if (msg.type === "exit") {
    abort.abort();
    setTimeout(() => process.exit(0), 200);
  }
});
process.on("disconnect", () => process.exit(0));
process.send!({ type: "hello" });
