import { join } from "node:path";
import { Command, Option } from "clipanion";
import { CaraCommand } from "../base.js";
import { CliFailure } from "../target.js";

export class DbMigrateCommand extends CaraCommand {
  static override paths = [["db", "migrate"]];
  static override usage = Command.Usage({
    description: "Show or apply the task database's pending schema migrations",
    details: `
      With config \`tasks.store: "postgres"\` in the state dir's config.json, connects to the database that
      \`CARAPACE_DATABASE_URL\` (else \`tasks.postgres.url\`) names, prints its schema version and the migrations
      it lacks (number and name), and applies them, each in its own transaction, under the advisory lock that
      \`cara start\` takes for the same work (a server starting meanwhile waits, then finds nothing to do).
      \`--dry-run\` only shows them. The database URL's password never appears in the output.

      Exit 0 when the schema is (or was already) up to date, or on a dry run; 1 when the database cannot be
      reached, a migration fails (it is rolled back), the schema is newer than this cara, or the state dir's
      config uses the file store (there is no database to migrate).
    `,
    examples: [
      ["See what would be applied", "cara db migrate --dry-run"],
      ["Apply the pending migrations", "cara db migrate"],
      ["Another state dir, as JSON", "cara db migrate --state-dir /srv/carapace --dry-run --json"],
    ],
  });

  stateDir = Option.String("--state-dir", {
    description: "The state dir whose config.json names the database (default: CARAPACE_STATE_DIR or ~/.config/carapace)",
  });
  dryRun = Option.Boolean("--dry-run", false, { description: "Show the pending migrations, apply nothing" });
  json = Option.Boolean("--json", false, { description: "Print the result as one JSON document" });

  async run(): Promise<number> {
    const [{ loadConfig }, { configuredDatabaseUrl, migrateDatabase }] = await Promise.all([
      import("../../state/config.js"),
      import("../../tasks/postgres/migrate-database.js"),
    ]);
    const config = await loadConfig(join(this.resolveStateDir(this.stateDir), "config.json"));
    const url = configuredDatabaseUrl(config, this.context.env);
    if (url === undefined) {
      throw new CliFailure('the state dir\'s config keeps tasks in files (tasks.store is not "postgres"): there is no database to migrate', {
        code: "failed_precondition",
        details: {},
      });
    }
    const report = await migrateDatabase(url, this.dryRun);
    this.print(
      { ...report, dryRun: this.dryRun },
      {
        json: this.json,
        human: () => {
          const lines = [`Database ${report.database}: schema version ${report.version} (this cara: ${report.latest})`];
          if (report.pending.length === 0) return [...lines, "Nothing to migrate: the schema is up to date."];
          const listed = (ms: { version: number; name: string }[]) => ms.map((m) => `  ${m.version}  ${m.name}`);
          if (this.dryRun)
            return [...lines, "Pending migrations:", ...listed(report.pending), "Dry run: nothing applied. Run 'cara db migrate' to apply them."];
          const applied = report.pending.filter((m) => report.applied.includes(m.version));
          if (applied.length === 0) return [...lines, "Nothing applied: another process migrated the schema meanwhile."];
          return [...lines, "Applied:", ...listed(applied), `Schema version now ${applied.at(-1)?.version}.`];
        },
      },
    );
    return 0;
  }
}
