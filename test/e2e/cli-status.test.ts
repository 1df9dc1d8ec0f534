import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { runCara, serveCara, startCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { selfSignedCert } from "../helpers/tls-cert.js";

const SECRET = "a-long-enough-server-secret-for-tests-0001";

// End to end: the real `cara status` binary against the real `cara start`. The other tests run
// the server and the CLI in this process (serveCara, runCli).
test("cara status: healthy server, human output, exit 0", async () => {
  const s = await startCara({ env: { CARAPACE_SERVER_SECRET: SECRET } });
  const res = await runCara(["status", "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, "");
  const lines = res.stdout.split("\n");
  assert.match(lines[0]!, new RegExp(`^carapace \\d+\\.\\d+\\.\\d+ at 127\\.0\\.0\\.1:${s.port}: HEALTHY, up \\d+s$`));
  assert.match(lines[1]!, /^ {2}ok {4}state_dir {6}.* is writable$/);
  assert.match(lines[2]!, /^ {2}ok {4}disk {11}\d/);
  assert.equal(lines[3], "  ok    stores         config, credentials, tasks loaded");
  assert.equal(lines[4], "  ok    server_secret  from CARAPACE_SERVER_SECRET");
  assert.ok(res.stdout.includes(`  State dir:  ${s.stateDir}\n`));
  assert.ok(res.stdout.includes(`  Listening:  127.0.0.1:${s.port} (plaintext)\n`));
  assert.ok(!res.stdout.includes("\u001b["), "no colours when not on a terminal");
  await s.stop();
});

test("cara status: a generated secret is a warning (DEGRADED, exit 0); a failing check exits 1", async () => {
  const s = await serveCara();
  const res = await runCli(["status", "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(res.code, 0);
  assert.match(res.stdout.split("\n")[0]!, /: DEGRADED \(1 warning\), up /);
  assert.ok(res.stdout.includes("  warn  server_secret  set CARAPACE_SERVER_SECRET in production"));
  await s.stop();

  const dir = await tempDir();
  const stateDir = join(dir, "s");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ health: { diskFreeFloorBytes: 2 ** 52 } }));
  const failing = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: SECRET } });
  const res2 = await runCli(["status", "--port", String(failing.port), "--state-dir", stateDir]);
  assert.equal(res2.code, 1);
  assert.match(res2.stdout.split("\n")[0]!, /: FAILING \(1 failing\), up /);
  assert.match(res2.stdout, /\n {2}fail {2}disk {11}only /);
  await failing.stop();
});

test("cara status --json prints exactly {health, status} with short enum names", async () => {
  const s = await serveCara({ env: { CARAPACE_SERVER_SECRET: SECRET } });
  const res = await runCli(["status", "--json", "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(res.code, 0, res.stderr);
  const doc = JSON.parse(res.stdout);
  assert.deepEqual(Object.keys(doc), ["health", "status"]);
  assert.equal(doc.health.status, "ok");
  assert.equal(doc.status.port, s.port);
  assert.equal(doc.status.authMode, "token_file");
  assert.equal(doc.status.secretSource, "env");
  assert.equal(doc.status.overall, "healthy");
  assert.deepEqual(
    doc.status.checks.map((c: { name: string; status: string }) => `${c.name}=${c.status}`),
    ["state_dir=ok", "disk=ok", "stores=ok", "server_secret=ok", "tasks=ok", "logs=ok", "backup=ok", "update=ok"],
  );
  assert.equal(typeof doc.status.checks[0].durationMs, "number");
  assert.equal(doc.status.shuttingDown, false);
  await s.stop();
});

test("cara status: server down -> connection refused message, exit 1", async () => {
  const s = await serveCara();
  const port = s.port;
  await s.stop();
  const res = await runCli(["status", "--port", String(port), "--state-dir", s.stateDir]);
  assert.equal(res.code, 1);
  assert.equal(res.stdout, "");
  assert.equal(res.stderr, `Error: Could not connect to carapace at 127.0.0.1:${port} (connection refused). Is 'cara start' running?\n`);
});

test("cara status: a rejected token is reported as such (not as down), exit 1; with --json as the error document", async () => {
  const s = await serveCara();
  const message =
    `carapace at 127.0.0.1:${s.port} is running but rejected the token (invalid bearer token). ` +
    "Use that server's token: CARAPACE_GATEWAY_TOKEN, or its <state>/auth/token (pick the state dir with --state-dir).";
  const env = { CARAPACE_GATEWAY_TOKEN: "not-the-token" };
  const human = await runCli(["status", "--port", String(s.port)], { env });
  assert.deepEqual(human, { code: 1, stdout: "", stderr: `Error: ${message}\n` });
  const json = await runCli(["status", "--port", String(s.port), "--json"], { env });
  assert.deepEqual([json.code, json.stderr], [1, ""]);
  assert.deepEqual(JSON.parse(json.stdout), { error: { code: "unauthenticated", message, details: { reason: "TOKEN_INVALID" } } });
  await s.stop();
});

test("cara status refuses to send the token in plaintext to a remote host; usage errors exit 2", async () => {
  const res = await runCli(["status", "--host", "ops.example.invalid"]);
  assert.equal(res.code, 2);
  assert.match(res.stderr, /^Error: refusing to send the token in plaintext to ops\.example\.invalid: use --tls/);
  const bad = await runCli(["status", "--timeout", "soon"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^Error: --timeout must be a duration like 5s, 500ms, 2m or 24h \(got 'soon'\)/);
  const unknown = await runCli(["status", "--bogus"]);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr, "Error: unknown option '--bogus'\nRun 'cara status --help' for usage.\n");
});

test("cara version and cara version --json", async () => {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  const human = await runCli(["version"]);
  assert.equal(human.code, 0);
  assert.equal(human.stdout, `cara ${pkg.version} (node ${process.version}, ${process.platform}/${process.arch})\n`);
  const json = await runCli(["version", "--json"]);
  assert.deepEqual(JSON.parse(json.stdout), { version: pkg.version, node: process.version, platform: process.platform, arch: process.arch });
});

test("TLS: h2 and HTTP/1.1 over one TLS port; cara status --tls --tls-ca works", async () => {
  const { cert, key } = await selfSignedCert();
  const s = await serveCara({ flags: { tlsCert: cert, tlsKey: key }, env: { CARAPACE_SERVER_SECRET: SECRET } });
  assert.ok(s.lines.some((l) => l.includes(`listening on https://127.0.0.1:${s.port}`)));
  const ca = await readFile(cert);
  const client = createClient(OpsService, createGrpcTransport({ baseUrl: `https://127.0.0.1:${s.port}`, nodeOptions: { ca } }));
  const status = await client.getStatus({}, { headers: { authorization: `Bearer ${s.token}` } });
  assert.equal(status.tls, true);
  const res = await runCli(["status", "--tls", "--tls-ca", cert, "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(res.code, 0, res.stderr);
  assert.ok(res.stdout.includes(`(TLS)`));
  const untrusted = await runCli(["status", "--tls", "--port", String(s.port), "--state-dir", s.stateDir]);
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stderr, /^Error: Could not connect to carapace at 127\.0\.0\.1:\d+ \(self-signed certificate \(pass --tls-ca/);
  await s.stop();
});
