// The shared TaskStore behaviour (store-contract.ts) on the file store.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileTaskStore } from "../../src/tasks/store.js";
import type { TaskStore } from "../../src/tasks/task-store.js";
import { storeContract, type StoreOptions } from "./store-contract.js";

const dirs = new WeakMap<TaskStore, string>();
const open = async (dir: string, options: StoreOptions = {}) => {
  const store = await FileTaskStore.open({ dir, ...options });
  dirs.set(store, dir);
  return store;
};

storeContract("file store", {
  fresh: async (options) => open(await mkdtemp(join(tmpdir(), "cara-file-store-")), options),
  reopen: async (store, options) => open(dirs.get(store)!, options),
});
