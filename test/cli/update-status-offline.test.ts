/** `cara update --status` with no server reads updates/transaction.json here, and says so. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/cara.js";

async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, "close");
  return port;
}

test("no server: the transaction is read from <state>/updates/transaction.json", async () => {
  const state = join(await tempDir(), "state");
  const updates = join(state, "updates");
  await mkdir(updates, { recursive: true });
  const tx = {
    id: "tx-1",
    version: "0.9.1",
    assetName: "carapace-0.9.1.tar.gz",
    state: "failed",
    attempt: 3,
    maxAttempts: 3,
    startedAtMs: Date.parse("2026-12-05T01:00:00Z"),
    updatedAtMs: Date.parse("2026-12-05T01:02:00Z"),
    stagedPath: null,
    bundlePath: null,
    sha256: null,
    lastError: "HTTP 503 from the release host",
    phase: "failed",
    failedPhase: "downloading",
    retryable: true,
  };
  await writeFile(join(updates, "transaction.json"), JSON.stringify(tx));
  const port = await freePort();
  const env = { CARAPACE_STATE_DIR: state };
  const r = await runCli(["update", "--status", "--port", String(port)], { env });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, `(no server answers at 127.0.0.1:${port}: reading the update state here)\n`);
  const lines = r.stdout.split("\n");
  assert.equal(lines[0], `Server:            not running (read ${updates} here)`);
  assert.match(lines[1]!, /^Install: {11}not managed: /);
  assert.deepEqual(lines.slice(2), [
    "Transaction:       v0.9.1 failed while downloading, attempt 3/3",
    "  Last error:      HTTP 503 from the release host (retryable: `cara update` resumes it)",
    "",
  ]);

  const json = JSON.parse((await runCli(["update", "--status", "--json", "--port", String(port)], { env })).stdout);
  assert.equal(json.serverRunning, false);
  assert.equal(json.updatesDir, updates);
  assert.equal(json.transaction.version, "0.9.1");
  assert.equal(json.transaction.state, "failed");
  assert.equal(json.currentVersion, undefined);

  await writeFile(join(updates, "transaction.json"), "{not json");
  const corrupt = await runCli(["update", "--status", "--port", String(port)], { env });
  assert.equal(corrupt.code, 0);
  assert.match(corrupt.stdout, /\nTransaction: {7}UNREADABLE: .*transaction\.json/);
});
