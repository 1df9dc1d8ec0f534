// RunDoctor and CreateBugreport through the generated Connect client against the real server in
// this process: the report as messages, the archive as a summary and chunks, the errors.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DoctorStepStatus, OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { doctorService } from "../../src/ops/doctor-service.js";
import { LogRing } from "../../src/ops/log-ring.js";
import { statePaths } from "../../src/state/paths.js";
import { prepareStateDir } from "../../src/state/state-dir.js";
import { badRequestOf, errorInfoOf, retryDelayMsOf } from "../../src/wire/error-details.js";
import { serveCara, tempDir } from "../helpers/cara.js";
import { routerClient } from "../helpers/rpc.js";
import { until } from "../helpers/wait.js";

const SECRET = "doctor-service-secret-0123456789abcdefghijk";

function client(baseUrl: string, token?: string) {
  const auth: Interceptor = (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(OpsService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
}

test("RunDoctor answers the checklist as messages; CreateBugreport streams a summary, then the archive in chunks", async () => {
  const s = await serveCara({ env: { CARAPACE_SERVER_SECRET: SECRET } });
  const ops = client(s.baseUrl, s.token);

  const report = await ops.runDoctor({});
  assert.equal(report.stateDir, s.stateDir);
  assert.equal(report.serverRunning, true);
  assert.equal(report.serverPid, process.pid);
  assert.equal(report.serverUrl, `http://127.0.0.1:${s.port}`);
  assert.deepEqual(
    report.steps.map((x) => x.id),
    ["server", "token", "config", "logs", "tasks", "schedules", "agent", "tls", "secret", "modes", "update", "restore", "backups"],
  );
  // Started on port 0 while the configuration says 18789: a warning, with the way out.
  const server = report.steps[0]!;
  assert.equal(server.status, DoctorStepStatus.WARN);
  assert.equal(server.summary, `server pid ${process.pid} is healthy on http://127.0.0.1:${s.port}, but the configuration says 127.0.0.1:18789`);
  assert.equal(report.steps.find((x) => x.id === "secret")!.status, DoctorStepStatus.OK);
  assert.equal(report.steps.find((x) => x.id === "backups")!.next.startsWith("cara backup -o FILE"), true);
  assert.equal(report.verdict, DoctorStepStatus.WARN);
  assert.equal(report.restore, undefined);

  const chunks: Uint8Array[] = [];
  let summary;
  for await (const msg of ops.createBugreport({ logLines: 50 })) {
    if (msg.event.case === "summary") {
      assert.equal(summary, undefined, "one summary");
      assert.equal(chunks.length, 0, "the summary comes first");
      summary = msg.event.value;
    } else if (msg.event.case === "chunk") {
      assert.ok(msg.event.value.length <= 64 * 1024);
      chunks.push(msg.event.value);
    }
  }
  assert.ok(summary);
  assert.match(summary.fileName, /^cara-bugreport-\d{8}T\d{6}Z\.tar\.gz$/);
  const archive = Buffer.concat(chunks);
  assert.equal(BigInt(archive.length), summary.sizeBytes);
  assert.deepEqual(
    summary.contains.map((c) => c.name),
    ["doctor.json", "status.json", "logs.jsonl", "versions.json", "update.json", "queue.json", "README.txt"],
  );
  assert.ok(summary.leftOut.includes("task payloads (pass --include-payloads to include them, redacted)"));
  const file = join(await tempDir(), summary.fileName);
  await writeFile(file, archive);
  const top = summary.fileName.replace(/\.tar\.gz$/, "");
  assert.deepEqual(
    execFileSync("tar", ["-tzf", file], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter((n) => !n.endsWith("/"))
      .sort(),
    summary.contains.map((c) => `${top}/${c.name}`).sort(),
  );
  const text = execFileSync("tar", ["-xzOf", file], { encoding: "utf8" });
  for (const secret of [s.token, SECRET]) assert.ok(!text.includes(secret), "no secret inside");
  await s.stop();
});

test("CreateBugreport: log_lines out of range is INVALID_ARGUMENT naming the field; both RPCs need the token", async () => {
  const s = await serveCara({ env: { CARAPACE_SERVER_SECRET: SECRET } });
  const ops = client(s.baseUrl, s.token);
  const err = await (async () => {
    for await (const _ of ops.createBugreport({ logLines: 5001 })) assert.fail("no message before the error");
  })().then(
    () => assert.fail("expected an error"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.InvalidArgument);
  assert.equal(err.rawMessage, "log lines must be from 1 to 5000 (got 5001)");
  assert.equal(errorInfoOf(err)?.reason, "BUGREPORT_INVALID");
  assert.deepEqual(
    badRequestOf(err)?.fieldViolations.map((v) => v.field),
    ["log_lines"],
  );

  const anonymous = client(s.baseUrl);
  await assert.rejects(anonymous.runDoctor({}), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  await assert.rejects(
    (async () => {
      for await (const _ of anonymous.createBugreport({})) assert.fail("no message without the token");
    })(),
    (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated,
  );
  await s.stop();
});

test("CreateBugreport: one report at a time (RESOURCE_EXHAUSTED with a retry delay); a caller that leaves frees the place", async () => {
  const paths = await prepareStateDir(join(await tempDir(), "state"));
  const impl = doctorService({
    paths: statePaths(paths.root),
    env: {},
    version: "0.1.0",
    ring: new LogRing(),
    serving: () => true,
    statusJson: async () => ({}),
  });
  const ops = routerClient(OpsService, { getStatus: () => ({}), tailLogs: () => ({}), followLogs: async function* () {}, ...impl });
  const leave = new AbortController();
  const first = ops.createBugreport({}, { signal: leave.signal })[Symbol.asyncIterator]();
  const head = await first.next();
  assert.equal(head.value?.event.case, "summary");
  const busy = await (async () => {
    for await (const _ of ops.createBugreport({})) assert.fail("no message while another report is being made");
  })().then(
    () => assert.fail("expected an error"),
    (e: unknown) => e,
  );
  assert.ok(busy instanceof ConnectError);
  assert.equal(busy.code, Code.ResourceExhausted);
  assert.equal(busy.rawMessage, "another bug report is being made right now; try again in a few seconds");
  assert.equal(errorInfoOf(busy)?.reason, "BUGREPORT_BUSY");
  assert.equal(retryDelayMsOf(busy), 5_000);
  leave.abort();
  await first.next().catch(() => undefined);
  // The server learns that the caller left asynchronously: wait for the place to be free.
  const chunks = await until("a bug report after the first caller left", async () => {
    let n = 0;
    for await (const msg of ops.createBugreport({})) if (msg.event.case === "chunk") n++;
    return n;
  });
  assert.ok(chunks >= 1);
});
