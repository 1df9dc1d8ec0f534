import { lstat, mkdir, chmod } from "node:fs/promises";
import { dirname } from "node:path";
import { DIR_MODE, ensurePrivateDir } from "./durable.js";
import { statePaths, type StatePaths } from "./paths.js";

/** The subdirectories a server needs; each must be a real directory (never a symlink). */
const SUBDIRS = ["authDir", "tasksDir", "updatesDir", "backupsDir", "logsDir"] as const;

export class StateDirError extends Error {}

/**
 * Prepares a state dir for a server: creates it (0700) with its subdirectories, refuses one
 * owned by another user or whose subdirectories are symlinks, and tightens modes to 0700.
 */
export async function prepareStateDir(stateDir: string): Promise<StatePaths> {
  const paths = statePaths(stateDir);
  await mkdir(dirname(stateDir), { recursive: true, mode: DIR_MODE });
  try {
    await mkdir(stateDir, { mode: DIR_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = await lstat(stateDir);
  if (st.isSymbolicLink()) {
    // A symlinked state dir itself is allowed only if it resolves to a directory we own.
    const { stat } = await import("node:fs/promises");
    const target = await stat(stateDir);
    if (!target.isDirectory()) throw new StateDirError(`state dir ${stateDir} is not a directory`);
    checkOwner(stateDir, target.uid);
  } else {
    if (!st.isDirectory()) throw new StateDirError(`state dir ${stateDir} exists and is not a directory`);
    checkOwner(stateDir, st.uid);
  }
  if ((st.mode & 0o077) !== 0) await chmod(stateDir, DIR_MODE);
  for (const key of SUBDIRS) {
    try {
      await ensurePrivateDir(paths[key]);
    } catch (err) {
      throw new StateDirError((err as Error).message);
    }
  }
  return paths;
}

function checkOwner(dir: string, uid: number): void {
  const me = process.geteuid?.();
  if (me !== undefined && uid !== me) {
    throw new StateDirError(
      `refusing to use state dir ${dir}: it is owned by uid ${uid}, but cara runs as uid ${me} ` +
        `(run cara as the owner, or choose another dir with --state-dir / CARAPACE_STATE_DIR)`,
    );
  }
}
