// Which task store the runtime opens: the file store by default, PostgreSQL on request, and a
// missing or wrong database URL refused at start without echoing it.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import pino from "pino";
import { TaskDatabaseError } from "../../src/tasks/postgres/errors.js";
import { startTasks } from "../../src/tasks/runtime.js";
import { FileTaskStore } from "../../src/tasks/store.js";

const logger = pino({ level: "silent" });
const dir = () => mkdtemp(join(tmpdir(), "cara-store-choice-"));

test("without tasks.store the file store is used, even with CARAPACE_DATABASE_URL set", async () => {
  const runtime = await startTasks({ dir: await dir(), config: {}, env: { CARAPACE_DATABASE_URL: "postgres://cara:pw@127.0.0.1:1/x" }, logger });
  assert.ok(runtime.store instanceof FileTaskStore);
  await runtime.close(0);
});

test('tasks.store "postgres" without a URL, or with one that is not PostgreSQL\'s, is refused naming the setting', async () => {
  await assert.rejects(startTasks({ dir: await dir(), config: { tasks: { store: "postgres" } }, env: {}, logger }), (err: unknown) => {
    assert.ok(err instanceof TaskDatabaseError);
    assert.equal(
      err.message,
      'config tasks.store is "postgres" but no database URL is set: set CARAPACE_DATABASE_URL or tasks.postgres.url in config.json, then start again',
    );
    return true;
  });
  await assert.rejects(
    startTasks({ dir: await dir(), config: { tasks: { store: "postgres", postgres: { url: "mysql://u:hunter2@h/db" } } }, env: {}, logger }),
    {
      message: "config tasks.postgres.url is not a PostgreSQL URL (postgres://user:password@host:port/database); fix it, then start again",
    },
  );
  await assert.rejects(
    startTasks({ dir: await dir(), config: { tasks: { store: "postgres" } }, env: { CARAPACE_DATABASE_URL: "http://u:hunter2@h/db" }, logger }),
    {
      message: "CARAPACE_DATABASE_URL is not a PostgreSQL URL (postgres://user:password@host:port/database); fix it, then start again",
    },
  );
});
