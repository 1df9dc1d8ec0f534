// Crash rounds for an online restore under concurrent creates: SIGKILL at a seeded random moment
// while `cara restore --force` runs. After the restart the tasks are either the old state or the
// restored one (never a mix), and every create the server acknowledged is in the live state or
// in a pre-restore backup.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { taskIdsInBackup } from "../helpers/backup-tasks.js";
import { SEED, seeded, sleep, tally } from "./support.js";

const SECRET = "reliability-restore-secret-0123456789abcdef";
const env = { CARAPACE_SERVER_SECRET: SECRET };
const ROUNDS = Number(process.env.RELIABILITY_RESTORE_ROUNDS ?? 6);

async function ids(s: CaraServer): Promise<Set<string>> {
  const out = new Set<string>();
  for (let token = ""; ; ) {
    const page = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000, pageToken: token }, s.token);
    assert.equal(page.status, 200, JSON.stringify(page.json));
    for (const t of page.json.tasks ?? []) out.add(t.id);
    token = page.json.nextPageToken ?? "";
    if (!token) return out;
  }
}

test(`an online restore killed at random moments under concurrent creates leaves old or new state and loses nothing acknowledged (${ROUNDS} rounds, seed ${SEED})`, async () => {
  const rnd = seeded(SEED + 1);
  let tried = 0;
  let held = 0;
  const outcomes = { restored: 0, old: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const stateDir = join(await tempDir("cara-restore-crash-"), "state");
    let s = await startCara({ stateDir, env });
    const create = (server: CaraServer, text: string) =>
      connectJson(
        server,
        "carapace.tasks.v1.TasksService/CreateTask",
        { payload: { systemEvent: { text } }, nextRunAtMs: String(Date.now() + 3_600_000) },
        server.token,
      );
    for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 50 }, (_, j) => create(s, `archived ${i}.${j}`)));
    const archive = join(await tempDir(), "b.tar.gz");
    assert.equal((await runCara(["backup", "-o", archive, "--sections", "tasks", "--port", String(s.port), "--state-dir", stateDir], { env })).code, 0);
    const archived = await ids(s);
    // Tasks created after the archive: present only in the old state.
    for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 20 }, (_, j) => create(s, `old only ${i}.${j}`)));
    const oldOnly = [...(await ids(s))].filter((id) => !archived.has(id));

    const acknowledged: string[] = [];
    let stop = false;
    const clients = Array.from({ length: 8 }, async (_, n) => {
      for (let i = 0; !stop; i++) {
        try {
          const res = await create(s, `client ${n} #${i}`);
          if (res.status === 200) acknowledged.push(res.json.task.id);
        } catch {
          return; // the server died
        }
      }
    });
    const restore = runCara(["restore", archive, "--force", "--json", "--port", String(s.port), "--state-dir", stateDir], { env, timeoutMs: 60_000 });
    // Anywhere from before the upload ends to after the swap (a restore here takes about 1.5 s, CLI start included).
    await sleep(rnd.int(300, 2_500));
    s.proc.kill("SIGKILL");
    await s.exited;
    stop = true;
    await Promise.all(clients);
    await restore;

    s = await startCara({ stateDir, env });
    const live = await ids(s);
    const isRestored = oldOnly.every((id) => !live.has(id));
    const isOld = oldOnly.every((id) => live.has(id));
    tried++;
    assert.ok(isRestored !== isOld, `round ${round}: the tasks are a mix of the old and the restored state`);
    for (const id of archived) assert.ok(live.has(id), `round ${round}: archived task ${id} missing`);
    held++;
    outcomes[isRestored ? "restored" : "old"]++;
    const preBackups = (await readdir(join(stateDir, "backups"))).filter((n) => n.startsWith("pre-restore-") && n.endsWith(".tar.gz"));
    const inPre = new Set<string>();
    for (const name of preBackups) for (const id of await taskIdsInBackup(join(stateDir, "backups", name), SECRET)) inPre.add(id);
    for (const id of acknowledged) {
      tried++;
      assert.ok(live.has(id) || inPre.has(id), `round ${round}: acknowledged create ${id} was lost`);
      held++;
    }
    await s.stop();
  }
  await tally("crash: online restore under creates", {
    tried,
    held,
    unit: `checks over ${ROUNDS} SIGKILLs (${outcomes.restored} ended restored, ${outcomes.old} old)`,
  });
});
