/**
 * What every writer of table `cara_tasks` shares: the columns a record fills, the insert, the
 * change notices and the lock creates take. Used by the store (pg-store.ts) and by the
 * whole-table copies of backup, restore and `cara tasks migrate` (table-copy.ts).
 */
import { orderedRecord, type TaskRecord } from "../model.js";

/** The channel every store of a database listens on; a notice is `<origin> <id>,<id>,...`. */
export const CHANGES_CHANNEL = "cara_tasks";
/** Held (per transaction) by creates, so capacity and idempotency keys are exact across servers. */
export const CREATE_LOCK_KEY = 7_246_119_002;
/** A NOTIFY payload must stay under 8000 bytes. */
const NOTICE_BYTES = 7000;

/** Inserts the rows given as the column arrays of `columns()`; returns each row's id and version. */
export const INSERT_SQL = `INSERT INTO cara_tasks (id, state, priority, next_run_at_ms, created_at_ms, updated_at_ms, finished_at_ms, idempotency_key, record)
       SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::jsonb[])
       RETURNING id, version`;

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

/** The NOTIFY payloads that tell the other stores these ids changed (each under the size limit). */
export function notices(origin: string, ids: readonly string[]): string[] {
  const out: string[] = [];
  let chunk: string[] = [];
  let bytes = 0;
  for (const id of ids) {
    if (bytes + id.length + 1 > NOTICE_BYTES - origin.length - 1 && chunk.length > 0) {
      out.push(`${origin} ${chunk.join(",")}`);
      chunk = [];
      bytes = 0;
    }
    chunk.push(id);
    bytes += id.length + 1;
  }
  if (chunk.length > 0) out.push(`${origin} ${chunk.join(",")}`);
  return out;
}
