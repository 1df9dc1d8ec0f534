// End to end: the real `cara doctor` and `cara bugreport` binaries after the real `cara start` was
// killed with SIGKILL (its lock and address record stay behind, naming a dead pid).
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { runCara, startCara, tempDir } from "../helpers/cara.js";

test("after kill -9: doctor finds no live server (stale lock), reads the log files; bugreport still writes its archive", async () => {
  const env = { CARAPACE_SERVER_SECRET: "e2e-doctor-secret-0123456789abcdefghijklm" };
  const s = await startCara({ env });
  const up = await runCara(["doctor", "--json", "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(JSON.parse(up.stdout).server.running, true, up.stderr);
  await s.stop("SIGKILL");
  await stat(join(s.stateDir, "cara.lock")); // left behind

  const res = await runCara(["doctor", "--state-dir", s.stateDir], { env });
  assert.equal(res.stderr, "");
  const lines = res.stdout.split("\n");
  assert.equal(lines[0], `cara doctor: ${s.stateDir}`);
  assert.equal(lines[2], `warn  server — no server is running for ${s.stateDir} (no live lock); configured to listen on 127.0.0.1:18789`);
  assert.ok(res.stdout.includes(`recent logs — no warnings or errors in the log files in ${s.stateDir}/logs\n`), res.stdout);
  // Warnings only (no server, no backup yet): exit 0.
  assert.equal(res.code, 0);

  const out = join(await tempDir(), "after-crash.tar.gz");
  const report = await runCara(["bugreport", "-o", out, "--state-dir", s.stateDir], { env });
  assert.equal(report.code, 0, report.stderr);
  assert.ok(report.stdout.startsWith(`Wrote ${out} (`));
  assert.ok(report.stdout.includes("\n  status.json: no server answered\n"));
  assert.equal((await stat(out)).mode & 0o777, 0o600);
});
