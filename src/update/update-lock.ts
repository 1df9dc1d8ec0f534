import { join } from "node:path";
import { acquireStateLock, LockHeldError, lockOwner, type StateLock } from "../state/lock.js";

export class UpdateBusyError extends Error {
  constructor(readonly pid: number) {
    super(`an update is already in progress (pid ${pid})`);
  }
}

/**
 * The exclusive update lock `<state>/updates/update.lock` (owner pid inside; a dead owner's lock
 * is taken over), plus an in-process flag so two calls in one server do not race.
 */
export class UpdateLock {
  private busy = false;

  constructor(private readonly updatesDir: string) {}

  get path(): string {
    return join(this.updatesDir, "update.lock");
  }

  /** Whether some process (this one included) holds the lock now. */
  async held(): Promise<boolean> {
    if (this.busy) return true;
    return (await lockOwner(this.updatesDir, this.path).catch(() => undefined)) !== undefined;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new UpdateBusyError(process.pid);
    this.busy = true;
    let lock: StateLock;
    try {
      lock = await acquireStateLock(this.updatesDir, this.path);
    } catch (err) {
      this.busy = false;
      if (err instanceof LockHeldError) throw new UpdateBusyError(err.pid);
      throw err;
    }
    try {
      return await fn();
    } finally {
      await lock.release();
      this.busy = false;
    }
  }
}
