import { Command, Option } from "clipanion";
import { CaraCommand } from "../base.js";
import { CliFailure, CliUsageError } from "../target.js";

export class TasksMigrateCommand extends CaraCommand {
  static override paths = [
    ["tasks", "migrate"],
    ["task", "migrate"],
  ];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Move a deployment's tasks between the file store and PostgreSQL",
    details: `
      Works on the state dir with no server running on it (it refuses while one holds the state dir: stop it first).
      Copies every task of the current store (config tasks.store) into the other one, exactly as stored (ids, states,
      attempts, payloads, idempotency keys, times), in one durable step: one transaction into PostgreSQL, or queue.json
      written atomically (with an empty journal) for the file store. Only once the copy is durable does it set
      tasks.store in config.json (an atomic write); then start the server. A failure before that changes nothing.

      The database is the one CARAPACE_DATABASE_URL (else tasks.postgres.url) names; its schema is created if needed.
      Its password never appears in the output. A target that already holds tasks is refused unless --replace
      (take a backup first). The source is left as it was (the file store's tasks/queue.json and queue.journal, or
      the database's rows): to go back, run the command the other way with --replace.
      --dry-run shows how many tasks would move (per state) and what the target holds, and changes nothing.
    `,
    examples: [
      ["See what would move", "cara tasks migrate --to postgres --dry-run"],
      ["Move the tasks into PostgreSQL", "CARAPACE_DATABASE_URL=postgres://cara@db/cara cara tasks migrate --to postgres"],
      ["Back to the file store", "cara tasks migrate --to file --replace --state-dir /srv/carapace"],
    ],
  });

  to = Option.String("--to", { description: "The store to move the tasks to: postgres or file" });
  stateDir = Option.String("--state-dir", { description: "The state dir (default: CARAPACE_STATE_DIR or ~/.config/carapace)" });
  replace = Option.Boolean("--replace", false, { description: "Replace the tasks the target already holds" });
  dryRun = Option.Boolean("--dry-run", false, { description: "Show what would move; change nothing" });
  json = Option.Boolean("--json", false, { description: "Print the result as one JSON document" });

  async run(): Promise<number> {
    if (this.to !== "postgres" && this.to !== "file") {
      throw new CliUsageError(
        this.to === undefined
          ? "--to postgres or --to file: which store should the tasks move to?"
          : `--to ${JSON.stringify(this.to)}: the tasks can move to postgres or file`,
      );
    }
    const to = this.to;
    const { migrateTaskStore, StoreMigrationRefused } = await import("../../tasks/store-migration.js");
    const report = await migrateTaskStore({
      stateDir: this.resolveStateDir(this.stateDir),
      to,
      replace: this.replace,
      dryRun: this.dryRun,
      env: this.context.env,
    }).catch((err: unknown) => {
      if (err instanceof StoreMigrationRefused) throw new CliFailure(err.message, { code: "failed_precondition", details: {} });
      throw err;
    });
    this.print(report, {
      json: this.json,
      human: () => {
        const name = (s: string) => (s === "file" ? `the file store (${report.stateDir}/tasks)` : `PostgreSQL (${report.database})`);
        const states = Object.entries(report.states)
          .filter(([, n]) => n > 0)
          .map(([s, n]) => `${n} ${s}`)
          .join(", ");
        const what = `${report.tasks} task${report.tasks === 1 ? "" : "s"} from ${name(report.from)} to ${name(report.to)}${states ? `: ${states}` : ""}`;
        const target =
          report.targetTasks > 0
            ? [`The target's ${report.targetTasks} task${report.targetTasks === 1 ? "" : "s"} ${report.dryRun ? "would be" : "were"} replaced.`]
            : [];
        if (report.dryRun) return [`Would move ${what}.`, ...target, "Dry run: nothing changed."];
        return [
          `Moved ${what}.`,
          ...target,
          `${report.config}: tasks.store is now "${report.to}"; start the server to use it.`,
          `The ${report.from === "file" ? "file store's" : "database's"} copy stays in ${report.sourceKept} (unused); to go back: cara tasks migrate --to ${report.from} --replace`,
        ];
      },
    });
    return 0;
  }
}
