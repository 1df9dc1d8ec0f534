/**
 * The download benchmark's servers, in their own process so that the harness's state (heap,
 * earlier modules) does not slow them down: the test release server (plain HTTP, the path the
 * updater downloads from) and an https server with the same file.
 *
 * IPC: receives {type:"config", file, cert, key} and answers {type:"listening", url, tlsUrl}.
 */
import { createReadStream, readFileSync, statSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { startReleaseServer } from "../../test/helpers/release-server.js";

const NAME = "carapace-1.0.0.tar.gz";

process.once("message", (msg: { type: string; file: string; cert: string; key: string }) => {
  void (async () => {
    const server = await startReleaseServer([{ tag: "v1.0.0", assets: [{ name: NAME, file: msg.file }] }]);
    const size = statSync(msg.file).size;
    const tls = createHttpsServer({ cert: readFileSync(msg.cert), key: readFileSync(msg.key) }, (_req, res) => {
      res.writeHead(200, { "Content-Length": String(size), "Content-Type": "application/octet-stream" });
      createReadStream(msg.file).pipe(res);
    });
    await new Promise<void>((resolve) => tls.listen(0, "127.0.0.1", resolve));
    process.send?.({ type: "listening", url: server.assetUrl("v1.0.0", NAME), tlsUrl: `https://localhost:${(tls.address() as AddressInfo).port}/${NAME}` });
  })();
});
process.on("SIGTERM", () => process.exit(0));
