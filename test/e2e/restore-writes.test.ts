// An online restore while clients keep creating tasks: every create the server acknowledged is
// either in the restored state (acknowledged after the swap) or in the pre-restore backup
// (acknowledged before the writers were paused). Writes in between are refused, never lost.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { taskIdsInBackup } from "../helpers/backup-tasks.js";

const SECRET = "restore-writes-test-secret-0123456789abcdef";
const env = { CARAPACE_SERVER_SECRET: SECRET };

test("no acknowledged create is lost across an online restore under concurrent creates", async () => {
  const s = await serveCara({ env });
  const create = (text: string) =>
    connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text } }, nextRunAtMs: String(Date.now() + 3_600_000) }, s.token);
  for (let i = 0; i < 40; i++) await Promise.all(Array.from({ length: 50 }, (_, j) => create(`seed ${i}.${j}`)));
  const archive = join(await tempDir(), "b.tar.gz");
  const backup = await runCli(["backup", "-o", archive, "--sections", "tasks", "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(backup.code, 0, backup.stderr);

  const acknowledged: string[] = [];
  const refused = new Map<string, number>();
  let stop = false;
  const client = async (n: number) => {
    for (let i = 0; !stop; i++) {
      const res = await create(`client ${n} #${i}`);
      if (res.status === 200) acknowledged.push(res.json.task.id);
      else refused.set(`${res.status} ${res.json?.code}`, (refused.get(`${res.status} ${res.json?.code}`) ?? 0) + 1);
    }
  };
  const clients = Array.from({ length: 8 }, (_, n) => client(n));
  // Let the clients get going, restore, then let them run a little longer.
  while (acknowledged.length < 200) await new Promise((r) => setImmediate(r));
  const restore = await runCli(["restore", archive, "--force", "--json", "--port", String(s.port), "--state-dir", s.stateDir], { env });
  const afterRestore = acknowledged.length;
  while (acknowledged.length < afterRestore + 200) await new Promise((r) => setImmediate(r));
  stop = true;
  await Promise.all(clients);
  assert.equal(restore.code, 0, restore.stderr);
  const pre = JSON.parse(restore.stdout).preRestoreBackupPath as string;

  const liveIds = new Set<string>();
  for (let token = ""; ; ) {
    const page = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000, pageToken: token }, s.token);
    assert.equal(page.status, 200, JSON.stringify(page.json));
    for (const t of page.json.tasks ?? []) liveIds.add(t.id);
    token = page.json.nextPageToken ?? "";
    if (!token) break;
  }
  const preIds = await taskIdsInBackup(pre, SECRET);
  const lost = acknowledged.filter((id) => !liveIds.has(id) && !preIds.has(id));
  assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.length} acknowledged creates are in neither the restored state nor the pre-restore backup`);
  // While the writers were paused, creates were refused with a retry hint (never a 500).
  for (const key of refused.keys()) assert.equal(key, "503 unavailable");
  await s.stop();
});
