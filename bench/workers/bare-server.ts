/**
 * The baselines, in their own process:
 *  - a bare node:http server: for every POST it reads the whole body, parses it as JSON (as a
 *    JSON RPC handler must), and answers a fixed JSON document, the GetStatus response captured
 *    from cara in the same run;
 *  - a bare node:http2 (h2c) server answering gRPC: reads the request, answers one gRPC frame
 *    holding the captured binary GetStatus response and the trailer grpc-status 0.
 *
 * IPC: receives {type:"config", body, binaryBody?} and answers {type:"listening", port, h2Port}.
 */
import http from "node:http";
import http2 from "node:http2";

process.once("message", (msg: { type: string; body: string; binaryBody?: string }) => {
  const payload = Buffer.from(msg.body, "utf8");
  const server = http.createServer((req, res) => {
    if (req.method !== "POST") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
      } catch {
        res.writeHead(400, { "content-type": "application/json" }).end('{"code":"invalid_argument"}');
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "content-length": payload.length });
      res.end(payload);
    });
  });
  server.keepAliveTimeout = 65_000;

  const binary = Buffer.from(msg.binaryBody ?? "", "base64");
  const frame = Buffer.alloc(5 + binary.length);
  frame.writeUInt32BE(binary.length, 1);
  binary.copy(frame, 5);
  const h2 = http2.createServer();
  h2.on("stream", (stream) => {
    stream.on("data", () => undefined);
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
    stream.on("error", () => undefined);
  });

  server.listen(0, "127.0.0.1", () => {
    h2.listen(0, "127.0.0.1", () => {
      process.send!({ type: "listening", port: (server.address() as { port: number }).port, h2Port: (h2.address() as { port: number }).port });
    });
  });
});
process.on("disconnect", () => process.exit(0));
