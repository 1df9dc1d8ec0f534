// The shared TaskStore behaviour (store-contract.ts) on the PostgreSQL store, against a throwaway
// cluster (test/helpers/postgres.ts); skipped, saying why, when PostgreSQL is not installed.
import { after, before, test } from "node:test";
import { PgTaskStore } from "../../src/tasks/postgres/pg-store.js";
import type { TaskStore } from "../../src/tasks/task-store.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { storeContract, type StoreOptions } from "./store-contract.js";

const missing = postgresUnavailable();
if (missing !== undefined) {
  test("PostgreSQL store contract", { skip: `skipped: ${missing}` }, () => undefined);
} else {
  let cluster: TestPostgres;
  const urls = new WeakMap<TaskStore, string>();
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });
  const open = async (url: string, options: StoreOptions = {}) => {
    const store = await PgTaskStore.open({ url, ...options });
    urls.set(store, url);
    return store;
  };
  storeContract("postgres store", {
    fresh: async (options) => open(await cluster.createDatabase(), options),
    reopen: async (store, options) => open(urls.get(store)!, options),
  });
}
