/**
 * When a store's next claimable task can come, so that the worker's poll (twice a second, on
 * every server of a shared queue) does not walk every task each time: with 12,000 tasks due the
 * next day that walk was 16% of a server's CPU under a create load, and it grows with the queue.
 *
 * A walk that finds nothing claimable remembers the earliest time something will be (a run-at,
 * a lease's end); polls before that time answer at once. Every change the store applies lowers
 * that time to the changed task's own (`lower`), so a task created due now, or moved earlier, is
 * seen at the next poll as before. Tasks the worker runs itself (`skip`) can leave that set
 * without a change of their record; a full walk at least every `rewalkMs` catches those.
 */
import type { TaskRecord } from "./model.js";

export class ClaimableBound {
  /** Nothing is claimable before this time (unless a change lowered it since). */
  private notBefore = -Infinity;
  private walkedAt = -Infinity;

  constructor(private readonly rewalkMs = 5_000) {}

  /** A task changed and may be claimable from `at` (undefined: not until it changes again). */
  lower(at: number | undefined): void {
    if (at !== undefined && at < this.notBefore) this.notBefore = at;
  }

  /** The tasks were replaced wholesale (a reload): the next check walks. */
  reset(): void {
    this.notBefore = -Infinity;
  }

  /** Whether a task of `tasks` other than those in `skip` is claimable at `now` (claimableAt(task) <= now). */
  hasClaimable(now: number, skip: ReadonlySet<string>, tasks: Iterable<TaskRecord>, claimableAt: (task: TaskRecord) => number | undefined): boolean {
    if (now < this.notBefore && now - this.walkedAt < this.rewalkMs) return false;
    this.walkedAt = now;
    let earliest = Infinity;
    for (const task of tasks) {
      const at = claimableAt(task);
      if (at === undefined) continue;
      if (skip.has(task.id)) {
        // The worker's own: not claimable while it runs them; a later time still bounds the wait.
        if (at > now && at < earliest) earliest = at;
        continue;
      }
      if (at <= now) {
        this.notBefore = -Infinity;
        return true;
      }
      if (at < earliest) earliest = at;
    }
    this.notBefore = earliest;
    return false;
  }
}
