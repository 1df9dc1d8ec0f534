// `cara tasks migrate --to postgres|file` (in process, with real servers started on the result):
// refusals that need no database always run; the round trip and the database refusals run against
// a throwaway PostgreSQL cluster (test/helpers/postgres.ts) and are skipped, saying why, without it.
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connectJson, serveCara, tempDir, type InProcessCara } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

const T = "carapace.tasks.v1.TasksService";
const FAR = Date.now() + 86_400_000;

async function stateDirWith(config?: object): Promise<string> {
  const dir = join(await tempDir(), "state");
  await mkdir(dir, { mode: 0o700 });
  if (config) await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

async function tasksOf(s: InProcessCara): Promise<unknown[]> {
  const res = await connectJson(s, `${T}/ListTasks`, { limit: 1000 }, s.token);
  assert.equal(res.status, 200, JSON.stringify(res.json));
  return ((res.json.tasks ?? []) as { id: string }[]).sort((a, b) => (a.id < b.id ? -1 : 1));
}

async function create(s: InProcessCara, body: object): Promise<string> {
  const res = await connectJson(s, `${T}/CreateTask`, body, s.token);
  assert.equal(res.status, 200, JSON.stringify(res.json));
  return res.json.task.id as string;
}

test("refusals that need no database: no --to, an unknown --to, already there, no URL, no state dir, a server holding the state dir", async () => {
  const dir = await stateDirWith();
  const noTo = await runCli(["tasks", "migrate", "--state-dir", dir]);
  assert.equal(noTo.code, 2);
  assert.match(noTo.stderr, /^Error: --to postgres or --to file: which store should the tasks move to\?\n/);
  const wrongTo = await runCli(["tasks", "migrate", "--to", "mysql", "--state-dir", dir]);
  assert.equal(wrongTo.code, 2);
  assert.match(wrongTo.stderr, /^Error: --to "mysql": the tasks can move to postgres or file\n/);
  assert.deepEqual(await runCli(["tasks", "migrate", "--to", "file", "--state-dir", dir]), {
    code: 1,
    stdout: "",
    stderr: `Error: the tasks are already in the file store (tasks.store in ${dir}/config.json): nothing to migrate\n`,
  });
  assert.deepEqual(await runCli(["task", "migrate", "--to", "postgres", "--state-dir", dir]), {
    code: 1,
    stdout: "",
    stderr: "Error: no database URL: set CARAPACE_DATABASE_URL (or tasks.postgres.url in config.json), then run again\n",
  });
  const json = await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", dir, "--json"]);
  assert.equal(json.code, 1);
  assert.deepEqual(JSON.parse(json.stdout), {
    error: {
      code: "failed_precondition",
      message: "no database URL: set CARAPACE_DATABASE_URL (or tasks.postgres.url in config.json), then run again",
      details: {},
    },
  });
  const gone = join(dir, "nope");
  assert.deepEqual(await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", gone]), {
    code: 1,
    stdout: "",
    stderr: `Error: there is no state dir at ${gone}\n`,
  });
  const s = await serveCara({ stateDir: dir });
  try {
    assert.deepEqual(
      await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", dir], { env: { CARAPACE_DATABASE_URL: "postgres://x@127.0.0.1:1/x" } }),
      {
        code: 1,
        stdout: "",
        stderr: `Error: another cara server (pid ${process.pid}) is using ${dir}: stop it first (kill -TERM ${process.pid}, or stop its service; it finishes running attempts and exits), then run cara tasks migrate again\n`,
      },
    );
  } finally {
    await s.stop();
  }
  assert.equal(await readFile(join(dir, "config.json"), "utf8").catch(() => "none"), "none", "config.json was not written");
});

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("cara tasks migrate against PostgreSQL", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("file -> postgres -> file: every task moves as it is, config switches, a server starts on each result", async () => {
    const url = await cluster.createDatabase();
    const shown = url.replace(`:${encodeURIComponent(cluster.password)}@`, ":***@");
    const env = { CARAPACE_DATABASE_URL: url };
    const dir = await stateDirWith({ logLevel: "info" });
    let s = await serveCara({ stateDir: dir });
    await create(s, { payload: { systemEvent: { text: "later" } }, nextRunAtMs: String(FAR), idempotencyKey: "k-1", labels: { team: "a" } });
    const cancelled = await create(s, { payload: { systemEvent: { text: "no" } }, nextRunAtMs: String(FAR) });
    await connectJson(s, `${T}/CancelTask`, { id: cancelled }, s.token);
    const fromFile = await tasksOf(s);
    await s.stop();

    const dry = await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", dir, "--dry-run", "--json"], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout), {
      from: "file",
      to: "postgres",
      stateDir: dir,
      database: shown,
      tasks: 2,
      states: { queued: 1, running: 0, blocked: 0, retry_wait: 0, done: 0, failed: 0, cancelled: 1 },
      targetTasks: 0,
      dryRun: true,
      config: join(dir, "config.json"),
      sourceKept: `${dir}/tasks/queue.json and ${dir}/tasks/queue.journal`,
    });
    assert.deepEqual(JSON.parse(await readFile(join(dir, "config.json"), "utf8")), { logLevel: "info" }, "a dry run changes nothing");

    const moved = await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", dir], { env });
    assert.deepEqual(moved, {
      code: 0,
      stdout:
        `Moved 2 tasks from the file store (${dir}/tasks) to PostgreSQL (${shown}): 1 queued, 1 cancelled.\n` +
        `${dir}/config.json: tasks.store is now "postgres"; start the server to use it.\n` +
        `The file store's copy stays in ${dir}/tasks/queue.json and ${dir}/tasks/queue.journal (unused); to go back: cara tasks migrate --to file --replace\n`,
      stderr: "",
    });
    assert.deepEqual(JSON.parse(await readFile(join(dir, "config.json"), "utf8")), { logLevel: "info", tasks: { store: "postgres" } });
    s = await serveCara({ stateDir: dir, env });
    assert.deepEqual(await tasksOf(s), fromFile);
    await create(s, { payload: { systemEvent: { text: "made in postgres" } }, nextRunAtMs: String(FAR) });
    const fromPg = await tasksOf(s);
    await s.stop();

    // Going back: the file store's old copy is still there, so the target is not empty.
    const refused = await runCli(["tasks", "migrate", "--to", "file", "--state-dir", dir], { env });
    assert.deepEqual(refused, {
      code: 1,
      stdout: "",
      stderr: `Error: the file store in ${dir}/tasks already holds 2 tasks: pass --replace to replace them with the 3 tasks of the postgres store (take a backup first), or empty it\n`,
    });
    const back = await runCli(["tasks", "migrate", "--to", "file", "--replace", "--state-dir", dir, "--json"], { env });
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(
      (({ from, to, tasks, targetTasks, dryRun, sourceKept }) => ({ from, to, tasks, targetTasks, dryRun, sourceKept }))(JSON.parse(back.stdout)),
      { from: "postgres", to: "file", tasks: 3, targetTasks: 2, dryRun: false, sourceKept: `the task database ${shown}` },
    );
    assert.deepEqual(JSON.parse(await readFile(join(dir, "config.json"), "utf8")), { logLevel: "info", tasks: { store: "file" } });
    assert.equal(await readFile(join(dir, "tasks", "queue.journal"), "utf8"), "");
    s = await serveCara({ stateDir: dir });
    try {
      assert.deepEqual(await tasksOf(s), fromPg);
    } finally {
      await s.stop();
    }
    for (const out of [dry, moved, refused, back]) assert.ok(!(out.stdout + out.stderr).includes(cluster.password), "the password was printed");
  });

  test("a database that already holds tasks is refused without --replace; nothing changes", async () => {
    const url = await cluster.createDatabase();
    const env = { CARAPACE_DATABASE_URL: url };
    const shown = url.replace(`:${encodeURIComponent(cluster.password)}@`, ":***@");
    const other = await serveCara({ config: { tasks: { store: "postgres" } }, env });
    await create(other, { payload: { systemEvent: { text: "theirs" } }, nextRunAtMs: String(FAR) });
    const theirs = await tasksOf(other);
    const dir = await stateDirWith();
    const s = await serveCara({ stateDir: dir });
    await create(s, { payload: { systemEvent: { text: "mine" } }, nextRunAtMs: String(FAR) });
    await s.stop();
    const files = (await readdir(join(dir, "tasks"))).sort();
    try {
      assert.deepEqual(await runCli(["tasks", "migrate", "--to", "postgres", "--state-dir", dir], { env }), {
        code: 1,
        stdout: "",
        stderr: `Error: the task database ${shown} already holds 1 task: pass --replace to replace them with the 1 task of the file store (take a backup first), or empty it\n`,
      });
      assert.equal(await readFile(join(dir, "config.json"), "utf8").catch(() => "none"), "none");
      assert.deepEqual((await readdir(join(dir, "tasks"))).sort(), files);
      assert.deepEqual(await tasksOf(other), theirs);
    } finally {
      await other.stop();
    }
  });

  test("while a server runs on the database, moving its tasks out or replacing them is refused (a task would run twice); nothing changes", async () => {
    const url = await cluster.createDatabase();
    const env = { CARAPACE_DATABASE_URL: url };
    const shown = url.replace(`:${encodeURIComponent(cluster.password)}@`, ":***@");
    const other = await serveCara({ config: { tasks: { store: "postgres" } }, env });
    try {
      await create(other, { payload: { systemEvent: { text: "theirs" } }, nextRunAtMs: String(FAR) });
      const theirs = await tasksOf(other);
      const refusal = {
        code: 1,
        stdout: "",
        stderr: `Error: 1 cara server is running on the task database ${shown} and running its tasks: stop it first (moving the tasks meanwhile would run tasks twice); nothing was changed\n`,
      };
      const onPg = await stateDirWith({ tasks: { store: "postgres" } });
      assert.deepEqual(await runCli(["tasks", "migrate", "--to", "file", "--state-dir", onPg], { env }), refusal);
      assert.deepEqual(JSON.parse(await readFile(join(onPg, "config.json"), "utf8")), { tasks: { store: "postgres" } });
      const onFile = await stateDirWith();
      assert.deepEqual(await runCli(["tasks", "migrate", "--to", "postgres", "--replace", "--state-dir", onFile], { env }), refusal);
      assert.equal(await readFile(join(onFile, "config.json"), "utf8").catch(() => "none"), "none");
      assert.deepEqual(await tasksOf(other), theirs);
    } finally {
      await other.stop();
    }
  });
}
