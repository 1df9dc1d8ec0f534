import { join } from "node:path";
import { ScheduleStore } from "../tasks/schedule-store.js";
import { FileTaskStore } from "../tasks/store.js";
import { loadConfig } from "./config.js";

/** A staged state would not load: restoring it would leave a server that cannot start. */
export class StateNotLoadableError extends Error {}

/**
 * Proves that the durable files a restore is about to swap in load as a server would load them
 * (config.json against its schema, the task queue with its journal), writing nothing. `root` is
 * laid out as a state dir; `entries` are the top-level names that will be swapped in.
 */
export async function checkStateLoads(root: string, entries: readonly string[]): Promise<void> {
  const problems: string[] = [];
  if (entries.includes("config.json")) {
    await loadConfig(join(root, "config.json")).catch((err: Error) => problems.push(err.message));
  }
  if (entries.includes("tasks")) {
    await FileTaskStore.check(join(root, "tasks")).catch((err: Error) => problems.push(err.message));
    await ScheduleStore.check(join(root, "tasks")).catch((err: Error) => problems.push(err.message));
  }
  if (problems.length > 0) throw new StateNotLoadableError(problems.join("; "));
}
