/**
 * A local command with no --port finds the live server of its state dir on whatever port it
 * listens (the address recorded beside the lock), instead of the configured or default port.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { runCli } from "../helpers/cli.js";
import { serveCara, tempDir } from "../helpers/cara.js";
import { writeFile, mkdir } from "node:fs/promises";

test("the live server's recorded address wins over the configured port; an explicit --port still wins", async () => {
  const server = await serveCara({ config: { server: { port: 1 } } });
  const env = { CARAPACE_STATE_DIR: server.stateDir };
  const list = await runCli(["backup", "list"], { env });
  assert.deepEqual(list, { code: 0, stdout: `No backups in ${join(server.stateDir, "backups")}.\n`, stderr: "" });
  const status = await runCli(["status", "--json"], { env });
  assert.equal(JSON.parse(status.stdout).status.port, server.port);
  const explicit = await runCli(["backup", "list", "--port", "1"], { env });
  assert.deepEqual(explicit, {
    code: 1,
    stdout: "",
    stderr: "Error: Could not connect to carapace at 127.0.0.1:1 (connection refused). Is 'cara start' running?\n",
  });
});

test("a record left by a server that is gone is ignored", async () => {
  const state = join(await tempDir(), "state");
  await mkdir(state, { recursive: true });
  await writeFile(
    join(state, "cara.address"),
    JSON.stringify({ pid: 999_999_999, url: "http://127.0.0.1:2", bind: "127.0.0.1", port: 2, tls: false, startedAt: "" }),
  );
  await writeFile(join(state, "config.json"), JSON.stringify({ server: { port: 1 } }));
  const r = await runCli(["backup", "list"], { env: { CARAPACE_STATE_DIR: state } });
  assert.deepEqual(r, { code: 1, stdout: "", stderr: "Error: Could not connect to carapace at 127.0.0.1:1 (connection refused). Is 'cara start' running?\n" });
});
