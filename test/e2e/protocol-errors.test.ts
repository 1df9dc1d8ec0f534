import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import http2 from "node:http2";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, file_google_protobuf_empty } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { badRequestOf, errorInfoOf, retryDelayMsOf } from "../../src/wire/error-details.js";
import { isRpcShaped, rpcProtocolOf } from "../../src/server/unknown-route.js";
import { connectJson, ROOT, serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";

const run = promisify(execFile);
const BUF = join(ROOT, "node_modules", ".bin", "buf");
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** A service descriptor the server does not serve: `pkg.Service` with unary Nope and streaming NopeStream. */
function fakeService(pkg: string, service: string): DescService {
  const fdp = create(FileDescriptorProtoSchema, {
    name: `fake/${pkg}.proto`,
    package: pkg,
    dependency: ["google/protobuf/empty.proto"],
    syntax: "proto3",
    service: [
      {
        name: service,
        method: [
          { name: "Nope", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" },
          { name: "NopeStream", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty", serverStreaming: true },
        ],
      },
    ],
  });
  return createFileRegistry(fdp, (name) => (name === "google/protobuf/empty.proto" ? file_google_protobuf_empty : undefined)).getService(`${pkg}.${service}`)!;
}

/** A client of a descriptor built at run time (its method names are not known to the compiler). */
const anyClient = (service: DescService, transport: Transport) =>
  createClient(service, transport) as unknown as { nope(req: object, options?: object): Promise<unknown>; nopeStream(req: object): AsyncIterable<unknown> };

const expectCode = (code: Code, message?: string, reason?: string) => (err: unknown) => {
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(Code[err.code], Code[code], err.message);
  if (message !== undefined) assert.equal(err.rawMessage, message);
  if (reason !== undefined) assert.equal(errorInfoOf(err)?.reason, reason);
  return true;
};

async function drain(it: AsyncIterable<unknown>) {
  for await (const _ of it) void _;
}

function transports(s: CaraEndpoint): Record<string, Transport> {
  return {
    grpc: createGrpcTransport({ baseUrl: s.baseUrl }),
    grpcWebH1: createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }),
    connectH1: createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }),
    connectBinaryH2: createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "2", useBinaryFormat: true }),
  };
}

test("an unknown method or service is UNIMPLEMENTED (gRPC status 12) in the caller's protocol, naming the path", async () => {
  const s = await serveCara();
  const ops = fakeService("carapace.ops.v1", "OpsService");
  const nope = fakeService("carapace.nope.v1", "NopeService");
  const methodMsg =
    "unknown method /carapace.ops.v1.OpsService/Nope: carapace.ops.v1.OpsService has no method Nope (it has GetStatus, TailLogs, FollowLogs, RunDoctor, CreateBugreport)";
  const serviceMsg = "unknown method /carapace.nope.v1.NopeService/Nope: this server has no service carapace.nope.v1.NopeService";
  for (const [name, transport] of Object.entries(transports(s))) {
    // With or without a token: like a gRPC server, the route is checked before the call runs.
    await assert.rejects(anyClient(ops, transport).nope({}, bearer(s.token)), expectCode(Code.Unimplemented, methodMsg, "UNKNOWN_METHOD"), name);
    await assert.rejects(anyClient(nope, transport).nope({}), expectCode(Code.Unimplemented, serviceMsg, "UNKNOWN_SERVICE"), name);
    if (name !== "connectH1") {
      await assert.rejects(
        drain(anyClient(ops, transport).nopeStream({})),
        expectCode(Code.Unimplemented, methodMsg.replace("/Nope:", "/NopeStream:").replace("method Nope ", "method NopeStream "), "UNKNOWN_METHOD"),
        name,
      );
    }
  }

  // On the wire: gRPC is HTTP 200 with grpc-status 12 in the trailers.
  const session = http2.connect(s.baseUrl);
  const wire = await new Promise<{ status: number; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": "/carapace.ops.v1.OpsService/Nope", "content-type": "application/grpc", te: "trailers" });
    let status = 0;
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("trailers", (trailers) => resolve({ status, trailers }));
    stream.on("error", reject);
    stream.resume();
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  session.close();
  assert.equal(wire.status, 200);
  assert.equal(wire.trailers["grpc-status"], "12");
  assert.equal(decodeURIComponent(String(wire.trailers["grpc-message"])), methodMsg);

  // Connect unary: 404 with the Connect error body.
  const unary = await connectJson(s, "carapace.ops.v1.OpsService/Nope", {});
  assert.equal(unary.status, 404);
  assert.equal(unary.json.code, "unimplemented");
  assert.equal(unary.json.message, methodMsg);
  assert.deepEqual(unary.json.details[0].debug, { reason: "UNKNOWN_METHOD", domain: "carapace.dev", metadata: { path: "/carapace.ops.v1.OpsService/Nope" } });
  // A Connect GET to an unknown procedure too.
  const get = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/Nope?connect=v1&encoding=json&message=%7B%7D`);
  assert.equal(get.status, 404);
  assert.equal(((await get.json()) as any).code, "unimplemented");
  await s.stop();
});

test("plain HTTP is not RPC: GET /nope is the JSON 404, health routes work, a Connect GET of a read-only RPC works", async () => {
  const s = await serveCara();
  const nope = await fetch(`${s.baseUrl}/nope`);
  assert.equal(nope.status, 404);
  assert.deepEqual(await nope.json(), { error: "no route for GET /nope", see: "GET /health, GET /health/ready, or POST /<package>.<Service>/<Method>" });
  // /console/... are the console's deep links: the page, not an RPC.
  const page = await fetch(`${s.baseUrl}/console/tasks`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200);
  const url = `${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus?encoding=json&message=%7B%7D`;
  const anonymous = await fetch(url);
  assert.equal(anonymous.status, 401);
  assert.equal(((await anonymous.json()) as any).code, "unauthenticated");
  const ok = await fetch(url, bearer(s.token));
  assert.equal(ok.status, 200);
  assert.equal(((await ok.json()) as any).port, s.port);
  await s.stop();
});

test("isRpcShaped tells RPCs of every protocol from plain HTTP requests", () => {
  const req = (method: string, url: string, headers: Record<string, string> = {}) => ({ method, url, headers }) as never;
  const cases: Array<[string, string, Record<string, string>, string | undefined]> = [
    ["POST", "/a.B/C", { "content-type": "application/grpc" }, "grpc"],
    ["POST", "/", { "content-type": "application/grpc+proto" }, "grpc"],
    ["POST", "/a.B/C", { "content-type": "application/grpc-web+proto" }, "grpc-web"],
    ["POST", "/a.B/C", { "content-type": "application/grpc-web-text" }, "grpc-web"],
    ["POST", "/a.B/C", { "content-type": "application/connect+json" }, "connect-stream"],
    ["POST", "/a.B/C", { "content-type": "application/json" }, "connect-unary"],
    ["POST", "/a.B/C", {}, "connect-unary"],
    ["POST", "/nope", { "content-type": "application/json" }, undefined],
    ["POST", "/nope", { "connect-protocol-version": "1" }, "connect-unary"],
    ["GET", "/a.B/C?encoding=json&message=%7B%7D", {}, "connect-unary"],
    ["GET", "/anything?connect=v1", {}, "connect-unary"],
    ["GET", "/a.B/C", {}, undefined],
    ["GET", "/", {}, undefined],
    ["GET", "/console/app.js", {}, undefined],
    ["HEAD", "/a.B/C", {}, undefined],
  ];
  for (const [method, url, headers, expected] of cases) {
    assert.equal(rpcProtocolOf(req(method, url, headers)), expected, `${method} ${url} ${JSON.stringify(headers)}`);
    assert.equal(isRpcShaped(req(method, url, headers)), expected !== undefined);
  }
});

test("a wrong content type on a known method is 415 with the accepted types; a wrong HTTP method is 405 with Allow", async () => {
  const s = await serveCara();
  const res = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`, {
    method: "POST",
    headers: { "content-type": "text/plain", ...bearer(s.token).headers },
    body: "{}",
  });
  assert.equal(res.status, 415);
  const accepted = [
    "application/grpc",
    "application/grpc+proto",
    "application/grpc+json",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web+json",
    "application/json",
    "application/proto",
  ];
  assert.equal(res.headers.get("accept-post"), accepted.join(", "));
  assert.deepEqual(await res.json(), { error: "unsupported content type 'text/plain' for /carapace.ops.v1.OpsService/GetStatus", accepted });
  const stream = await fetch(`${s.baseUrl}/carapace.ops.v1.OpsService/FollowLogs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(stream.status, 415);
  assert.ok(stream.headers.get("accept-post")!.endsWith("application/connect+json, application/connect+proto"));
  const put = await fetch(`${s.baseUrl}/carapace.tasks.v1.TasksService/CreateTask`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get("allow"), "POST");
  assert.deepEqual(await put.json(), {
    error: "method PUT not allowed for /carapace.tasks.v1.TasksService/CreateTask; use POST (GET is only for RPCs without side effects)",
  });
  await s.stop();
});

test("auth failures and the failed-auth limit answer in the caller's protocol, with ErrorInfo and RetryInfo", async () => {
  const s = await serveCara();
  for (const [name, transport] of Object.entries(transports(s))) {
    const ops = createClient(OpsService, transport);
    await assert.rejects(ops.getStatus({}), expectCode(Code.Unauthenticated, undefined, "TOKEN_MISSING"), name);
  }
  for (let i = 0; i < 10; i++) await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, `wrong-${i}`);
  for (const [name, transport] of Object.entries(transports(s))) {
    await assert.rejects(createClient(OpsService, transport).getStatus({}, bearer(`still-wrong-${name}`)), (err: unknown) => {
      expectCode(Code.ResourceExhausted, undefined, "AUTH_RATE_LIMITED")(err);
      const ms = retryDelayMsOf(err)!;
      assert.ok(ms >= 1000 && ms <= 60_000 && ms % 1000 === 0, `${name}: ${ms}`);
      assert.equal((err as ConnectError).metadata.get("retry-after"), String(ms / 1000), name);
      return true;
    });
  }
  const connect = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, "still-wrong");
  assert.equal(connect.status, 429);
  assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).status, 200, "the right token is never locked out");
  assert.deepEqual(
    connect.json.details.map((d: any) => d.type),
    ["google.rpc.ErrorInfo", "google.rpc.RetryInfo"],
  );
  assert.match(connect.json.details[1].debug.retryDelay, /^\d+s$/);
  await s.stop();
});

test("a request body over the 8 MiB limit is RESOURCE_EXHAUSTED in the caller's protocol", async () => {
  // Over HTTP/2 the refused stream stays open until the client stops sending, so the graceful
  // stop at the end waits its whole drain time: keep that short.
  const s = await serveCara({ config: { server: { shutdownTimeoutMs: 500 } } });
  const huge = "x".repeat(9 * 1024 * 1024);
  for (const [name, transport] of Object.entries(transports(s))) {
    await assert.rejects(
      createClient(OpsService, transport).tailLogs({ filter: { contains: huge } }, bearer(s.token)),
      expectCode(Code.ResourceExhausted),
      name,
    );
  }
  const raw = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { filter: { contains: huge } }, s.token);
  assert.equal(raw.status, 429);
  assert.equal(raw.json.code, "resource_exhausted");
  // Still serving.
  assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { limit: 1 }, s.token)).status, 200);
  await s.stop();
});

test("unknown JSON fields are ignored by every service, top-level and nested (a newer client keeps working)", async () => {
  const s = await serveCara();
  const calls: Array<[string, unknown, (json: any) => void]> = [
    ["carapace.ops.v1.OpsService/GetStatus", { futureField: 1 }, (j) => assert.equal(j.port, s.port)],
    ["carapace.ops.v1.OpsService/TailLogs", { limit: 1, filter: { futureFilter: "x" }, futureField: true }, (j) => assert.equal(j.entries.length, 1)],
    [
      "carapace.tasks.v1.TasksService/CreateTask",
      { payload: { systemEvent: { text: "hi", futureField: 2 } }, futureField: { a: 1 } },
      (j) => assert.equal(j.task.payload.systemEvent.text, "hi"),
    ],
    ["carapace.tasks.v1.TasksService/ListTasks", { futureField: [1, 2] }, (j) => assert.equal(j.total, 1)],
    ["carapace.backup.v1.BackupService/ListBackups", { futureField: "x" }, (j) => assert.equal(j.directory, join(s.stateDir, "backups"))],
    ["carapace.update.v1.UpdateService/GetUpdateStatus", { futureField: null }, (j) => assert.match(j.currentVersion, /^\d+\.\d+\.\d+/)],
    ["grpc.health.v1.Health/Check", { service: "", futureField: 1 }, (j) => assert.deepEqual(j, { status: "SERVING" })],
  ];
  for (const [method, body, check] of calls) {
    const res = await connectJson(s, method, body, s.token);
    assert.equal(res.status, 200, `${method}: ${JSON.stringify(res.json)}`);
    check(res.json);
  }
  await s.stop();
});

test("errors carry ErrorInfo, BadRequest field paths and RetryInfo, read by the TS client over every protocol and by buf curl", async () => {
  const s = await serveCara();
  for (const [name, transport] of Object.entries(transports(s))) {
    const tasks = createClient(TasksService, transport);
    const ops = createClient(OpsService, transport);
    const bad = async (call: Promise<unknown>, reason: string, field: string | undefined, message: string) =>
      assert.rejects(call, (err: unknown) => {
        expectCode(Code.InvalidArgument, message, reason)(err);
        assert.deepEqual(
          badRequestOf(err)?.fieldViolations.map((v) => [v.field, v.description]),
          field ? [[field, message]] : undefined,
          name,
        );
        assert.equal((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.domain, "carapace.dev");
        return true;
      });
    await bad(ops.tailLogs({ limit: 0 }, bearer(s.token)), "LOG_QUERY_INVALID", "limit", "limit: must be an integer from 1 to 5000 (got 0)");
    await bad(
      ops.tailLogs({ filter: { pattern: "(a+)+$" } }, bearer(s.token)),
      "LOG_QUERY_INVALID",
      "filter.pattern",
      "pattern: nested quantifier '(a+)+' can backtrack catastrophically; simplify it",
    );
    await bad(
      tasks.createTask({ payload: { kind: { case: "systemEvent", value: { text: "x" } } }, policy: { maxAttempts: 0 } }, bearer(s.token)),
      "TASK_INVALID_ARGUMENT",
      "policy.max_attempts",
      "invalid policy.maxAttempts: must be between 1 and 10000",
    );
    await bad(
      tasks.createTask({ payload: { kind: { case: "systemEvent", value: { text: " " } } } }, bearer(s.token)),
      "TASK_INVALID_ARGUMENT",
      "payload.system_event.text",
      "Invalid task payload: systemEvent needs a non-empty text",
    );
    await bad(
      tasks.updateTask({ id: "x", setLabels: { "bad key": "v" } }, bearer(s.token)),
      "TASK_INVALID_ARGUMENT",
      "set_labels",
      "labels: invalid key 'bad key' (1-63 characters of letters, digits, _ . - /)",
    );
    await assert.rejects(tasks.getTask({ id: "nope" }, bearer(s.token)), expectCode(Code.NotFound, "Task not found", "TASK_NOT_FOUND"));
    await assert.rejects(drain(createClient(BackupService, transport).createBackup({ sections: ["nope"] }, bearer(s.token))), (err: unknown) => {
      expectCode(Code.InvalidArgument, undefined, "BACKUP_SECTION_UNKNOWN")(err);
      assert.equal(badRequestOf(err)?.fieldViolations[0]?.field, "sections");
      return true;
    });
    if (name !== "connectH1") {
      await bad(
        drain(createClient(UpdateService, transport).startUpdate({ yes: false }, bearer(s.token))),
        "UPDATE_INVALID_ARGUMENT",
        "yes",
        "update not confirmed: pass --yes",
      );
    }
  }

  // buf curl prints each detail's type and bytes (base64); `buf convert` decodes them.
  const res = await run(BUF, [
    "curl",
    "--schema",
    join(ROOT, "proto"),
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    "-H",
    `Authorization: Bearer ${s.token}`,
    "-d",
    '{"limit":0}',
    `${s.baseUrl}/carapace.ops.v1.OpsService/TailLogs`,
  ]).then(
    () => assert.fail("buf curl should fail"),
    (err: { stderr: string; code: number }) => err,
  );
  const printed = JSON.parse(res.stderr);
  assert.equal(printed.code, "invalid_argument");
  assert.deepEqual(
    printed.details.map((d: any) => d.type),
    ["google.rpc.ErrorInfo", "google.rpc.BadRequest"],
  );
  const bytes = Buffer.from(printed.details[1].value, "base64");
  const dir = await tempDir();
  await writeFile(join(dir, "detail.bin"), bytes);
  const converted = await run(BUF, [
    "convert",
    join(ROOT, "proto"),
    "--type",
    "google.rpc.BadRequest",
    "--from",
    `${join(dir, "detail.bin")}#format=binpb`,
    "--to",
    "-#format=json",
  ]);
  assert.deepEqual(JSON.parse(converted.stdout), { fieldViolations: [{ field: "limit", description: "limit: must be an integer from 1 to 5000 (got 0)" }] });
  assert.equal(fromBinary(ErrorInfoSchema, Buffer.from(printed.details[0].value, "base64")).reason, "LOG_QUERY_INVALID");
  await s.stop();
});
