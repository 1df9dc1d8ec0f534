import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { tempDir } from "../helpers/cara.js";
import { startCli } from "../helpers/cli.js";
import { VERSION } from "../../src/package-info.js";

test("cara start on a terminal prints a banner and text log lines, not JSON", async () => {
  const stateDir = join(await tempDir(), "state");
  const stop = new AbortController();
  const cara = startCli(["start", "--port", "0", "--state-dir", stateDir], { tty: true, signal: stop.signal });
  const text = await cara.stdout.until(/Ctrl-C stops the server\.\n/);
  const port = /API: {6}http:\/\/127\.0\.0\.1:(\d+)\n/.exec(text)?.[1];
  assert.ok(port, text);
  const lines = text.split("\n");
  const banner = lines.indexOf(`cara ${VERSION} is running`);
  assert.ok(banner > 0, text);
  assert.match(lines[banner - 1]!, /^\d\d:\d\d:\d\d warning: set CARAPACE_SERVER_SECRET in production \(using a generated secret from the state dir\)$/);
  assert.deepEqual(lines.slice(banner), [
    `cara ${VERSION} is running`,
    `  API:      http://127.0.0.1:${port}`,
    `  Console:  http://127.0.0.1:${port}/`,
    `  Token:    ${join(stateDir, "auth", "token")}`,
    `  State:    ${stateDir}`,
    "Next: run 'cara status' in another terminal. Ctrl-C stops the server.",
    "",
  ]);
  assert.ok(!text.includes("{"), "no JSON lines");
  stop.abort();
  const done = await cara.done;
  assert.equal(done.code, 0);
  assert.match(done.stdout.slice(text.length), /^\d\d:\d\d:\d\d info: shutting down: draining in-flight calls\n\d\d:\d\d:\d\d info: stopped\n$/);
});
