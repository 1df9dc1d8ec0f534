// Backup and restore with the PostgreSQL task store (real servers in process, the real CLI, a
// throwaway cluster from test/helpers/postgres.ts; skipped, saying why, without PostgreSQL): an
// archive made from the database restores into a file deployment and back, a restore replaces the
// database's tasks exactly (and another server on it sees them), a restore that fails leaves the
// database as it was, and a backup taken while tasks are created holds each creation whole or not
// at all.
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { x as untar } from "tar";
import { connectJson, serveCara, tempDir, type InProcessCara } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { failAtCommit, postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { SECRET } from "../backup/fixtures.js";

const T = "carapace.tasks.v1.TasksService";
const FAR = Date.now() + 86_400_000;

interface Seen {
  id: string;
  state: string;
  attempts: number;
  payload: unknown;
  idempotencyKey?: string;
}

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("backup and restore with the PostgreSQL task store", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  const pgServer = (url: string) =>
    serveCara({ config: { tasks: { store: "postgres" } }, env: { CARAPACE_DATABASE_URL: url, CARAPACE_SERVER_SECRET: SECRET } });
  const fileServer = () => serveCara({ env: { CARAPACE_SERVER_SECRET: SECRET } });
  const cli = (s: InProcessCara, args: string[]) =>
    runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir], { env: { CARAPACE_SERVER_SECRET: SECRET } });

  async function tasksOf(s: InProcessCara): Promise<Seen[]> {
    const res = await connectJson(s, `${T}/ListTasks`, { limit: 1000 }, s.token);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    return ((res.json.tasks ?? []) as Seen[])
      .map((t) => ({
        id: t.id,
        state: t.state,
        attempts: t.attempts ?? 0,
        payload: t.payload,
        ...(t.idempotencyKey ? { idempotencyKey: t.idempotencyKey } : {}),
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async function create(s: InProcessCara, body: object): Promise<string> {
    const res = await connectJson(s, `${T}/CreateTask`, body, s.token);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    return res.json.task.id as string;
  }

  /** Waits (polling the API, no fixed sleep) until `check` passes or 10 s went by. */
  async function eventually(check: () => Promise<void>): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        return await check();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  async function backup(s: InProcessCara, name: string): Promise<string> {
    const out = join(await tempDir(), name);
    const made = await cli(s, ["backup", "--output", out]);
    assert.equal(made.code, 0, made.stderr);
    return out;
  }

  async function archivedQueue(file: string): Promise<{ text: string; tasksFiles: string[] }> {
    const dir = await tempDir();
    await untar({ file, cwd: dir });
    return { text: await readFile(join(dir, "tasks", "queue.json"), "utf8"), tasksFiles: (await readdir(join(dir, "tasks"))).sort() };
  }

  /** Tasks in every kind of state the test needs: done (ran), queued for later, cancelled. */
  async function someTasks(s: InProcessCara, tag: string): Promise<void> {
    const done = await create(s, { payload: { systemEvent: { text: `${tag} ran` } }, idempotencyKey: `${tag}-done` });
    await create(s, { payload: { systemEvent: { text: `${tag} later` } }, nextRunAtMs: String(FAR), priority: 3, labels: { team: tag } });
    const cancelled = await create(s, { payload: { systemEvent: { text: `${tag} cancelled` } }, nextRunAtMs: String(FAR) });
    assert.equal((await connectJson(s, `${T}/CancelTask`, { id: cancelled }, s.token)).status, 200);
    await eventually(async () => {
      const got = await connectJson(s, `${T}/GetTask`, { id: done }, s.token);
      assert.equal(got.json.task.state, "TASK_STATE_DONE");
    });
  }

  test("an archive of a PostgreSQL deployment restores into a file deployment and back; another server on the database sees the restore", async () => {
    const url = await cluster.createDatabase();
    const p = await pgServer(url);
    const q = await pgServer(url);
    const f = await fileServer();
    try {
      await someTasks(p, "pg");
      // A schedule lives in the state dir's tasks/schedules.json: it travels beside the tasks.
      const schedule = await connectJson(
        p,
        "carapace.tasks.v1.SchedulesService/CreateSchedule",
        { name: "nightly", cron: "0 3 * * *", timezone: "UTC", template: { payload: { systemEvent: { text: "nightly" } } }, paused: true },
        p.token,
      );
      assert.equal(schedule.status, 200, JSON.stringify(schedule.json));
      const fromPg = await tasksOf(p);
      assert.equal(fromPg.length, 3);
      const archive = await backup(p, "pg.tar.gz");
      // The same format as the file store's: tasks/queue.json (no journal), beside schedules.json.
      const queue = await archivedQueue(archive);
      assert.deepEqual(
        (JSON.parse(queue.text) as { id: string }[]).map((t) => t.id).sort(),
        fromPg.map((t) => t.id),
      );
      assert.deepEqual(queue.tasksFiles, ["queue.json", "schedules.json"]);
      assert.equal((await cli(p, ["backup", "verify", archive])).code, 0);

      const intoFile = await cli(f, ["restore", archive, "--force"]);
      assert.equal(intoFile.code, 0, intoFile.stderr);
      assert.deepEqual(await tasksOf(f), fromPg);
      const schedules = await connectJson(f, "carapace.tasks.v1.SchedulesService/ListSchedules", {}, f.token);
      assert.deepEqual(
        schedules.json.schedules.map((x: { name: string }) => x.name),
        ["nightly"],
      );

      // Back: the file deployment's state (one more task) replaces the database's tasks exactly.
      await create(f, { payload: { systemEvent: { text: "added on file" } }, nextRunAtMs: String(FAR), idempotencyKey: "file-1" });
      await create(p, { payload: { systemEvent: { text: "made after the backup: goes" } }, nextRunAtMs: String(FAR) });
      const fromFile = await tasksOf(f);
      assert.equal(fromFile.length, 4);
      const back = await backup(f, "file.tar.gz");
      const dry = await cli(p, ["restore", back, "--dry-run", "--json"]);
      assert.equal(dry.code, 0, dry.stderr);
      const summary = JSON.parse(dry.stdout).tasks;
      assert.deepEqual([summary.addedCount, summary.removedCount, summary.unchangedCount], [1, 1, 3]);
      const intoPg = await cli(p, ["restore", back, "--force"]);
      assert.equal(intoPg.code, 0, intoPg.stderr);
      assert.deepEqual(await tasksOf(p), fromFile);
      await eventually(async () => assert.deepEqual(await tasksOf(q), fromFile));
      // Restored idempotency keys hold in the database: the same key gives the same task.
      const again = await connectJson(q, `${T}/CreateTask`, { payload: { systemEvent: { text: "x" } }, idempotencyKey: "file-1" }, q.token);
      assert.equal(again.json.task.id, fromFile.find((t) => t.idempotencyKey === "file-1")?.id);
      assert.equal(again.json.created, undefined);
    } finally {
      for (const s of [p, q, f]) await s.stop();
    }
    for (const s of [p, q]) assert.ok(!s.lines.some((l) => l.includes(cluster.password)), "the database password is in a log line");
  });

  test("a restore into PostgreSQL that the database refuses changes nothing: tasks, rows and files stay", async () => {
    const url = await cluster.createDatabase();
    const p = await pgServer(url);
    let f = await fileServer();
    try {
      await someTasks(p, "keep");
      const before = await tasksOf(p);
      const rowsBefore = await rows(url);
      // A file deployment whose queue has two tasks with one idempotency key (the file store loads
      // it; the database's unique key refuses it, after the swap and the deletes of the restore).
      await create(f, { payload: { systemEvent: { text: "a" } }, nextRunAtMs: String(FAR), idempotencyKey: "k1" });
      await create(f, { payload: { systemEvent: { text: "b" } }, nextRunAtMs: String(FAR), idempotencyKey: "k2" });
      const stateDir = f.stateDir;
      await f.stop();
      const queueFile = join(stateDir, "tasks", "queue.json");
      await writeFile(queueFile, (await readFile(queueFile, "utf8")).replace('"k2"', '"k1"'));
      f = await fileServer2(stateDir);
      const bad = await backup(f, "dup.tar.gz");
      const tasksDir = (await readdir(join(p.stateDir, "tasks"))).sort();

      const refused = await cli(p, ["restore", bad, "--force"]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /^Error: cannot replace the tasks in the task database postgres:\/\/cara:\*\*\*@127\.0\.0\.1:\d+\/\w+ \(duplicate key value violates unique constraint "cara_tasks_idempotency_key_key"\); the previous state was put back and nothing was changed \(Aborted\)\n$/,
      );
      assert.ok(!refused.stderr.includes(cluster.password));
      assert.deepEqual(await tasksOf(p), before);
      assert.deepEqual(await rows(url), rowsBefore);
      assert.deepEqual((await readdir(join(p.stateDir, "tasks"))).sort(), tasksDir);
      // The server goes on: its store was reopened.
      await create(p, { payload: { systemEvent: { text: "after" } }, nextRunAtMs: String(FAR) });
      assert.equal((await tasksOf(p)).length, before.length + 1);
    } finally {
      await p.stop();
      await f.stop();
    }
  });

  test("a restore whose database COMMIT fails does not claim nothing changed: the database may or may not have kept the archive's tasks", async () => {
    const url = await cluster.createDatabase();
    const p = await pgServer(url);
    const f = await fileServer();
    try {
      await create(p, { payload: { systemEvent: { text: "keep" } }, nextRunAtMs: String(FAR) });
      await create(f, { payload: { systemEvent: { text: "fail-at-commit" } }, nextRunAtMs: String(FAR) });
      const archive = await backup(f, "commit.tar.gz");
      // The database refuses the restore's transaction at its COMMIT (a deferred trigger): what a
      // connection lost while committing looks like to cara, whose outcome it cannot know.
      await failAtCommit(url);
      const refused = await cli(p, ["restore", archive, "--force"]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /^Error: cannot replace the tasks in the task database postgres:\/\/cara:\*\*\*@127\.0\.0\.1:\d+\/\w+: it failed while committing \(refused at commit\); the change may or may not have been kept; the previous files were put back, but the task database may or may not have kept the archive's tasks: run the restore again once the database is reachable \(or restore the pre-restore backup \S+ to go back\) \(Aborted\)\n$/,
      );
      assert.ok(!refused.stderr.includes("nothing was changed"));
      assert.ok(!refused.stderr.includes(cluster.password));
      // The server goes on: its store was reopened.
      await create(p, { payload: { systemEvent: { text: "after" } }, nextRunAtMs: String(FAR) });
    } finally {
      await p.stop();
      await f.stop();
    }
  });

  test("a backup taken while tasks are being created holds every creation whole or not at all", async () => {
    const url = await cluster.createDatabase();
    const p = await pgServer(url);
    try {
      let creating = true;
      let batches = 0;
      const creator = (async () => {
        while (creating) {
          const n = batches++;
          const tasks = Array.from({ length: 10 }, (_, i) => ({
            payload: { systemEvent: { text: `b${n}-${i}` } },
            nextRunAtMs: String(FAR),
            labels: { batch: String(n) },
          }));
          const res = await connectJson(p, `${T}/CreateTasks`, { tasks }, p.token);
          assert.equal(res.status, 200, JSON.stringify(res.json));
        }
        // Handled now, rethrown after the backups: a failed create must not be an unhandled rejection.
      })().then(
        () => undefined,
        (err: unknown) => err,
      );
      const archives: string[] = [];
      let failed: unknown;
      try {
        for (let i = 0; i < 3; i++) archives.push(await backup(p, `during-${i}.tar.gz`));
      } finally {
        creating = false;
        failed = await creator;
      }
      if (failed !== undefined) throw failed;
      for (const file of archives) {
        const records = JSON.parse((await archivedQueue(file)).text) as { labels?: { batch?: string } }[];
        const perBatch = new Map<string, number>();
        for (const r of records) perBatch.set(r.labels!.batch!, (perBatch.get(r.labels!.batch!) ?? 0) + 1);
        for (const [batch, count] of perBatch) assert.equal(count, 10, `batch ${batch} is in ${file} with ${count} of its 10 tasks`);
      }
      const last = JSON.parse((await archivedQueue(archives.at(-1)!)).text) as unknown[];
      assert.ok(last.length > 0 && last.length % 10 === 0, String(last.length));
    } finally {
      await p.stop();
    }
  });

  test("cara restore --offline into a stopped PostgreSQL deployment puts the archive's tasks in its database (a new one gets the schema)", async () => {
    const f = await fileServer();
    let archive: string;
    let fromFile: Seen[];
    try {
      await someTasks(f, "offline");
      fromFile = await tasksOf(f);
      archive = await backup(f, "offline.tar.gz");
    } finally {
      await f.stop();
    }
    const url = await cluster.createDatabase();
    const stateDir = join(await tempDir(), "state");
    const env = { CARAPACE_DATABASE_URL: url, CARAPACE_SERVER_SECRET: SECRET };
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(join(stateDir, "config.json"), JSON.stringify({ tasks: { store: "postgres" } }));
    const restored = await runCli(["restore", archive, "--offline", "--force", "--sections", "tasks", "--state-dir", stateDir], { env });
    assert.equal(restored.code, 0, restored.stderr);
    assert.ok(!restored.stdout.includes(cluster.password));
    // The tasks are in the database, not in the state dir's files.
    assert.deepEqual(
      (await readdir(join(stateDir, "tasks"))).filter((n) => n.startsWith("queue.")),
      [],
    );
    const p = await serveCara({ stateDir, env });
    try {
      assert.deepEqual(await tasksOf(p), fromFile);
    } finally {
      await p.stop();
    }
  });

  test("with the database down, a backup fails (unavailable, the password redacted) and leaves no archive", async () => {
    const own = await startPostgres();
    const url = await own.createDatabase();
    const p = await pgServer(url);
    try {
      await create(p, { payload: { systemEvent: { text: "x" } }, nextRunAtMs: String(FAR) });
      await own.stop();
      const dir = await tempDir();
      const out = join(dir, "down.tar.gz");
      const failed = await cli(p, ["backup", "--output", out, "--json"]);
      assert.equal(failed.code, 1);
      const error = JSON.parse(failed.stdout).error;
      assert.equal(error.code, "unavailable");
      assert.equal(error.details.reason, "TASK_STORE_UNAVAILABLE");
      assert.match(
        error.message,
        /^cannot read the tasks from the task database postgres:\/\/cara:\*\*\*@127\.0\.0\.1:\d+\/\w+ \(.*\); nothing was changed \(Unavailable\)$/,
      );
      assert.ok(!failed.stdout.includes(own.password));
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await p.stop();
      await own.stop();
    }
  });

  /** The rows of cara_tasks (id, version, record) as the database holds them. */
  async function rows(url: string): Promise<unknown[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query("SELECT id, version, record FROM cara_tasks ORDER BY id")).rows;
    } finally {
      await client.end();
    }
  }

  function fileServer2(stateDir: string) {
    return serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: SECRET } });
  }
}
