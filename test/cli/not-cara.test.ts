/**
 * Talking to something that is not cara, or to a server that never answers: each says what
 * answered (or that nothing did within the bound) and what to do next. Real local HTTP servers.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { after, test } from "node:test";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/cara.js";

const sockets = new Set<Socket>();
const servers: Server[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const server = createServer(handler);
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

const html = (status: number) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
  res.end(`<html><body>${status}</body></html>`);
};

async function cli(args: string[]) {
  const env = { CARAPACE_STATE_DIR: await tempDir(), CARAPACE_GATEWAY_TOKEN: "t".repeat(40) };
  return runCli(args, { env });
}

test("an HTML 404 is named as not cara, for an RPC and for the health probe of `cara status`", async () => {
  const port = await listen(html(404));
  const list = await cli(["backup", "list", "--port", String(port)]);
  assert.deepEqual(list, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} answered HTTP 404 text/html: that is not a cara server (check --host and --port)\n`,
  });
  const status = await cli(["status", "--port", String(port)]);
  assert.deepEqual(status, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} answered HTTP 404 text/html: that is not a cara server (check --host and --port)\n`,
  });
});

test("an HTTP/1.1-only server asked over HTTP/2 (an archive upload: verify, restore) is named as not cara", async () => {
  const port = await listen(html(404));
  const dir = await tempDir();
  await writeFile(join(dir, "x.tar.gz"), "x");
  const message = `Error: 127.0.0.1:${port} broke off the HTTP/2 exchange (it speaks HTTP/1.1 only?): that is not a cara server (check --host and --port)\n`;
  const env = { CARAPACE_STATE_DIR: dir, CARAPACE_GATEWAY_TOKEN: "t".repeat(40) };
  assert.deepEqual(await runCli(["backup", "verify", "x.tar.gz", "--port", String(port)], { env, cwd: dir }), { code: 1, stdout: "", stderr: message });
  assert.deepEqual(await runCli(["restore", "x.tar.gz", "--port", String(port), "--dry-run"], { env, cwd: dir }), { code: 1, stdout: "", stderr: message });
});

test("a 501 from something else (a proxy) is named as not cara", async () => {
  const port = await listen(html(501));
  const r = await cli(["task", "list", "--port", String(port)]);
  assert.deepEqual(r, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} answered HTTP 501 text/html: that is not a cara server (check --host and --port)\n`,
  });
});

test("a server that resets the connection is named as not cara", async () => {
  const port = await listen((req) => req.socket.resetAndDestroy());
  const r = await cli(["backup", "list", "--port", String(port)]);
  assert.deepEqual(r, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} reset the connection: that is not a cara server (if it serves TLS, pass --tls), or it stopped mid-call (check --host and --port)\n`,
  });
});

test("a server that accepts and never answers: the call ends at --timeout, naming it and the next step", async () => {
  const port = await listen(() => undefined);
  const list = await cli(["backup", "list", "--port", String(port), "--timeout", "300ms"]);
  assert.deepEqual(list, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} did not answer within 300 ms (a hung or overloaded server?): pass a longer --timeout (e.g. --timeout 2s), or read its log files with 'cara logs --offline'\n`,
  });
  const logs = await cli(["logs", "--port", String(port), "--timeout", "1.5s"]);
  assert.deepEqual(logs, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} did not answer within 1.5 s (a hung or overloaded server?): pass a longer --timeout (e.g. --timeout 6s), or read its log files with --offline\n`,
  });
  const status = await cli(["status", "--port", String(port), "--timeout", "200ms"]);
  assert.deepEqual(status, {
    code: 1,
    stdout: "",
    stderr: `Error: 127.0.0.1:${port} did not answer within 200 ms (a hung or overloaded server?): pass a longer --timeout (e.g. --timeout 1s), or read its log files with 'cara logs --offline'\n`,
  });
});

test("a stream's first message is bounded too (task watch), and --timeout is checked", async () => {
  const port = await listen(() => undefined);
  const watch = await cli(["task", "watch", "abc", "--port", String(port), "--timeout", "400ms"]);
  assert.equal(watch.code, 1);
  assert.equal(
    watch.stderr,
    `Error: 127.0.0.1:${port} did not answer within 400 ms (a hung or overloaded server?): pass a longer --timeout (e.g. --timeout 2s), or read its log files with 'cara logs --offline'\n`,
  );
  const bad = await cli(["backup", "list", "--port", String(port), "--timeout", "soon"]);
  assert.deepEqual(bad, {
    code: 2,
    stdout: "",
    stderr: "Error: --timeout must be a duration like 5s, 500ms, 2m or 24h (got 'soon')\nRun 'cara backup list --help' for usage.\n",
  });
});
