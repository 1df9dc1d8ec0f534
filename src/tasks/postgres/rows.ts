/**
 * What every writer of table `cara_tasks` shares: the columns a record fills, the insert, the
 * change notices and the lock creates take. Used by the store (pg-store.ts) and by the
 * whole-table copies of backup, restore and `cara tasks migrate` (table-copy.ts).
 */
import { orderedRecord, type TaskRecord } from "../model.js";
import { ROOM_SHARD_SETTING, ROOM_SHARDS } from "./migrations.js";

/** The channel every store of a database listens on; notices are described in create-notices.ts. */
export const CHANGES_CHANNEL = "cara_tasks";
/** Held (per transaction) by creates, so capacity and idempotency keys are exact across servers. */
export const CREATE_LOCK_KEY = 7_246_119_002;

const INSERT_COLUMNS = "id, state, priority, next_run_at_ms, created_at_ms, updated_at_ms, finished_at_ms, idempotency_key, record";
const UNNEST_COLUMNS = "unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::jsonb[])";

/** Inserts the rows given as the column arrays of `columns()`; returns each row's id and version. */
export const INSERT_SQL = `INSERT INTO cara_tasks (${INSERT_COLUMNS}) SELECT * FROM ${UNNEST_COLUMNS} RETURNING id, version`;

/**
 * A create's insert in one statement: inserts the rows of `columns()` only if a shard of
 * `cara_task_room` (migration 4) has room for all of them ($10 the capacity the quotas were shared
 * for, $11 how many rows, $16 the shard to try first), then sends the notices of createNotices().
 * The shard is locked (FOR UPDATE) until this transaction ends, skipping those another create or
 * removal holds, and its count is read as they left it (READ COMMITTED re-reads a locked row), so
 * no shard passes its quota and the total never passes the capacity, with or without the create
 * lock; the triggers count the rows on the shard named in ROOM_SHARD_SETTING. Notices: $12 the
 * notice of each row, $13 and $14 each notice's head and body, between which the database puts
 * the versions it gave the rows; $15 the plain notices. Returns every row's id and version, or no
 * row at all when no free shard had room (nothing inserted, nothing sent: the caller locks every
 * shard, makes room and shares it out: LOCK_ROOM_SQL, SHARE_ROOM_SQL).
 */
export const INSERT_IF_ROOM_SQL = `WITH room AS (
    SELECT set_config('${ROOM_SHARD_SETTING}', shard::text, true) FROM (
      SELECT shard FROM cara_task_room WHERE capacity = $10::bigint AND n + $11::bigint <= quota
       ORDER BY shard <> $16::integer, shard LIMIT 1 FOR UPDATE SKIP LOCKED) AS free),
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

/**
 * Locks every shard of `cara_task_room` (waiting for the creates and removals that hold one) and
 * returns how many rows `cara_tasks` holds: exact until this transaction ends. No row: the table
 * lost some of its rows (the count cannot be trusted).
 */
export const LOCK_ROOM_SQL = `SELECT sum(n) AS n FROM (SELECT n FROM cara_task_room ORDER BY shard FOR UPDATE) AS shards HAVING count(*) = ${ROOM_SHARDS}`;

/**
 * With every shard locked (LOCK_ROOM_SQL): shares the room left by $1 the capacity, after $2 rows
 * about to be inserted on shard $3, out over the shards' quotas (shard $3 gets the $2 besides), so
 * that the quotas add up to the capacity. Returns no row, and changes nothing, when there is not
 * room for the $2.
 */
export const SHARE_ROOM_SQL = `WITH free AS (SELECT $1::bigint - sum(n)::bigint - $2::bigint AS f FROM cara_task_room)
UPDATE cara_task_room AS r
   SET capacity = $1::bigint,
       quota = r.n + free.f / ${ROOM_SHARDS} + CASE WHEN r.shard < free.f % ${ROOM_SHARDS} THEN 1 ELSE 0 END + CASE WHEN r.shard = $3::integer THEN $2::bigint ELSE 0 END
  FROM free WHERE free.f >= 0 RETURNING r.shard`;

/**
 * After rows were written without a room check (a restore, `cara tasks migrate`): the quotas no
 * longer add up with the counts, so they are marked as shared for no capacity, and the next create
 * shares the room out again from the exact count (the slow path). Locks every shard, in order.
 */
export const RESET_ROOM_SQL = "UPDATE cara_task_room SET capacity = 0 WHERE shard IN (SELECT shard FROM cara_task_room ORDER BY shard FOR UPDATE)";

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
