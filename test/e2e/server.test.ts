import assert from "node:assert/strict";
import http from "node:http";
import { stat, writeFile, mkdir } from "node:fs/promises";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { OpsService, CheckStatus } from "../../gen/carapace/ops/v1/ops_pb.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { connectJson, runCara, serveCara, startCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { until } from "../helpers/wait.js";

// The server runs in this process (serveCara) for what concerns HTTP and RPC; `cara start` runs
// in this process (runCli) where it refuses to start; a spawned server is the point of the
// signal, lock and shutdown tests.

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

test("GET /health is 200 with status, monotonic uptime and version; HEAD works; POST is 405", async () => {
  const s = await serveCara();
  const res = await fetch(`${s.baseUrl}/health`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
  const body = (await res.json()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body), ["status", "uptimeSeconds", "version"]);
  assert.equal(body.status, "ok");
  assert.equal(typeof body.uptimeSeconds, "number");
  assert.match(String(body.version), /^\d+\.\d+\.\d+/);
  const head = await fetch(`${s.baseUrl}/health`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const post = await fetch(`${s.baseUrl}/health`, { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  const live = await fetch(`${s.baseUrl}/health/live`);
  assert.equal(live.status, 200);
  const missing = await fetch(`${s.baseUrl}/nope`);
  assert.equal(missing.status, 404);
  await s.stop();
});

test("GET /health/ready is 200 ready with the secret warning, and 503 with failing checks and Retry-After", async () => {
  const ready = await serveCara();
  const res = await fetch(`${ready.baseUrl}/health/ready`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as any;
  assert.equal(body.status, "ready");
  // Without the token: which checks, not why (messages name paths and sizes).
  assert.deepEqual(body.warnings, [{ name: "server_secret" }]);
  assert.equal(body.detail, "send the bearer token (Authorization: Bearer ...) or run 'cara status' to see why");
  const withToken = (await (await fetch(`${ready.baseUrl}/health/ready`, { headers: { authorization: `Bearer ${ready.token}` } })).json()) as any;
  assert.deepEqual(withToken.warnings, [
    { name: "server_secret", message: "set CARAPACE_SERVER_SECRET in production (using a generated secret from the state dir)" },
  ]);
  assert.equal(withToken.detail, undefined);
  const wrongToken = (await (await fetch(`${ready.baseUrl}/health/ready`, { headers: { authorization: "Bearer nope" } })).json()) as any;
  assert.deepEqual(wrongToken.warnings, [{ name: "server_secret" }]);
  await ready.stop();

  // A disk floor no filesystem can meet makes the disk check fail.
  const dir = await tempDir();
  const stateDir = join(dir, "state");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ health: { diskFreeFloorBytes: 2 ** 52 } }));
  const notReady = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: "s".repeat(40) } });
  const res2 = await fetch(`${notReady.baseUrl}/health/ready`);
  assert.equal(res2.status, 503);
  assert.equal(res2.headers.get("retry-after"), "5");
  const body2 = (await res2.json()) as any;
  assert.equal(body2.status, "not_ready");
  assert.deepEqual(body2.failing, [{ name: "disk" }]);
  assert.deepEqual(body2.warnings, []);
  assert.ok(!JSON.stringify(body2).includes(stateDir), "no path for anonymous callers");
  const detailed = (await (await fetch(`${notReady.baseUrl}/health/ready`, { headers: { authorization: `Bearer ${notReady.token}` } })).json()) as any;
  assert.equal(detailed.failing.length, 1);
  assert.match(detailed.failing[0].message, /^only .* free on the state dir's filesystem \(floor 4096\.0 TiB\); free some space$/);
  // gRPC health says the same truth.
  const health = createClient(Health, createGrpcTransport({ baseUrl: notReady.baseUrl }));
  assert.equal((await health.check({ service: "" })).status, Serving.NOT_SERVING);
  // liveness stays 200
  assert.equal((await fetch(`${notReady.baseUrl}/health`)).status, 200);
  await notReady.stop();
});

test("RPC auth: missing and wrong tokens are UNAUTHENTICATED, the right one works", async () => {
  const s = await serveCara();
  const missing = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {});
  assert.equal(missing.status, 401);
  assert.equal(missing.json.code, "unauthenticated");
  assert.match(missing.json.message, /^missing bearer token/);
  const wrong = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, "x".repeat(43));
  assert.equal(wrong.status, 401);
  assert.deepEqual(wrong.json, {
    code: "unauthenticated",
    message: "invalid bearer token",
    details: [{ type: "google.rpc.ErrorInfo", value: "Cg1UT0tFTl9JTlZBTElEEgxjYXJhcGFjZS5kZXY", debug: { reason: "TOKEN_INVALID", domain: "carapace.dev" } }],
  });
  const basic = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Basic ${s.token}` },
    body: "{}",
  });
  assert.equal(basic.status, 401);
  assert.equal(((await basic.json()) as any).message, "malformed Authorization header: expected 'Bearer <token>'");
  const ok = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
  assert.equal(ok.status, 200);
  assert.equal(ok.json.stateDir, s.stateDir);
  assert.equal(ok.json.authMode, "AUTH_MODE_TOKEN_FILE");
  assert.equal(ok.json.secretSource, "SECRET_SOURCE_GENERATED");
  // The token file is private.
  assert.equal((await stat(join(s.stateDir, "auth", "token"))).mode & 0o777, 0o600);
  assert.equal((await stat(join(s.stateDir, "auth", "server-secret"))).mode & 0o777, 0o600);
  assert.equal((await stat(s.stateDir)).mode & 0o777, 0o700);
  // A failed auth is logged with the address and reason, never the presented token.
  assert.ok(s.lines.some((l) => l.includes('"reason":"mismatch"') && l.includes("authentication failed")));
  await s.stop();
});

test("the 11th bad attempt within a minute is RESOURCE_EXHAUSTED (429 + Retry-After); the right token still gets in", async () => {
  const s = await serveCara();
  for (let i = 1; i <= 10; i++) {
    const r = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, `wrong-${i}`);
    assert.equal(r.status, 401, `attempt ${i}`);
  }
  const eleventh = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, "wrong-11");
  assert.equal(eleventh.status, 429);
  assert.equal(eleventh.json.code, "resource_exhausted");
  assert.match(eleventh.json.message, /^too many failed authentication attempts from 127\.0\.0\.1; try again in \d+s$/);
  const retryAfter = Number(eleventh.headers.get("retry-after"));
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  // Whoever shares the address with the guesser is not locked out: the right token works.
  const right = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
  assert.equal(right.status, 200);
  assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, "wrong-12")).status, 429, "still locked for wrong tokens");
  // X-Forwarded-For from a client that is not a configured proxy changes nothing.
  const spoofed = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer x", "x-forwarded-for": "198.51.100.7" },
    body: "{}",
  });
  assert.equal(spoofed.status, 429);
  // Health probes are never rate-limited by auth failures.
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200);
  await s.stop();
});

test("behind a trusted proxy, failed attempts count per forwarded client, not per proxy", async () => {
  const stateDir = join(await tempDir(), "state");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ server: { trustedProxies: ["127.0.0.1"] } }));
  const s = await serveCara({ stateDir });
  const call = (token: string, forwarded: string) =>
    fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-forwarded-for": forwarded },
      body: "{}",
    });
  // The client may prepend anything; the proxy appends the address it saw (the rightmost hop).
  for (let i = 0; i < 10; i++) assert.equal((await call("wrong", "1.1.1.1, 203.0.113.5")).status, 401);
  const locked = await call("wrong", "9.9.9.9, 203.0.113.5");
  assert.equal(locked.status, 429);
  assert.match(((await locked.json()) as any).message, /^too many failed authentication attempts from 203\.0\.113\.5; try again in \d+s$/);
  assert.equal((await call("wrong", "203.0.113.6")).status, 401, "another client behind the same proxy is not locked out");
  assert.equal((await call(s.token, "203.0.113.5")).status, 200, "the right token always works");
  await s.stop();
});

test("GetStatus over Connect JSON, Connect binary, gRPC (h2c) and gRPC-Web", async () => {
  const s = await serveCara({ env: { CARAPACE_SERVER_SECRET: "0123456789abcdef0123456789abcdef-x" } });
  const transports = {
    connectBinary: createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
    connectJsonH2: createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "2" }),
    grpc: createGrpcTransport({ baseUrl: s.baseUrl }),
    grpcWeb: createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    const client = createClient(OpsService, transport);
    const status = await client.getStatus({}, bearer(s.token));
    assert.equal(status.port, s.port, name);
    assert.equal(status.pid, process.pid, name);
    assert.equal(status.bind, "127.0.0.1", name);
    assert.equal(status.tls, false, name);
    assert.equal(status.stateDir, s.stateDir, name);
    assert.deepEqual(
      status.checks.map((c) => [c.name, c.status]),
      [
        ["state_dir", CheckStatus.OK],
        ["disk", CheckStatus.OK],
        ["stores", CheckStatus.OK],
        ["server_secret", CheckStatus.OK],
        ["tasks", CheckStatus.OK],
        ["logs", CheckStatus.OK],
        ["backup", CheckStatus.OK],
        ["update", CheckStatus.OK],
      ],
      name,
    );
    await assert.rejects(client.getStatus({}), (err: unknown) => err instanceof ConnectError && err.code === Code.Unauthenticated, name);
  }
  const json = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
  assert.equal(json.json.secretSource, "SECRET_SOURCE_ENV");
  assert.equal(json.json.overall, "OVERALL_STATUS_HEALTHY");
  await s.stop();
});

test("UpdateService from a git checkout: status says why self-update does not apply; StartUpdate refuses", async () => {
  const s = await serveCara();
  const update = createClient(UpdateService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }));
  const st = await update.getUpdateStatus({}, bearer(s.token));
  assert.equal(st.managed, false);
  assert.match(st.unmanagedReason ?? "", /^running from a git checkout \(.*\); update with `git pull && npm ci && npm run build`/);
  assert.equal(st.transaction, undefined);
  await assert.rejects(
    (async () => {
      for await (const _ of update.startUpdate({ yes: true }, bearer(s.token))) void _;
    })(),
    (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.FailedPrecondition);
      assert.match(err.rawMessage, /^self-update does not apply to this installation: running from a git checkout/);
      return true;
    },
  );
  await assert.rejects(
    (async () => {
      for await (const _ of update.startUpdate({ yes: false }, bearer(s.token))) void _;
    })(),
    (err: unknown) => err instanceof ConnectError && err.code === Code.InvalidArgument && err.rawMessage === "update not confirmed: pass --yes",
  );
  await s.stop();
});

test("grpc.health.v1 Check and Watch need no token; Watch reports NOT_SERVING when shutdown starts, then ends", async () => {
  const s = await serveCara({ env: { CARAPACE_SERVER_SECRET: "0123456789abcdef0123456789abcdef-x" } });
  const health = createClient(Health, createGrpcTransport({ baseUrl: s.baseUrl }));
  assert.equal((await health.check({ service: "" })).status, Serving.SERVING);
  assert.equal((await health.check({ service: "carapace.ops.v1.OpsService" })).status, Serving.SERVING);
  await assert.rejects(health.check({ service: "nope.Service" }), (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound);
  const seen: Serving[] = [];
  const watching = (async () => {
    for await (const msg of health.watch({ service: "" })) {
      seen.push(msg.status);
      if (seen.length === 1) void s.stop();
    }
  })();
  await watching;
  assert.deepEqual(seen, [Serving.SERVING, Serving.NOT_SERVING]);
});

test("a second server on the same state dir exits 1 naming the pid; a stale lock is taken over", async () => {
  const first = await startCara();
  const second = await runCara(["start", "--port", "0", "--state-dir", first.stateDir]);
  assert.equal(second.code, 1);
  assert.equal(second.stderr.trim(), `Error: another cara server (pid ${first.proc.pid}) is using ${first.stateDir}`);
  assert.equal(await first.stop(), 0);

  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  await writeFile(join(first.stateDir, "cara.lock"), `${dead.stdout}\n`);
  const third = await startCara({ stateDir: first.stateDir });
  assert.equal((await fetch(`${third.baseUrl}/health`)).status, 200);
  assert.equal(await third.stop(), 0);
});

test("SIGTERM: an in-flight call completes, new connections are refused, exit 0 within 5 s", async () => {
  const s = await startCara();
  // A Connect JSON call whose body is sent only after SIGTERM: it is in flight. With
  // `Expect: 100-continue`, the server's "continue" says it has the call; its "shutting down"
  // log line says the signal arrived.
  const body = "{}";
  const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: s.port,
        method: "POST",
        path: "/carapace.ops.v1.OpsService/GetStatus",
        headers: { "content-type": "application/json", "content-length": body.length, authorization: `Bearer ${s.token}`, expect: "100-continue" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.on("continue", () => {
      s.proc.kill("SIGTERM");
      until("the server to start draining", () =>
        s.lines.some((l) => l.includes("shutting down: draining in-flight calls") && l.includes('"inFlight":1')),
      ).then(() => req.end(body), reject);
    });
    req.flushHeaders();
  });
  const started = Date.now();
  const done = await response;
  assert.equal(done.status, 200);
  assert.equal(JSON.parse(done.text).shuttingDown, true);
  assert.equal(await s.exited, 0);
  assert.ok(Date.now() - started < 5000);
  await assert.rejects(fetch(`${s.baseUrl}/health`));
  assert.ok(s.lines.some((l) => l.includes('"msg":"stopped"')));
});

test("start refuses bad config, a short secret and a plaintext non-loopback bind, with exit 1 and the reason", async () => {
  const dir = await tempDir();
  const stateDir = join(dir, "s");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ server: { port: "18789", tls: true } }));
  const bad = await runCli(["start", "--state-dir", stateDir]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr.trim(),
    `Error: invalid config ${join(stateDir, "config.json")}: server.port: Expected a number (got "18789"); server.tls: unknown key (got true)`,
  );
  await writeFile(join(stateDir, "config.json"), "{}");
  const short = await runCli(["start", "--state-dir", stateDir, "--port", "0"], { env: { CARAPACE_SERVER_SECRET: "too-short" } });
  assert.equal(short.code, 1);
  assert.match(short.stderr, /^Error: CARAPACE_SERVER_SECRET is too short \(9 characters; at least 32 required\)/);
  assert.ok(!short.stderr.includes("too-short"), "the secret itself is not echoed");
  const open = await runCli(["start", "--state-dir", stateDir, "--port", "0", "--bind", "0.0.0.0"]);
  assert.equal(open.code, 1);
  assert.match(open.stderr, /^Error: refusing to listen on 0\.0\.0\.0 without TLS/);
  const usage = await runCli(["start", "--port", "http"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^Error: --port must be a port number 0\.\.65535 \(got 'http'\)/);
});

test("--allow-plaintext on a non-loopback bind starts with a warning", async () => {
  const s = await serveCara({ flags: { bind: "0.0.0.0", allowPlaintext: true } });
  assert.ok(s.lines.some((l) => l.includes('"level":"warn"') && l.includes("WITHOUT TLS")));
  assert.equal((await fetch(`http://127.0.0.1:${s.port}/health`)).status, 200);
  await s.stop();
});

test("a state dir owned by another user is refused", { skip: process.getuid?.() !== 0 ? "needs root to chown" : false }, async () => {
  const dir = await tempDir();
  const stateDir = join(dir, "other");
  await mkdir(stateDir, { mode: 0o700 });
  const { chown } = await import("node:fs/promises");
  await chown(stateDir, 12345, 12345);
  const res = await runCli(["start", "--port", "0", "--state-dir", stateDir]);
  assert.equal(res.code, 1);
  assert.match(res.stderr, /^Error: refusing to use state dir .* it is owned by uid 12345, but cara runs as uid 0/);
});

test("a symlinked subdirectory of the state dir is refused", async () => {
  const dir = await tempDir();
  const stateDir = join(dir, "s");
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(join(dir, "elsewhere"));
  const { symlink } = await import("node:fs/promises");
  await symlink(join(dir, "elsewhere"), join(stateDir, "tasks"));
  const res = await runCli(["start", "--port", "0", "--state-dir", stateDir]);
  assert.equal(res.code, 1);
  assert.equal(
    res.stderr.trim(),
    `Error: refusing to use ${join(stateDir, "tasks")}: it is a symbolic link (remove it or point CARAPACE_STATE_DIR at the real directory)`,
  );
});

test("a JSON body with invalid UTF-8 is refused with invalid_argument and changes nothing", async () => {
  const s = await serveCara();
  const body = Buffer.concat([Buffer.from('{"payload":{"systemEvent":{"text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}}')]);
  const res = await fetch(`${s.baseUrl}/carapace.tasks.v1.TasksService/CreateTask`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${s.token}` },
    body,
  });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { code: "invalid_argument", message: "the JSON request body is not valid UTF-8" });
  const list = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", {}, s.token);
  assert.deepEqual(list.json.tasks ?? [], []);
  await s.stop();
});

test("a body that is not valid protobuf binary is refused with invalid_argument (400), naming the message type", async () => {
  const s = await serveCara();
  const res = await fetch(`${s.baseUrl}/carapace.tasks.v1.TasksService/CreateTask`, {
    method: "POST",
    headers: { "content-type": "application/proto", authorization: `Bearer ${s.token}` },
    body: new Uint8Array([0x0a, 0xff, 0xff, 0xff]),
  });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { code: string; message: string; details: { type: string }[] };
  assert.equal(body.code, "invalid_argument");
  assert.equal(body.message, "the request body is not a valid carapace.tasks.v1.CreateTaskRequest in protobuf binary (premature EOF)");
  assert.deepEqual(
    body.details.map((d) => d.type),
    ["google.rpc.ErrorInfo"],
  );
  assert.deepEqual((await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", {}, s.token)).json.tasks ?? [], []);
  await s.stop();
});
