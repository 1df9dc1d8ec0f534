import pg from "pg";
import type { CaraConfig } from "../../state/config.js";
import { TaskDatabaseError } from "./errors.js";
import { migrate, pendingMigrations, schemaVersion } from "./migrate.js";
import { MIGRATIONS } from "./migrations.js";
import { redactUrl, scrub } from "./redact.js";

/** The task database a config names: CARAPACE_DATABASE_URL, else tasks.postgres.url; undefined with the file store. */
export function configuredDatabaseUrl(config: CaraConfig, env: NodeJS.ProcessEnv): string | undefined {
  if (config.tasks?.store !== "postgres") return undefined;
  const url = env.CARAPACE_DATABASE_URL || config.tasks.postgres?.url;
  if (!url)
    throw new TaskDatabaseError('config tasks.store is "postgres" but no database URL is set: set CARAPACE_DATABASE_URL or tasks.postgres.url in config.json');
  if (!/^postgres(ql)?:\/\/./.test(url)) throw new TaskDatabaseError("the database URL is not a PostgreSQL URL (postgres://user:password@host:port/database)");
  return url;
}

export interface MigrationReport {
  /** The URL with its password redacted. */
  database: string;
  /** The schema version before. */
  version: number;
  /** The newest version this cara knows. */
  latest: number;
  pending: { version: number; name: string }[];
  /** The versions applied (none on a dry run). */
  applied: number[];
}

/**
 * Reads the schema version of the database at `url` and the migrations it lacks; unless
 * `dryRun`, applies them under the store's advisory lock. Messages carry no password.
 */
export async function migrateDatabase(url: string, dryRun: boolean): Promise<MigrationReport> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, application_name: "cara db migrate" });
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new TaskDatabaseError(`cannot reach the task database ${redactUrl(url)} (${scrub((err as Error).message, url)}); nothing was changed`);
  }
  try {
    const version = await schemaVersion(client);
    const pending = pendingMigrations(version).map((m) => ({ version: m.version, name: m.name }));
    const applied = dryRun || pending.length === 0 ? [] : await migrate(client);
    return { database: redactUrl(url), version, latest: MIGRATIONS.at(-1)?.version ?? 0, pending, applied };
  } catch (err) {
    if (err instanceof TaskDatabaseError) throw err;
    throw new TaskDatabaseError(scrub((err as Error).message, url));
  } finally {
    await client.end().catch(() => undefined);
  }
}
