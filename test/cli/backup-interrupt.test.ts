/**
 * An interrupted `cara backup -o FILE` (SIGINT or SIGTERM) removes its hidden partial file and
 * writes nothing. A spawned process, since the signal is the point; the server accepts the call
 * and sends nothing, so the interruption lands while the partial file is open.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { after, test } from "node:test";
import { CARA_BIN, cleanEnv, tempDir } from "../helpers/cara.js";
import { until } from "../helpers/wait.js";

const sockets = new Set<Socket>();
let server: Server;
after(() => {
  for (const s of sockets) s.destroy();
  server?.close();
});

async function hungServer(): Promise<number> {
  server = createServer(() => undefined);
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  test(`${signal} during cara backup -o removes the partial file and says nothing was written`, async () => {
    const port = server ? (server.address() as AddressInfo).port : await hungServer();
    const dir = await tempDir();
    const out = `${dir}/x.tar.gz`;
    const proc = spawn(process.execPath, [CARA_BIN, "backup", "-o", out, "--port", String(port)], {
      env: cleanEnv({ CARAPACE_STATE_DIR: `${dir}/state`, CARAPACE_GATEWAY_TOKEN: "t".repeat(40) }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const exited = once(proc, "exit");
    await until("the hidden partial file", async () => (await readdir(dir)).some((n) => n.startsWith(".x.tar.gz.") && n.endsWith(".partial")));
    proc.kill(signal);
    const [code] = await exited;
    assert.equal(code, 1);
    assert.equal(stderr, `Error: interrupted: the partial file was removed; nothing was written to ${out}\n`);
    assert.deepEqual(await readdir(dir), []);
  });
}
