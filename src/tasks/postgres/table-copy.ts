/**
 * The whole task table at once: read as one snapshot (backups, `cara tasks migrate --to file`)
 * and replaced in one transaction (restores, `cara tasks migrate --to postgres`). Both work on a
 * connection of their own, apart from a store's own transactions, so they also run while the
 * store is suspended for a restore.
 */
import type pg from "pg";
import { recordFromDisk, type TaskRecord } from "../model.js";
import { plainNotices } from "./create-notices.js";
import { CHANGES_CHANNEL, columns, CREATE_LOCK_KEY, INSERT_SQL, RESET_ROOM_SQL } from "./rows.js";
import { inTransaction } from "./transaction.js";

/** A row of the table cannot be used: the snapshot fails rather than leave a task out. */
export class UnusableRowError extends Error {}

/** The target already has tasks and the caller asked to keep them (no --replace). */
export class TableNotEmptyError extends Error {
  constructor(readonly count: number) {
    super(`the task database already holds ${count} task${count === 1 ? "" : "s"}`);
  }
}

/**
 * Every task, read in one `REPEATABLE READ, READ ONLY` transaction: the rows as of one instant,
 * whatever commits meanwhile (a transaction that created several tasks is in it whole or not at
 * all). Ordered by creation time, then id, so the same table gives the same queue.json.
 */
export async function readAllTasks(client: pg.ClientBase): Promise<TaskRecord[]> {
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  try {
    const res = await client.query<{ record: unknown }>("SELECT record FROM cara_tasks ORDER BY created_at_ms, id");
    await client.query("COMMIT");
    return res.rows.map((row) => {
      const rec = recordFromDisk(row.record);
      if (typeof rec === "string") throw new UnusableRowError(`a row of table cara_tasks cannot be used (${rec}); repair or delete that row`);
      return rec;
    });
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/** How many tasks the table holds. */
export async function countTasks(client: pg.ClientBase): Promise<number> {
  const res = await client.query<{ n: string }>("SELECT count(*) AS n FROM cara_tasks");
  return Number(res.rows[0]!.n);
}

/**
 * Replaces every row with `records` in one transaction (resolves after COMMIT; on a failure before
 * COMMIT it rolls back and the table is as it was; a failure of the COMMIT itself throws
 * CommitOutcomeUnknownError: the table may hold either). The table is locked against other writers meanwhile,
 * and the stores of other servers are told every id that went or came (NOTIFY, delivered at
 * commit), so they drop and read back exactly those. With `requireEmpty`, a table that holds a
 * task fails with TableNotEmptyError (checked under the lock). Returns how many rows went.
 */
export async function replaceAllTasks(
  client: pg.ClientBase,
  records: readonly TaskRecord[],
  options: { origin: string; requireEmpty?: boolean },
): Promise<{ removed: number }> {
  return inTransaction(client, async () => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [CREATE_LOCK_KEY]);
    await client.query("LOCK TABLE cara_tasks IN EXCLUSIVE MODE");
    if (options.requireEmpty) {
      const count = await countTasks(client);
      if (count > 0) throw new TableNotEmptyError(count);
    }
    const removed = (await client.query<{ id: string }>("DELETE FROM cara_tasks RETURNING id")).rows.map((r) => r.id);
    // In slices: one statement's parameters stay a few MiB whatever the queue's size.
    for (let i = 0; i < records.length; i += 1000) await client.query(INSERT_SQL, columns(records.slice(i, i + 1000)));
    await client.query(RESET_ROOM_SQL);
    const ids = [...new Set([...removed, ...records.map((r) => r.id)])];
    for (const payload of plainNotices(options.origin, ids)) await client.query("SELECT pg_notify($1, $2)", [CHANGES_CHANNEL, payload]);
    return { removed: removed.length };
  });
}
