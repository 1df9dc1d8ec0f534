import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fsyncDir, withPath } from "./durable.js";

export class LockHeldError extends Error {
  constructor(
    readonly pid: number,
    readonly dir: string,
  ) {
    super(`another cara server (pid ${pid}) is using ${dir}`);
  }
}

export interface StateLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Locks this process holds: a lock file naming our own pid that is not here is stale (pid reuse, e.g. pid 1 in containers). */
const heldLocks = new Set<string>();

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const text = await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
    const pid = Number.parseInt(text.trim(), 10);
    return Number.isFinite(pid) ? pid : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Takes the state dir's exclusive server lock (`cara.lock`, holding the owner's pid). The lock
 * file is created complete (written to a temp file, then hard-linked into place, which fails if
 * it exists), so nobody ever reads a half-written lock. A lock left by a dead pid is taken over.
 */
export async function acquireStateLock(stateDir: string, lockPath = join(stateDir, "cara.lock")): Promise<StateLock> {
  const tmp = join(dirname(lockPath), `.cara.lock.${process.pid}.${randomBytes(4).toString("hex")}`);
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(`${process.pid}\n`);
    await handle.sync();
  } catch (err) {
    // E.g. a full disk: leave no empty temp file behind.
    await handle.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw withPath(err, lockPath);
  }
  await handle.close();
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, lockPath);
        await fsyncDir(dirname(lockPath));
        heldLocks.add(lockPath);
        return {
          path: lockPath,
          release: async () => {
            if (!heldLocks.delete(lockPath)) return;
            const owner = await readPid(lockPath).catch(() => undefined);
            if (owner === process.pid) await unlink(lockPath).catch(() => undefined);
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const owner = await readPid(lockPath);
      if (owner === undefined) continue; // released meanwhile: try again
      const live = owner === process.pid ? heldLocks.has(lockPath) : isAlive(owner);
      if (live) throw new LockHeldError(owner, stateDir);
      // Stale (dead owner or garbage): move it aside, then check that what we moved is the stale
      // lock we looked at and not a live one that another starter just took.
      const aside = `${lockPath}.stale-${process.pid}`;
      try {
        await rename(lockPath, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw err;
      }
      const moved = await readPid(aside);
      if (moved !== owner && moved !== undefined && isAlive(moved)) {
        await link(aside, lockPath).catch(() => undefined);
        await unlink(aside).catch(() => undefined);
        throw new LockHeldError(moved, stateDir);
      }
      await unlink(aside).catch(() => undefined);
    }
    const owner = (await readPid(lockPath)) ?? 0;
    throw new LockHeldError(owner, stateDir);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** The pid of a live server holding the lock of this state dir, if any (for offline tools). */
export async function lockOwner(stateDir: string, lockPath = join(stateDir, "cara.lock")): Promise<number | undefined> {
  const pid = await readPid(lockPath);
  return pid !== undefined && isAlive(pid) ? pid : undefined;
}
