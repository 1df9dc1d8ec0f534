import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { symlink } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ROOT, cleanEnv, startCara, tempDir } from "../helpers/cara.js";
import { readmeBlock } from "../helpers/readme.js";

const exec = promisify(execFile);

// Debian's packages, not whatever python/protoc is first on PATH (a pyenv python has no grpcio;
// pip's grpc_tools bundles a protoc too old for proto3 `optional`).
const PROTOC = "/usr/bin/protoc";
const GRPC_PLUGIN = "/usr/bin/grpc_python_plugin";
const PYTHON = "/usr/bin/python3";
const INSTALL = "apt-get install -y python3-grpcio protobuf-compiler protobuf-compiler-grpc";

function missingTools(): string | false {
  const missing = [PROTOC, GRPC_PLUGIN, PYTHON].filter((p) => !existsSync(p));
  if (missing.length === 0 && spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"]).status !== 0) missing.push("python3-grpcio");
  return missing.length > 0
    ? `the Python client tests need Debian's python3-grpcio, protobuf-compiler and protobuf-compiler-grpc (missing: ${missing.join(", ")}); install them with: ${INSTALL}`
    : false;
}
const skip = missingTools();
if (skip) console.log(`SKIPPED: ${skip}`);

/** The README's protoc command, run as written in `dir` (with proto/ linked in); the stubs land in dir/clients/python. */
async function generateStubs(dir: string): Promise<string> {
  await symlink(join(ROOT, "proto"), join(dir, "proto"));
  const command = readmeBlock("<!-- python-client.test.ts runs this command -->", "sh");
  await exec("bash", ["-ec", command], { cwd: dir, env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ""}` } });
  return join(dir, "clients", "python");
}

test("a Python grpcio client (stubs from Debian's protoc) calls GetStatus, CreateTask/GetTask, TailLogs, FollowLogs and reads error details", {
  skip,
}, async () => {
  const stubs = await generateStubs(await tempDir("cara-py-"));
  const s = await startCara();
  const nonce = `n${process.pid}${Date.now()}`;
  const { stdout } = await exec(PYTHON, [join(ROOT, "test", "python", "client.py"), stubs, `127.0.0.1:${s.port}`, s.token, nonce], {
    env: cleanEnv({ PYTHONDONTWRITEBYTECODE: "1" }),
    timeout: 60_000,
  });
  const out = JSON.parse(stdout);

  assert.equal(out.status.port, s.port);
  assert.equal(out.status.state_dir, s.stateDir);
  assert.deepEqual(out.status.checks, ["state_dir", "disk", "stores", "server_secret", "tasks", "logs", "backup", "update"]);

  assert.equal(out.task.created, true);
  assert.equal(out.task.got_id, out.task.id);
  assert.equal(out.task.text, `python-before-${nonce}`);
  assert.equal(out.task.state, "TASK_STATE_DONE");

  assert.ok(out.tail.events.includes(`python-before-${nonce}`), JSON.stringify(out.tail));

  // The stream was live (it had delivered the tail) before the second event was logged.
  assert.equal(out.follow.first, `python-before-${nonce}`);
  assert.equal(out.follow.after, `python-after-${nonce}`);
  assert.ok(Number(out.follow.after_seq) > Number(out.follow.first_seq));
  assert.equal(out.follow.level, "LOG_LEVEL_INFO");

  assert.deepEqual(out.invalid, {
    code: "INVALID_ARGUMENT",
    message: "limit: must be an integer from 1 to 5000 (got 0)",
    status: {
      code: 3,
      message: "limit: must be an integer from 1 to 5000 (got 0)",
      error_info: { reason: "LOG_QUERY_INVALID", domain: "carapace.dev" },
      field_violations: [["limit", "limit: must be an integer from 1 to 5000 (got 0)"]],
    },
  });
  assert.equal(out.no_token.code, "UNAUTHENTICATED");
  assert.deepEqual(out.no_token.status.error_info, { reason: "TOKEN_MISSING", domain: "carapace.dev" });
  // The README's Python example, as written, against the same server.
  const example = await exec(
    PYTHON,
    ["-c", `import sys; sys.path.insert(0, ${JSON.stringify(stubs)})\n${readmeBlock("<!-- python-client.test.ts runs this block -->", "python")}`],
    { env: cleanEnv({ CARA_ADDRESS: `127.0.0.1:${s.port}`, TOKEN: s.token }), timeout: 30_000 },
  );
  assert.match(example.stdout, /^\d+\.\d+\.\d+\S*\n\['limit'\]\n$/);

  assert.deepEqual(out.unknown_method, {
    code: "UNIMPLEMENTED",
    message:
      "unknown method /carapace.ops.v1.OpsService/Nope: carapace.ops.v1.OpsService has no method Nope (it has GetStatus, TailLogs, FollowLogs, RunDoctor, CreateBugreport)",
  });
  await s.stop();
});

test("the Python recipe (buf.gen.python.yaml: protoc's python/pyi built-ins + grpc_python_plugin) generates importable stubs", { skip }, async () => {
  const out = await tempDir("cara-py-recipe-");
  await exec(join(ROOT, "node_modules", ".bin", "buf"), ["generate", "--template", "buf.gen.python.yaml", "-o", out], {
    cwd: ROOT,
    env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ""}` },
  });
  for (const f of [
    "carapace/ops/v1/ops_pb2.py",
    "carapace/ops/v1/ops_pb2.pyi",
    "carapace/ops/v1/ops_pb2_grpc.py",
    "carapace/tasks/v1/tasks_pb2_grpc.py",
    "google/rpc/error_details_pb2.py",
    "google/rpc/status_pb2.py",
  ]) {
    assert.ok(existsSync(join(out, "clients", "python", f)), f);
  }
  assert.equal(existsSync(join(out, "clients", "python", "grpc")), false, "no generated grpc package to shadow grpcio");
  const check = spawnSync(
    PYTHON,
    [
      "-c",
      "import sys; sys.path.insert(0, sys.argv[1]); from carapace.tasks.v1 import tasks_pb2_grpc; from google.rpc import error_details_pb2; print(tasks_pb2_grpc.TasksServiceStub.__name__)",
      join(out, "clients", "python"),
    ],
    { encoding: "utf8" },
  );
  assert.equal(check.stdout.trim(), "TasksServiceStub", check.stderr);
});
