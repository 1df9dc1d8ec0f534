// The README's "Clients" examples, run as written against a real server.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ROOT, cleanEnv, serveCara, type CaraEndpoint } from "../helpers/cara.js";
import { README, readmeBlock } from "../helpers/readme.js";

const exec = promisify(execFile);

/** Runs one README shell line with CARA and TOKEN set, buf on PATH, from the repo root. */
async function sh(s: CaraEndpoint, line: string): Promise<string> {
  assert.ok(README.includes(line), `README shows: ${line}`);
  const env = cleanEnv({ CARA: s.baseUrl, TOKEN: s.token, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}` });
  const { stdout } = await exec("bash", ["-c", line], { cwd: ROOT, env });
  return stdout;
}

test("README: the TypeScript client example runs and reads ErrorInfo and BadRequest", async () => {
  const s = await serveCara();
  const file = join(ROOT, `.readme-example-${process.pid}.mts`);
  await writeFile(file, readmeBlock("<!-- clients.test.ts runs this block -->", "ts"));
  try {
    const { stdout } = await exec(process.execPath, ["--import", "tsx", file], { cwd: ROOT, env: cleanEnv({ CARA: s.baseUrl, TOKEN: s.token }) });
    assert.match(stdout, /^carapace \d+\.\d+\.\d+\S*: 8 checks\nTASK_INVALID_ARGUMENT policy\.max_attempts\n$/);
  } finally {
    await rm(file, { force: true });
  }
  await s.stop();
});

test("README: curl (Connect JSON POST and Connect GET) and buf curl (schema and reflection, connect and grpc)", async () => {
  const s = await serveCara();
  assert.ok(README.includes("CARA=http://127.0.0.1:18789\nTOKEN=$(cat ~/.config/carapace/auth/token)\n"));

  const status = JSON.parse(
    await sh(s, `curl -s -X POST "$CARA/carapace.ops.v1.OpsService/GetStatus" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}'`),
  );
  assert.equal(status.port, s.port);
  const listed = JSON.parse(
    await sh(
      s,
      `curl -s -G "$CARA/carapace.tasks.v1.TasksService/ListTasks" -H "Authorization: Bearer $TOKEN" --data-urlencode 'connect=v1' --data-urlencode 'encoding=json' --data-urlencode 'message={"limit":5}'`,
    ),
  );
  assert.deepEqual(listed, {});

  const tail = JSON.parse(
    await sh(
      s,
      `buf curl --schema proto --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -d '{"limit":3}' "$CARA/carapace.ops.v1.OpsService/TailLogs"`,
    ),
  );
  assert.ok(tail.entries.length >= 1 && tail.entries.length <= 3, JSON.stringify(tail));
  assert.equal(tail.entries[0].component, "server");
  const methods = (await sh(s, `buf curl --http2-prior-knowledge --reflect-header "Authorization: Bearer $TOKEN" --list-methods "$CARA"`)).trim().split("\n");
  assert.ok(methods.includes("carapace.ops.v1.OpsService/GetStatus"));
  assert.ok(methods.includes("carapace.tasks.v1.TasksService/CreateTask"));
  assert.ok(methods.includes("grpc.health.v1.Health/Watch"));
  const viaGrpc = JSON.parse(
    await sh(
      s,
      `buf curl --protocol grpc --http2-prior-knowledge --reflect-header "Authorization: Bearer $TOKEN" -H "Authorization: Bearer $TOKEN" -d '{}' "$CARA/carapace.ops.v1.OpsService/GetStatus"`,
    ),
  );
  assert.equal(viaGrpc.stateDir, s.stateDir);
  await s.stop();
});

test("README: the GET-able RPCs listed are exactly those marked NO_SIDE_EFFECTS", async () => {
  const { OpsService } = await import("../../gen/carapace/ops/v1/ops_pb.js");
  const { TasksService } = await import("../../gen/carapace/tasks/v1/tasks_pb.js");
  const { SchedulesService } = await import("../../gen/carapace/tasks/v1/schedules_pb.js");
  const { BackupService } = await import("../../gen/carapace/backup/v1/backup_pb.js");
  const { UpdateService } = await import("../../gen/carapace/update/v1/update_pb.js");
  const { MethodOptions_IdempotencyLevel } = await import("@bufbuild/protobuf/wkt");
  const getable = [OpsService, TasksService, SchedulesService, BackupService, UpdateService].flatMap((svc) =>
    svc.methods.filter((m) => m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS).map((m) => m.name),
  );
  const start = README.indexOf("RPCs without side effects (") + "RPCs without side effects (".length;
  const listed = README.slice(start, README.indexOf(": marked", start)).replace(/\s+/g, " ");
  assert.equal(listed, getable.map((n) => `\`${n}\``).join(", "));
});
