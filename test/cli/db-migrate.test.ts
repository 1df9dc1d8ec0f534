// `cara db migrate`: against a throwaway PostgreSQL cluster (test/helpers/postgres.ts), in
// process; skipped, saying why, when PostgreSQL is not installed. The file-store case needs no
// database and always runs.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";

async function stateDirWith(config: object): Promise<string> {
  const dir = join(await tempDir(), "state");
  await mkdir(dir, { mode: 0o700 });
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

test("with the file store there is no database to migrate: exit 1, nothing done", async () => {
  const dir = await stateDirWith({});
  assert.deepEqual(await runCli(["db", "migrate", "--state-dir", dir, "--dry-run"]), {
    code: 1,
    stdout: "",
    stderr: 'Error: the state dir\'s config keeps tasks in files (tasks.store is not "postgres"): there is no database to migrate\n',
  });
  const json = await runCli(["db", "migrate", "--state-dir", dir, "--json"]);
  assert.equal(json.code, 1);
  assert.deepEqual(JSON.parse(json.stdout), {
    error: {
      code: "failed_precondition",
      message: 'the state dir\'s config keeps tasks in files (tasks.store is not "postgres"): there is no database to migrate',
      details: {},
    },
  });
});

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("cara db migrate against PostgreSQL", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("--dry-run lists the pending migrations and applies nothing; then migrate applies them; then nothing is left", async () => {
    const url = await cluster.createDatabase("dbmigrate1");
    const shown = url.replace(`:${encodeURIComponent(cluster.password)}@`, ":***@");
    const dir = await stateDirWith({ tasks: { store: "postgres", postgres: { url } } });
    const head = `Database ${shown}: schema version 0 (this cara: 4)\n`;
    const dry = await runCli(["db", "migrate", "--state-dir", dir, "--dry-run"]);
    assert.deepEqual(dry, {
      code: 0,
      stdout: `${head}Pending migrations:\n  1  tasks\n  2  task count\n  3  claim indexes\n  4  task room shards\nDry run: nothing applied. Run 'cara db migrate' to apply them.\n`,
      stderr: "",
    });
    const again = await runCli(["db", "migrate", "--state-dir", dir, "--dry-run", "--json"]);
    assert.deepEqual(JSON.parse(again.stdout), {
      database: shown,
      version: 0,
      latest: 4,
      pending: [
        { version: 1, name: "tasks" },
        { version: 2, name: "task count" },
        { version: 3, name: "claim indexes" },
        { version: 4, name: "task room shards" },
      ],
      applied: [],
      dryRun: true,
    });
    assert.deepEqual(await runCli(["db", "migrate", "--state-dir", dir]), {
      code: 0,
      stdout: `${head}Applied:\n  1  tasks\n  2  task count\n  3  claim indexes\n  4  task room shards\nSchema version now 4.\n`,
      stderr: "",
    });
    assert.deepEqual(await runCli(["db", "migrate", "--state-dir", dir]), {
      code: 0,
      stdout: `Database ${shown}: schema version 4 (this cara: 4)\nNothing to migrate: the schema is up to date.\n`,
      stderr: "",
    });
  });

  test("CARAPACE_DATABASE_URL wins over the config; an unreachable database fails without its password", async () => {
    const url = await cluster.createDatabase("dbmigrate2");
    const dir = await stateDirWith({ tasks: { store: "postgres", postgres: { url: "postgres://nobody:x@127.0.0.1:1/none" } } });
    const viaEnv = await runCli(["db", "migrate", "--state-dir", dir, "--json"], { env: { CARAPACE_DATABASE_URL: url } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.deepEqual(JSON.parse(viaEnv.stdout).applied, [1, 2, 3, 4]);
    const closed = url.replace(/:\d+\//, ":1/");
    const failed = await runCli(["db", "migrate", "--state-dir", dir, "--dry-run"], { env: { CARAPACE_DATABASE_URL: closed } });
    assert.equal(failed.code, 1);
    assert.equal(failed.stdout, "");
    assert.match(failed.stderr, /^Error: cannot reach the task database postgres:\/\/cara:\*\*\*@127\.0\.0\.1:1\/dbmigrate2 \(.+\); nothing was changed\n$/);
    assert.ok(!failed.stderr.includes(cluster.password));
  });
}
