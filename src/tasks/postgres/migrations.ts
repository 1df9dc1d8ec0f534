/**
 * The PostgreSQL store's schema, as versioned migrations applied in order (migrate.ts). A
 * migration, once released, is never edited: a change is a new version at the end.
 *
 * `cara_tasks.record` holds the task exactly as queue.json does (model.orderedRecord), so both
 * stores read and write one shape; the other columns copy the fields that queries filter and
 * order on. `version` grows with every write of a row (from one sequence), so a server applying
 * changes it was told about keeps the newest.
 *
 * `cara_task_count` (version 2) holds how many rows `cara_tasks` has, kept by statement triggers
 * in the same transaction as the rows: a create reads it under the create lock instead of
 * counting the table (`count(*)` walks every row, once per create transaction, so it grew with
 * the queue and was the longest step while the lock was held). Version 4 spreads that count over
 * the shards of `cara_task_room` (see there).
 */
/** How many rows the count and the capacity are spread over (version 4). */
export const ROOM_SHARDS = 16;
/** The transaction-local setting that names the shard a transaction counts on (version 4). */
export const ROOM_SHARD_SETTING = "cara.room_shard";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "tasks",
    sql: `
CREATE SEQUENCE cara_task_version;
CREATE TABLE cara_tasks (
  id text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('queued', 'running', 'blocked', 'retry_wait', 'done', 'failed', 'cancelled')),
  priority integer NOT NULL DEFAULT 0,
  next_run_at_ms bigint,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL,
  finished_at_ms bigint,
  idempotency_key text UNIQUE,
  lease_expires_at_ms bigint,
  version bigint NOT NULL DEFAULT nextval('cara_task_version'),
  record jsonb NOT NULL
);
CREATE INDEX cara_tasks_due ON cara_tasks (priority DESC, (coalesce(next_run_at_ms, created_at_ms))) WHERE state IN ('queued', 'retry_wait');
CREATE INDEX cara_tasks_terminal ON cara_tasks (updated_at_ms) WHERE state IN ('done', 'failed', 'cancelled');
`,
  },
  {
    version: 2,
    name: "task count",
    // The table is locked first so that no write lands between the count and the triggers.
    // A trigger does nothing for a statement that changed no row (no lock taken on the counter).
    sql: `
LOCK TABLE cara_tasks IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE cara_task_count (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  n bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO cara_task_count (singleton, n) SELECT true, count(*) FROM cara_tasks;
CREATE FUNCTION cara_task_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
  SELECT count(*) INTO k FROM added;
  IF k > 0 THEN UPDATE cara_task_count SET n = n + k; END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION cara_task_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
  SELECT count(*) INTO k FROM removed;
  IF k > 0 THEN UPDATE cara_task_count SET n = n - k; END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION cara_task_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE cara_task_count SET n = 0;
  RETURN NULL;
END $$;
CREATE TRIGGER cara_task_count_insert AFTER INSERT ON cara_tasks REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_count_added();
CREATE TRIGGER cara_task_count_delete AFTER DELETE ON cara_tasks REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_count_removed();
CREATE TRIGGER cara_task_count_truncate AFTER TRUNCATE ON cara_tasks
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_count_truncated();
`,
  },
  {
    version: 3,
    name: "claim indexes",
    // Claims find the due tasks and the ended leases through these, in time proportional to what
    // they find: before, a queue holding many tasks due later (or many tasks at all) made every
    // claim read all of them (cara_tasks_due orders by priority first, which no run-at bound can
    // use, and nothing indexed the running tasks). cara_tasks_due stays: with a large backlog of
    // due tasks, its order lets a claim stop at its limit.
    sql: `
CREATE INDEX cara_tasks_runnable ON cara_tasks (next_run_at_ms) WHERE state IN ('queued', 'retry_wait');
CREATE INDEX cara_tasks_running ON cara_tasks (lease_expires_at_ms) WHERE state = 'running';
`,
  },
  {
    version: 4,
    name: "task room shards",
    // The one count row serialized every create in the deployment through its disk flush (its
    // lock is held until COMMIT): with 4 servers, 3.5 creates per WAL flush. The count is now
    // spread over ROOM_SHARDS rows, and the capacity over their quotas (each shard's n may not
    // pass its quota, so the total cannot pass the capacity): creates of different servers lock
    // different rows, and their commits share flushes. A create that finds no shard with room
    // locks them all and moves the free room (rows.ts, pg-store.ts). A transaction counts its
    // inserts and deletes on one shard (cara_task_room_shard): the one its create chose, else any
    // that is not locked, else shard 0 (waiting). n may go below zero on a shard (a delete counted
    // where the insert was not); the sum is the number of rows. Quotas start at 0: the first create
    // shares out the room of its own capacity. The table is locked as DROP TRIGGER will lock it
    // (ACCESS EXCLUSIVE) from the start: taking a weaker lock first and raising it later could
    // deadlock with a writer that came in between.
    sql: `
LOCK TABLE cara_tasks IN ACCESS EXCLUSIVE MODE;
CREATE TABLE cara_task_room (
  shard integer PRIMARY KEY CHECK (shard >= 0 AND shard < ${ROOM_SHARDS}),
  n bigint NOT NULL,
  quota bigint NOT NULL DEFAULT 0,
  capacity bigint NOT NULL DEFAULT 0
);
INSERT INTO cara_task_room (shard, n) SELECT g, CASE WHEN g = 0 THEN (SELECT count(*) FROM cara_tasks) ELSE 0 END FROM generate_series(0, ${ROOM_SHARDS - 1}) AS g;
DROP TRIGGER cara_task_count_insert ON cara_tasks;
DROP TRIGGER cara_task_count_delete ON cara_tasks;
DROP TRIGGER cara_task_count_truncate ON cara_tasks;
DROP FUNCTION cara_task_count_added();
DROP FUNCTION cara_task_count_removed();
DROP FUNCTION cara_task_count_truncated();
DROP TABLE cara_task_count;
CREATE FUNCTION cara_task_room_shard() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE s integer := nullif(current_setting('${ROOM_SHARD_SETTING}', true), '')::integer;
BEGIN
  IF s IS NULL THEN
    SELECT shard INTO s FROM cara_task_room ORDER BY shard FOR UPDATE SKIP LOCKED LIMIT 1;
    s := coalesce(s, 0);
    PERFORM set_config('${ROOM_SHARD_SETTING}', s::text, true);
  END IF;
  RETURN s;
END $$;
CREATE FUNCTION cara_task_room_added() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
  SELECT count(*) INTO k FROM added;
  IF k > 0 THEN UPDATE cara_task_room SET n = n + k WHERE shard = cara_task_room_shard(); END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION cara_task_room_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
  SELECT count(*) INTO k FROM removed;
  IF k > 0 THEN UPDATE cara_task_room SET n = n - k WHERE shard = cara_task_room_shard(); END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION cara_task_room_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE cara_task_room SET n = 0;
  RETURN NULL;
END $$;
CREATE TRIGGER cara_task_room_insert AFTER INSERT ON cara_tasks REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_room_added();
CREATE TRIGGER cara_task_room_delete AFTER DELETE ON cara_tasks REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_room_removed();
CREATE TRIGGER cara_task_room_truncate AFTER TRUNCATE ON cara_tasks
  FOR EACH STATEMENT EXECUTE FUNCTION cara_task_room_truncated();
`,
  },
];
