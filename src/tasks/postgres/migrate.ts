import type pg from "pg";
import { MIGRATIONS, type Migration } from "./migrations.js";

/** The advisory lock key held while migrations run (one server migrates; the others wait). */
export const MIGRATION_LOCK_KEY = 7_246_119_001;

export class SchemaTooNewError extends Error {}

/** The schema version a database is at (0: no cara schema yet). */
export async function schemaVersion(client: pg.ClientBase): Promise<number> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('cara_schema_migrations')::text AS t");
  if (exists.rows[0]?.t == null) return 0;
  const res = await client.query<{ v: number | null }>("SELECT max(version) AS v FROM cara_schema_migrations");
  return res.rows[0]?.v ?? 0;
}

/** The migrations a database at `version` still needs; fails closed on a schema newer than this cara. */
export function pendingMigrations(version: number, migrations: readonly Migration[] = MIGRATIONS): Migration[] {
  const latest = migrations.at(-1)?.version ?? 0;
  if (version > latest) {
    throw new SchemaTooNewError(
      `the task database's schema is at version ${version}, newer than this cara knows (${latest}); a newer cara migrated it. Run that version (or newer), or point tasks.postgres.url at another database`,
    );
  }
  return migrations.filter((m) => m.version > version);
}

/**
 * Applies the pending migrations, each in its own transaction, under a session advisory lock so
 * that servers starting together migrate once. Returns the versions applied.
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
  try {
    await client.query(
      "CREATE TABLE IF NOT EXISTS cara_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const applied: number[] = [];
    for (const m of pendingMigrations(await schemaVersion(client), migrations)) {
      await client.query("BEGIN");
      try {
        await client.query(m.sql);
        await client.query("INSERT INTO cara_schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw new Error(`task database migration ${m.version} (${m.name}) failed: ${(err as Error).message}; nothing of it was applied`);
      }
      applied.push(m.version);
    }
    return applied;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => undefined);
  }
}
