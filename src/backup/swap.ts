import { constants } from "node:fs";
import { lstat, readdir, readFile, rename, rm, rmdir, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsyncDir, writeFileDurable } from "../state/durable.js";

/**
 * Swapping restored sections into the state dir so that a crash at any instant leaves either the
 * old state or the new one, never a mix. A durable marker `restore-swap.json` records the
 * intent before anything moves:
 *   phase "swapping": old entries are moved into `holding`, staged ones into place. A crash here
 *                     is rolled BACK on the next start (every entry returns from `holding`).
 *   phase "swapped":  every staged entry is in place (and was proven to load before the swap).
 *                     A crash here is rolled FORWARD (the old entries in `holding` are deleted).
 *   phase "rolling-back": the swapped-in state failed to load in the running server; the old
 *                     entries are on their way back. A crash here is rolled BACK.
 * The marker is removed last. Entries are top-level names in the state dir (`tasks`, `config.json`).
 */
export interface SwapMarker {
  phase: "swapping" | "swapped" | "rolling-back";
  /** Directory (inside the state dir) holding the previous entries. */
  holding: string;
  /** Directory (inside the state dir) holding the staged entries. */
  staged: string;
  entries: string[];
  /** The entries that exist in `staged` (the others are "empty in the backup"). */
  present: string[];
}

export const MARKER_NAME = "restore-swap.json";

/**
 * Test hook for crash tests (test/e2e/backup.test.ts), inert unless the environment variable
 * CARA_TEST_PAUSE_AT names this step as `swap:<step>`: then the process writes
 * `CARA_TEST_PAUSED_AT swap:<step>` to stderr and waits (a minute, or until killed) so that a test
 * can SIGKILL it at exactly that point. Steps: `marker` (intent recorded, nothing moved yet),
 * `moved:<entry>` (after each entry moved, e.g. `moved:tasks`), `swapped` (every entry in place,
 * old ones not yet deleted).
 */
async function testPause(step: string): Promise<void> {
  if (process.env.CARA_TEST_PAUSE_AT !== `swap:${step}`) return;
  process.stderr.write(`CARA_TEST_PAUSED_AT swap:${step}\n`);
  await new Promise((resolve) => setTimeout(resolve, 60_000));
}

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
 * restored section is empty": the live one is removed). The previous entries stay in `holding`
 * until the caller either keeps the new state (`finishSwap`) or puts the old one back
 * (`rollBackSwap`), e.g. when a store fails to load the new files. `afterMove` is a test hook
 * point called after each entry moves, so tests can crash there.
 */
export async function swapIntoPlace(
  stateDir: string,
  staged: string,
  holding: string,
  entries: string[],
  afterMove?: (entry: string) => Promise<void>,
): Promise<SwapMarker> {
  const markerPath = join(stateDir, MARKER_NAME);
  const present: string[] = [];
  for (const entry of entries) if (await exists(join(staged, entry))) present.push(entry);
  const marker: SwapMarker = { phase: "swapping", holding, staged, entries, present };
  await mkdir(holding, { recursive: true, mode: 0o700 });
  await writeFileDurable(markerPath, JSON.stringify(marker));
  await testPause("marker");
  for (const entry of entries) {
    const live = join(stateDir, entry);
    if (await exists(live)) await rename(live, join(holding, entry));
    const next = join(staged, entry);
    if (await exists(next)) await rename(next, live);
    await fsyncDir(stateDir);
    await afterMove?.(entry);
    await testPause(`moved:${entry}`);
  }
  await fsyncDir(holding).catch(() => undefined);
  const swapped: SwapMarker = { ...marker, phase: "swapped" };
  await writeFileDurable(markerPath, JSON.stringify(swapped));
  await testPause("swapped");
  return swapped;
}

/**
 * Undoes a swap: every entry moved to `holding` returns; staged ones are dropped. A swap that
 * had completed is first marked "rolling-back", so a crash in the middle still ends in the old state.
 */
export async function rollBackSwap(stateDir: string, marker: SwapMarker): Promise<void> {
  if (marker.phase === "swapped") await writeFileDurable(join(stateDir, MARKER_NAME), JSON.stringify({ ...marker, phase: "rolling-back" }));
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

/** Keeps the swapped-in state: the previous entries in `holding` are deleted, then the marker. */
export async function finishSwap(stateDir: string, marker: SwapMarker): Promise<void> {
  await rm(marker.holding, { recursive: true, force: true });
  await rm(marker.staged, { recursive: true, force: true });
  await rm(join(stateDir, MARKER_NAME), { force: true });
  await fsyncDir(stateDir);
}

/**
 * Called before the stores load (server start, offline restore), with the state lock held and no
 * restore running: completes or undoes a swap that a crash interrupted, then (unless
 * `removeLeftovers` is false) removes what a killed restore or backup leaves behind: staging
 * directories (`.restore-staging-*`, `.restore-ready-*`), empty holding directories, and in
 * `backups/` snapshot copies (`.snapshot-*`) and partial archives (`*.partial`). A holding
 * directory that still has content is kept (it may be the only copy of the previous state).
 * Returns what it did to the swap, for the log.
 */
export async function recoverInterruptedSwap(
  stateDir: string,
  options: { removeLeftovers?: boolean } = {},
): Promise<"none" | "rolled-back" | "rolled-forward"> {
  const outcome = await recoverSwap(stateDir);
  if (options.removeLeftovers !== false) await removeLeftovers(stateDir);
  return outcome;
}

async function removeLeftovers(stateDir: string): Promise<void> {
  const names = await readdir(stateDir).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(stateDir, name);
    if (/^\.restore-(staging|ready)-[0-9a-f]+$/.test(name)) await rm(path, { recursive: true, force: true }).catch(() => undefined);
    else if (/^\.restore-holding-[0-9a-f]+$/.test(name)) await rmdir(path).catch(() => undefined); // only when empty
  }
  const backups = join(stateDir, "backups");
  for (const name of await readdir(backups).catch(() => [] as string[])) {
    if (/^\.snapshot-[0-9a-f]+$/.test(name) || name.endsWith(".tar.gz.partial"))
      await rm(join(backups, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

async function recoverSwap(stateDir: string): Promise<"none" | "rolled-back" | "rolled-forward"> {
  let text: string;
  try {
    text = await readFile(join(stateDir, MARKER_NAME), { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "none";
    throw err;
  }
  let marker: SwapMarker;
  try {
    marker = JSON.parse(text) as SwapMarker;
  } catch {
    marker = {} as SwapMarker;
  }
  if (
    typeof marker !== "object" ||
    marker === null ||
    !Array.isArray(marker.entries) ||
    !Array.isArray(marker.present) ||
    typeof marker.holding !== "string" ||
    typeof marker.staged !== "string" ||
    dirname(marker.holding) !== stateDir ||
    dirname(marker.staged) !== stateDir
  ) {
    throw new Error(
      `restore marker ${join(stateDir, MARKER_NAME)} is damaged; inspect ${stateDir} by hand (the previous state may be in a .restore-* directory), then remove the marker`,
    );
  }
  if (marker.phase === "swapped") {
    await finishSwap(stateDir, marker);
    return "rolled-forward";
  }
  await rollBackSwap(stateDir, marker);
  return "rolled-back";
}
