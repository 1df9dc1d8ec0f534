/**
 * What every writer of table `cara_tasks` shares: the columns a record fills, the insert, the
 * change notices and the lock creates take. Used by the store (pg-store.ts) and by the
 * whole-table copies of backup, restore and `cara tasks migrate` (table-copy.ts).
 */
import { orderedRecord, type TaskRecord } from "../model.js";

/** The channel every store of a database listens on; notices are described in create-notices.ts. */
export const CHANGES_CHANNEL = "cara_tasks";
/** Held (per transaction) by creates, so capacity and idempotency keys are exact across servers. */
export const CREATE_LOCK_KEY = 7_246_119_002;

const INSERT_COLUMNS = "id, state, priority, next_run_at_ms, created_at_ms, updated_at_ms, finished_at_ms, idempotency_key, record";
const UNNEST_COLUMNS = "unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::jsonb[])";

/** Inserts the rows given as the column arrays of `columns()`; returns each row's id and version. */
export const INSERT_SQL = `INSERT INTO cara_tasks (${INSERT_COLUMNS}) SELECT * FROM ${UNNEST_COLUMNS} RETURNING id, version`;

/**
 * A create's insert in one statement: inserts the rows of `columns()` only if the table has room
 * for all of them ($10 the capacity, $11 how many rows), then sends the notices of createNotices().
 * The room is checked on `cara_task_count` (kept by triggers) by an UPDATE of its row: that locks
 * the row until this transaction ends, waiting for any create or removal in progress, and checks
 * the count as they left it (READ COMMITTED re-reads an updated row), so the capacity is exact
 * whether or not the create lock is held. Notices: $12 the
 * notice of each row, $13 and $14 each notice's head and body, between which the database puts
 * the versions it gave the rows; $15 the plain notices. Returns every row's id and version, or no
 * row at all when there was no room (nothing inserted, nothing sent: the caller makes room and
 * inserts step by step).
 */
export const INSERT_IF_ROOM_SQL = `WITH room AS (UPDATE cara_task_count SET n = n WHERE n + $11::bigint <= $10::bigint RETURNING n),
  ins AS (INSERT INTO cara_tasks (${INSERT_COLUMNS}) SELECT * FROM ${UNNEST_COLUMNS} WHERE EXISTS (SELECT 1 FROM room) RETURNING id, version),
  sent AS (
    SELECT pg_notify('${CHANGES_CHANNEL}', n.head || v.versions || n.body)
      FROM (SELECT c.chunk, string_agg(ins.version::text, ' ' ORDER BY c.ord) AS versions
              FROM ins JOIN unnest($1::text[], $12::integer[]) WITH ORDINALITY AS c(id, chunk, ord) ON c.id = ins.id
             WHERE c.chunk > 0
             GROUP BY c.chunk) AS v
      JOIN unnest($13::text[], $14::text[]) WITH ORDINALITY AS n(head, body, chunk) ON n.chunk = v.chunk
    UNION ALL
    SELECT pg_notify('${CHANGES_CHANNEL}', p) FROM unnest($15::text[]) AS p WHERE EXISTS (SELECT 1 FROM ins)
  )
SELECT ins.id, ins.version FROM ins, (SELECT count(*) FROM sent) AS notices`;

/** How many rows `cara_tasks` holds (kept by triggers, see migrations.ts). */
export const COUNT_SQL = "SELECT n FROM cara_task_count";

/** What a create transaction begins with: the transaction and the create lock in one round trip. */
export const CREATE_BEGIN = `BEGIN; SELECT pg_advisory_xact_lock(${CREATE_LOCK_KEY})`;

/** The column arrays of `recs` for the unnest() of an insert or an update. */
export function columns(recs: readonly TaskRecord[]): unknown[] {
  return [
    recs.map((r) => r.id),
    recs.map((r) => r.state),
    recs.map((r) => r.priority ?? 0),
    recs.map((r) => r.nextRunAtMs),
    recs.map((r) => r.createdAtMs),
    recs.map((r) => r.updatedAtMs),
    recs.map((r) => r.finishedAtMs ?? null),
    recs.map((r) => r.idempotencyKey ?? null),
    recs.map((r) => JSON.stringify(orderedRecord(r))),
  ];
}
