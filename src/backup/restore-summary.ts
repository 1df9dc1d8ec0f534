/**
 * What a restore changes in terms an operator knows: tasks by id (and how many per state) and
 * config keys by path. Config values are never part of the result, so no secret can leak from it.
 */
import { readFile } from "node:fs/promises";
import { FileTaskStore } from "../tasks/store.js";
import { TASK_STATES, type TaskRecord } from "../tasks/model.js";

/** How many ids or key paths each list holds; the counts are exact. */
export const SUMMARY_LIST_LIMIT = 20;

export interface TaskStateChange {
  state: string;
  before: number;
  after: number;
}

/** Ids or key paths added, removed and changed: each list sorted and cut at SUMMARY_LIST_LIMIT, the counts exact. */
export interface ListChanges {
  added: string[];
  removed: string[];
  changed: string[];
  addedCount: number;
  removedCount: number;
  changedCount: number;
}

export interface TaskChanges extends ListChanges {
  unchangedCount: number;
  /** Every state with a task before or after, in the model's order. */
  states: TaskStateChange[];
  /** The live queue could not be read (e.g. it is corrupt): every restored task counts as added. */
  currentUnreadable: boolean;
}

/** Dotted key paths (`server.port`), sorted. Values are never included. */
export type ConfigChanges = ListChanges;

const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );

function listChanges(added: string[], removed: string[], changed: string[]): ListChanges {
  const limited = (list: string[]) => list.sort().slice(0, SUMMARY_LIST_LIMIT);
  return {
    added: limited(added),
    removed: limited(removed),
    changed: limited(changed),
    addedCount: added.length,
    removedCount: removed.length,
    changedCount: changed.length,
  };
}

/**
 * Tasks the restore adds, removes and changes: `current` is the live tasks dir (or the tasks of
 * the database, with the PostgreSQL store), `incoming` the
 * staged one. Undefined when the staged queue does not load (the restore's load check refuses it
 * and says why).
 */
export async function taskChanges(current: string | readonly TaskRecord[], incoming: string): Promise<TaskChanges | undefined> {
  let currentUnreadable = false;
  const before =
    typeof current !== "string"
      ? [...current]
      : await FileTaskStore.readRecords(current).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") currentUnreadable = true;
          return [] as TaskRecord[];
        });
  const after = await FileTaskStore.readRecords(incoming).catch(() => undefined);
  if (!after) return undefined;
  const old = new Map(before.map((t) => [t.id, stable(t)]));
  const added: string[] = [];
  const changed: string[] = [];
  let unchanged = 0;
  for (const t of after) {
    const had = old.get(t.id);
    if (had === undefined) added.push(t.id);
    else if (had !== stable(t)) changed.push(t.id);
    else unchanged++;
  }
  const kept = new Set(after.map((t) => t.id));
  const removed = before.filter((t) => !kept.has(t.id)).map((t) => t.id);
  const count = (list: TaskRecord[], state: string) => list.filter((t) => t.state === state).length;
  const states = TASK_STATES.map((state) => ({ state, before: count(before, state), after: count(after, state) })).filter((s) => s.before + s.after > 0);
  return {
    ...listChanges(added, removed, changed),
    unchangedCount: unchanged,
    states,
    currentUnreadable,
  };
}

/** Leaf key paths of a JSON value with a stable rendering of each value (arrays are leaves). */
function leaves(value: unknown, prefix: string, out: Map<string, string>): Map<string, string> {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0 && prefix) out.set(prefix, "{}");
    for (const [k, v] of entries) leaves(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.set(prefix, stable(value));
  }
  return out;
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as unknown;
  } catch {
    // Missing or unreadable: every key of the other side counts as added or removed.
    return {};
  }
}

/** Config key paths the restore adds, removes and changes (`current` live config.json, `incoming` staged). */
export async function configChanges(current: string, incoming: string): Promise<ConfigChanges> {
  const before = leaves(await readJson(current), "", new Map());
  const after = leaves(await readJson(incoming), "", new Map());
  const added = [...after.keys()].filter((k) => !before.has(k));
  const removed = [...before.keys()].filter((k) => !after.has(k));
  const changed = [...after.keys()].filter((k) => before.has(k) && before.get(k) !== after.get(k));
  return listChanges(added, removed, changed);
}

/** True for a copy the task or schedule store kept of a corrupt file (`queue.json.corrupt.<ms>`). */
export function isCorruptCopy(name: string): boolean {
  return /\.corrupt\.\d+$/.test(name);
}
