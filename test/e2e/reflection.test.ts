import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ROOT, serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

const run = promisify(execFile);
const BUF = join(ROOT, "node_modules", ".bin", "buf");
const SERVED = [
  "carapace.backup.v1.BackupService",
  "carapace.ops.v1.OpsService",
  "carapace.tasks.v1.SchedulesService",
  "carapace.tasks.v1.TasksService",
  "carapace.update.v1.UpdateService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

type Req = Parameters<typeof create<typeof v1.ServerReflectionRequestSchema>>[1];

async function* each<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

/** One reflection stream: sends the requests, returns the answers in order. */
async function reflect(
  transport: Transport,
  token: string | undefined,
  requests: Req[],
  service: DescService = v1.ServerReflection,
): Promise<v1.ServerReflectionResponse[]> {
  const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const out: v1.ServerReflectionResponse[] = [];
  if (service === v1alpha.ServerReflection) {
    const client = createClient(v1alpha.ServerReflection, transport);
    const reqs = requests.map((r) => create(v1alpha.ServerReflectionRequestSchema, r as never));
    for await (const res of client.serverReflectionInfo(each(reqs), { headers })) out.push(res as unknown as v1.ServerReflectionResponse);
    return out;
  }
  const client = createClient(v1.ServerReflection, transport);
  for await (const res of client.serverReflectionInfo(each(requests.map((r) => create(v1.ServerReflectionRequestSchema, r))), { headers })) out.push(res);
  return out;
}

const fileProtos = (res: v1.ServerReflectionResponse): FileDescriptorProto[] => {
  assert.equal(res.messageResponse.case, "fileDescriptorResponse", JSON.stringify(res.messageResponse));
  return (res.messageResponse.value as v1.FileDescriptorResponse).fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
};

/** Lists the services, then asks for each one's file and every missing import until none is left. */
async function resolveEverything(transport: Transport, token: string, service: DescService = v1.ServerReflection) {
  const [list] = await reflect(transport, token, [{ messageRequest: { case: "listServices", value: "" } }], service);
  assert.equal(list!.messageResponse.case, "listServicesResponse");
  const names = (list!.messageResponse.value as v1.ListServiceResponse).service.map((s) => s.name);
  const files = new Map<string, FileDescriptorProto>();
  const answers = await reflect(
    transport,
    token,
    names.map((n) => ({ messageRequest: { case: "fileContainingSymbol" as const, value: n } })),
    service,
  );
  for (const a of answers) for (const f of fileProtos(a)) files.set(f.name, f);
  for (let round = 0; round < 5; round++) {
    const missing = [...new Set([...files.values()].flatMap((f) => f.dependency))].filter((d) => !files.has(d));
    if (missing.length === 0) break;
    const more = await reflect(
      transport,
      token,
      missing.map((m) => ({ messageRequest: { case: "fileByFilename" as const, value: m } })),
      service,
    );
    for (const a of more) for (const f of fileProtos(a)) files.set(f.name, f);
  }
  // A registry builds only when every import is there (listed before the files importing it).
  const ordered: FileDescriptorProto[] = [];
  const visit = (name: string) => {
    const f = files.get(name);
    if (!f || ordered.includes(f)) return;
    f.dependency.forEach(visit);
    ordered.push(f);
  };
  [...files.keys()].forEach(visit);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  return { names, files, registry };
}

const bearer = (s: CaraEndpoint) => `Authorization: Bearer ${s.token}`;

test("reflection (v1 and v1alpha, over gRPC, gRPC-Web and Connect on HTTP/2) lists every service and resolves every file", async () => {
  const s = await serveCara();
  const transports = {
    grpc: createGrpcTransport({ baseUrl: s.baseUrl }),
    grpcWeb: createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: "2" }),
    connect: createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "2" }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    for (const service of [v1.ServerReflection, v1alpha.ServerReflection]) {
      const { names, files, registry } = await resolveEverything(transport, s.token, service);
      const label = `${name} ${service.typeName}`;
      assert.deepEqual(names, SERVED, label);
      for (const n of SERVED) assert.ok(registry.getService(n), `${label}: ${n}`);
      assert.deepEqual(
        registry.getService("carapace.ops.v1.OpsService")!.methods.map((m) => m.name),
        ["GetStatus", "TailLogs", "FollowLogs", "RunDoctor", "CreateBugreport"],
        label,
      );
      // Dependencies come along, down to the well-known types.
      for (const f of ["google/protobuf/timestamp.proto", "google/protobuf/struct.proto", "carapace/tasks/v1/tasks.proto", "grpc/health/v1/health.proto"])
        assert.ok(files.has(f), `${label}: ${f}`);
      assert.ok(
        registry.getMessage("carapace.ops.v1.GetStatusResponse")?.fields.some((f) => f.name === "state_dir"),
        label,
      );
    }
  }
  await s.stop();
});

test("reflection answers symbols (types, methods, fields), file names, extensions and misses per the protocol", async () => {
  const s = await serveCara();
  const t = createGrpcTransport({ baseUrl: s.baseUrl });
  const answers = await reflect(t, s.token, [
    { host: "h", messageRequest: { case: "fileContainingSymbol", value: "carapace.ops.v1.OpsService.TailLogs" } },
    { messageRequest: { case: "fileContainingSymbol", value: "carapace.ops.v1.FollowLogsResponse" } },
    { messageRequest: { case: "fileContainingSymbol", value: "carapace.ops.v1.TailLogsRequest.max_bytes" } },
    { messageRequest: { case: "fileByFilename", value: "google/protobuf/struct.proto" } },
    { messageRequest: { case: "fileContainingSymbol", value: "carapace.ops.v1.Nope" } },
    { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
    { messageRequest: { case: "allExtensionNumbersOfType", value: "carapace.ops.v1.LogEntry" } },
    { messageRequest: { case: "allExtensionNumbersOfType", value: "carapace.ops.v1.Nope" } },
    { messageRequest: { case: "fileContainingExtension", value: { containingType: "carapace.ops.v1.LogEntry", extensionNumber: 100 } } },
    {},
    { messageRequest: { case: "fileContainingSymbol", value: "google.rpc.BadRequest" } },
  ]);
  assert.equal(answers.length, 11);
  // The first answer carries the file and its imports; later answers on the same stream skip
  // files already sent, but always carry the file asked for.
  assert.deepEqual(
    fileProtos(answers[0]!).map((f) => f.name),
    ["carapace/ops/v1/ops.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"],
  );
  assert.equal(answers[0]!.validHost, "h");
  assert.equal(answers[0]!.originalRequest?.messageRequest.value, "carapace.ops.v1.OpsService.TailLogs");
  assert.deepEqual(
    fileProtos(answers[1]!).map((f) => f.name),
    ["carapace/ops/v1/ops.proto"],
  );
  assert.deepEqual(
    fileProtos(answers[2]!).map((f) => f.name),
    ["carapace/ops/v1/ops.proto"],
  );
  assert.deepEqual(
    fileProtos(answers[3]!).map((f) => f.name),
    ["google/protobuf/struct.proto"],
  );
  const err = (a: v1.ServerReflectionResponse) => (assert.equal(a.messageResponse.case, "errorResponse"), a.messageResponse.value as v1.ErrorResponse);
  assert.deepEqual([err(answers[4]!).errorCode, err(answers[4]!).errorMessage], [Code.NotFound, "symbol 'carapace.ops.v1.Nope' not found"]);
  assert.deepEqual([err(answers[5]!).errorCode, err(answers[5]!).errorMessage], [Code.NotFound, "file 'nope.proto' not found"]);
  assert.equal(answers[6]!.messageResponse.case, "allExtensionNumbersResponse");
  assert.deepEqual((answers[6]!.messageResponse.value as v1.ExtensionNumberResponse).extensionNumber, []);
  assert.equal((answers[6]!.messageResponse.value as v1.ExtensionNumberResponse).baseTypeName, "carapace.ops.v1.LogEntry");
  assert.equal(err(answers[7]!).errorCode, Code.NotFound);
  assert.equal(err(answers[8]!).errorCode, Code.NotFound);
  assert.equal(err(answers[9]!).errorCode, Code.InvalidArgument);
  // Error detail types resolve, for clients that decode details through reflection.
  assert.deepEqual(
    fileProtos(answers[10]!).map((f) => f.name),
    ["google/rpc/error_details.proto", "google/protobuf/duration.proto"],
  );
  await s.stop();
});

test('reflection needs the token; server.reflection: "off" removes it (UNIMPLEMENTED)', async () => {
  const s = await serveCara();
  const t = createGrpcTransport({ baseUrl: s.baseUrl });
  for (const token of [undefined, "wrong"]) {
    await assert.rejects(reflect(t, token, [{ messageRequest: { case: "listServices", value: "" } }]), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unauthenticated);
      assert.equal(e.findDetails(ErrorInfoSchema)[0]?.reason, token === undefined ? "TOKEN_MISSING" : "TOKEN_INVALID");
      return true;
    });
  }
  await s.stop();

  const dir = await tempDir();
  const stateDir = join(dir, "state");
  await mkdir(stateDir, { mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ server: { reflection: "off" } }));
  const off = await serveCara({ stateDir });
  await assert.rejects(
    reflect(createGrpcTransport({ baseUrl: off.baseUrl }), off.token, [{ messageRequest: { case: "listServices", value: "" } }]),
    (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unimplemented);
      assert.equal(
        e.rawMessage,
        "unknown method /grpc.reflection.v1.ServerReflection/ServerReflectionInfo: this server has no service grpc.reflection.v1.ServerReflection",
      );
      return true;
    },
  );
  await off.stop();

  await writeFile(join(stateDir, "config.json"), JSON.stringify({ server: { reflection: "on" } }));
  const bad = await runCli(["start", "--port", "0", "--state-dir", stateDir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^Error: invalid config .*config\.json: server\.reflection: Expected one of "token" or "off"/);
});

test("the bidi reflection stream over HTTP/1.1 is refused with 505 saying HTTP/2 is needed", async () => {
  const s = await serveCara();
  const res = await fetch(`${s.baseUrl}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`, {
    method: "POST",
    headers: { "content-type": "application/connect+json", authorization: `Bearer ${s.token}` },
    body: "",
  });
  assert.equal(res.status, 505);
  assert.deepEqual(await res.json(), {
    error:
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo is a bidirectional stream: it needs HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2)",
  });
  await s.stop();
});

test("buf curl --reflect (no local schema) lists and calls every service over grpc, grpcweb and connect", async () => {
  const s = await serveCara();
  const calls: Array<[string, string, (out: any) => void]> = [
    ["carapace.ops.v1.OpsService/GetStatus", "{}", (o) => assert.equal(o.stateDir, s.stateDir)],
    ["carapace.tasks.v1.TasksService/ListTasks", '{"limit":5}', (o) => assert.deepEqual(o, {})],
    ["carapace.tasks.v1.SchedulesService/ListSchedules", "{}", (o) => assert.deepEqual(o, {})],
    ["carapace.backup.v1.BackupService/ListBackups", "{}", (o) => assert.equal(o.directory, join(s.stateDir, "backups"))],
    ["carapace.update.v1.UpdateService/GetUpdateStatus", "{}", (o) => assert.equal(o.managed, undefined)],
    ["grpc.health.v1.Health/Check", "{}", (o) => assert.deepEqual(o, { status: "SERVING" })],
  ];
  // The calls of one protocol run side by side (each is a buf process).
  for (const protocol of ["grpc", "grpcweb", "connect"]) {
    const common = ["curl", "--protocol", protocol, "--http2-prior-knowledge", "--reflect-header", bearer(s)];
    const [list, methods, ...answers] = await Promise.all([
      run(BUF, [...common, "--list-services", s.baseUrl]),
      run(BUF, [...common, "--list-methods", s.baseUrl]),
      ...calls.map(([path, body]) => run(BUF, [...common, "-H", bearer(s), "-d", body, `${s.baseUrl}/${path}`])),
    ]);
    assert.deepEqual(list.stdout.trim().split("\n"), SERVED, protocol);
    assert.ok(methods.stdout.includes("carapace.backup.v1.BackupService/RestoreBackup\n"), protocol);
    for (const [i, [, , check]] of calls.entries()) check(JSON.parse(answers[i]!.stdout));
  }
  // The deprecated v1alpha protocol, as older tools use it.
  const alpha = await run(BUF, [
    "curl",
    "--http2-prior-knowledge",
    "--reflect-protocol",
    "grpc-v1alpha",
    "--reflect-header",
    bearer(s),
    "-H",
    bearer(s),
    "-d",
    "{}",
    `${s.baseUrl}/carapace.ops.v1.OpsService/GetStatus`,
  ]);
  assert.equal(JSON.parse(alpha.stdout).port, s.port);
  await s.stop();
});
