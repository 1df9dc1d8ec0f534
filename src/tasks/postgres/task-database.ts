/**
 * The task database for the commands that run without a server (`cara restore --offline`,
 * `cara tasks migrate`): one connection, the schema migrated on demand, the whole-table copies of
 * table-copy.ts. Messages name the database with its password redacted, never the URL.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { TaskRecord } from "../model.js";
import type { TasksDatabase } from "../task-store.js";
import { TaskDatabaseError } from "./errors.js";
import { migrate, schemaVersion } from "./migrate.js";
import { redactUrl, scrub } from "./redact.js";
import { countTasks, readAllTasks, replaceAllTasks, TableNotEmptyError } from "./table-copy.js";
import { failedWhileCommitting, markCommitting } from "./transaction.js";

export { TableNotEmptyError };

export class OfflineTaskDatabase implements TasksDatabase {
  /** The URL with its password redacted. */
  readonly database: string;
  private readonly origin = randomUUID();
  private migrated = false;

  private constructor(
    private readonly client: pg.Client,
    private readonly url: string,
  ) {
    this.database = redactUrl(url);
  }

  static async connect(url: string, applicationName: string): Promise<OfflineTaskDatabase> {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, application_name: applicationName });
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw new TaskDatabaseError(`cannot reach the task database ${redactUrl(url)} (${scrub((err as Error).message, url)}); nothing was changed`);
    }
    return new OfflineTaskDatabase(client, url);
  }

  /** How many tasks the database holds (0 when it has no cara schema yet). Writes nothing. */
  async count(): Promise<number> {
    return this.run("read", async () => ((await schemaVersion(this.client)) === 0 ? 0 : countTasks(this.client)));
  }

  /**
   * How many cara servers are running on this database: each holds one listening connection
   * (application_name "cara-listen", pg-store.ts) while it runs. pg_stat_activity shows every
   * session's database and application name to any role.
   */
  async runningServers(): Promise<number> {
    return this.run("read", async () => {
      const r = await this.client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cara-listen'",
      );
      return r.rows[0]?.n ?? 0;
    });
  }

  async snapshot(): Promise<TaskRecord[]> {
    return this.run("read the tasks from", async () => ((await schemaVersion(this.client)) === 0 ? [] : readAllTasks(this.client)));
  }

  /** Migrates the schema if needed, then replaces every task in one transaction (TableNotEmptyError with `requireEmpty`). */
  async replaceAll(records: readonly TaskRecord[], options: { requireEmpty?: boolean } = {}): Promise<void> {
    await this.run("replace the tasks in", async () => {
      if (!this.migrated) await migrate(this.client);
      this.migrated = true;
      await replaceAllTasks(this.client, records, { origin: this.origin, ...options });
    });
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof TableNotEmptyError) throw err;
      if (failedWhileCommitting(err))
        throw markCommitting(
          new TaskDatabaseError(
            `cannot ${what} the task database ${this.database}: it failed while committing (${scrub((err.cause as Error).message, this.url)}); the change may or may not have been kept`,
          ),
          err.cause,
        );
      throw new TaskDatabaseError(`cannot ${what} the task database ${this.database} (${scrub((err as Error).message, this.url)}); nothing was changed`);
    }
  }
}
