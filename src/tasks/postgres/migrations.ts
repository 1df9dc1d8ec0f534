/**
 * The PostgreSQL store's schema, as versioned migrations applied in order (migrate.ts). A
 * migration, once released, is never edited: a change is a new version at the end.
 *
 * `cara_tasks.record` holds the task exactly as queue.json does (model.orderedRecord), so both
 * stores read and write one shape; the other columns copy the fields that queries filter and
 * order on. `version` grows with every write of a row (from one sequence), so a server applying
 * changes it was told about keeps the newest.
 */
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
];
