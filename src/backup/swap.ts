import { constants } from "node:fs";
import { lstat, readFile, rename, rm, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsyncDir, writeFileDurable } from "../state/durable.js";

/**
 * Swapping restored sections into the state dir so that a crash at any instant leaves either the
 * old state or the new one, never a mix. A durable marker `restore-swap.json` records the
 * intent before anything moves:
 *   phase "swapping": old entries are moved into `holding`, staged ones into place. A crash here
 *                     is rolled BACK on the next start (every entry returns from `holding`).
 *   phase "swapped":  every staged entry is in place. A crash here is rolled FORWARD (the old
 *                     entries in `holding` are deleted).
 * The marker is removed last. Entries are top-level names in the state dir (`tasks`, `config.json`).
 */
export interface SwapMarker {
  phase: "swapping" | "swapped";
  /** Directory (inside the state dir) holding the previous entries. */
  holding: string;
  /** Directory (inside the state dir) holding the staged entries. */
  staged: string;
  entries: string[];
  /** The entries that exist in `staged` (the others are "empty in the backup"). */
  present: string[];
}

export const MARKER_NAME = "restore-swap.json";

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/**
 * Swaps `entries` from `staged` into `stateDir` (an entry missing from `staged` means "the
 * restored section is empty": the live one is removed). `afterMove` is a test hook point called
 * after each entry moves, so tests can crash there.
 */
export async function swapIntoPlace(stateDir: string, staged: string, holding: string, entries: string[], afterMove?: (entry: string) => Promise<void>): Promise<void> {
  const markerPath = join(stateDir, MARKER_NAME);
  const present: string[] = [];
  for (const entry of entries) if (await exists(join(staged, entry))) present.push(entry);
  const marker: SwapMarker = { phase: "swapping", holding, staged, entries, present };
  await mkdir(holding, { recursive: true, mode: 0o700 });
  await writeFileDurable(markerPath, JSON.stringify(marker));
  for (const entry of entries) {
    const live = join(stateDir, entry);
    if (await exists(live)) await rename(live, join(holding, entry));
    const next = join(staged, entry);
    if (await exists(next)) await rename(next, live);
    await fsyncDir(stateDir);
    await afterMove?.(entry);
  }
  await fsyncDir(holding).catch(() => undefined);
  await writeFileDurable(markerPath, JSON.stringify({ ...marker, phase: "swapped" }));
  await finishSwap(stateDir, { ...marker, phase: "swapped" });
}

/** Undoes a swap in progress: every entry moved to `holding` returns; staged ones are dropped. */
export async function rollBackSwap(stateDir: string, marker: SwapMarker): Promise<void> {
  for (const entry of marker.entries) {
    const held = join(marker.holding, entry);
    const live = join(stateDir, entry);
    if (await exists(held)) {
      if (await exists(live)) await rm(live, { recursive: true, force: true });
      await rename(held, live);
    } else if ((await exists(live)) && (await movedIn(marker, entry))) {
      // Nothing was held, so there was no live entry before: this one came from the staging.
      await rm(live, { recursive: true, force: true });
    }
  }
  await fsyncDir(stateDir);
  await rm(marker.holding, { recursive: true, force: true });
  await rm(marker.staged, { recursive: true, force: true });
  await rm(join(stateDir, MARKER_NAME), { force: true });
  await fsyncDir(stateDir);
}

/** Whether the staged copy of `entry` was already moved to its live name. */
async function movedIn(marker: SwapMarker, entry: string): Promise<boolean> {
  return marker.present.includes(entry) && !(await exists(join(marker.staged, entry)));
}

async function finishSwap(stateDir: string, marker: SwapMarker): Promise<void> {
  await rm(marker.holding, { recursive: true, force: true });
  await rm(marker.staged, { recursive: true, force: true });
  await rm(join(stateDir, MARKER_NAME), { force: true });
  await fsyncDir(stateDir);
}

/**
 * Called before the stores load (server start, offline restore): completes or undoes a swap that
 * a crash interrupted. Returns what it did, for the log.
 */
export async function recoverInterruptedSwap(stateDir: string): Promise<"none" | "rolled-back" | "rolled-forward"> {
  let text: string;
  try {
    text = await readFile(join(stateDir, MARKER_NAME), { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "none";
    throw err;
  }
  const marker = JSON.parse(text) as SwapMarker;
  if (!Array.isArray(marker.entries) || !Array.isArray(marker.present) || typeof marker.holding !== "string" || typeof marker.staged !== "string" || dirname(marker.holding) !== stateDir || dirname(marker.staged) !== stateDir) {
    throw new Error(`restore marker ${join(stateDir, MARKER_NAME)} is damaged; inspect ${stateDir} by hand (the previous state may be in a .restore-* directory), then remove the marker`);
  }
  if (marker.phase === "swapped") {
    await finishSwap(stateDir, marker);
    return "rolled-forward";
  }
  await rollBackSwap(stateDir, marker);
  return "rolled-back";
}
