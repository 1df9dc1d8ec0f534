import { Command, Option } from "clipanion";
import { taskStateNames } from "../../wire/tasks.js";
import { columns } from "../output.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { parseLabels, parseStateFilter, parseUint, payloadSummary, TaskCommand, taskJson } from "./common.js";

export class TaskListCommand extends TaskCommand {
  static override paths = [["task", "list"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "List tasks, most recently updated first",
    examples: [
      ["Everything (first 100)", "cara task list"],
      ["Blocked and failed tasks", "cara task list --state blocked,failed"],
      ["The next page", "cara task list --page-token <token from the previous page>"],
    ],
  });
  state = Option.String("--state", { description: "Only these states (comma-separated)" });
  limit = Option.String("--limit", { description: "At most this many (0-1000, default 100)" });
  pageToken = Option.String("--page-token", { description: "Continue after a previous page" });
  label = Option.Array("--label", { description: "Only tasks with this key=value label (repeatable)" });

  async run(): Promise<number> {
    const states = this.state !== undefined && this.state.trim() !== "" ? parseStateFilter(this.state) : [];
    const limit = parseUint(this.limit, "--limit", 1000);
    const labels = parseLabels(this.label);
    const res = await this.call((c) => c.listTasks({ states, ...(limit !== undefined ? { limit } : {}), pageToken: this.pageToken ?? "", labels }));
    this.print(
      { tasks: res.tasks.map(taskJson), total: res.total, ...(res.nextPageToken ? { nextPageToken: res.nextPageToken } : {}) },
      {
        json: this.json,
        human: () => {
          if (res.tasks.length === 0)
            return [res.total === 0 ? "No tasks." : `${res.total === 1 ? "1 task matches" : `${res.total} tasks match`}; none on this page.`];
          const rows = res.tasks.map((t) => [
            t.id,
            taskStateNames.name(t.state) ?? "?",
            String(t.attempts),
            new Date(Number(t.updatedAtMs)).toISOString(),
            stripTerminalUnsafe(payloadSummary(t)).slice(0, 40),
            stripTerminalUnsafe(t.lastError ?? "").slice(0, 60),
          ]);
          const [header, ...lines] = columns([["ID", "STATE", "ATT", "UPDATED", "PAYLOAD", "LAST ERROR"], ...rows]);
          return [
            this.painter().bold(header!),
            ...lines,
            "",
            `${res.tasks.length} of ${res.total} shown${res.nextPageToken ? `; next page: --page-token ${res.nextPageToken}` : ""}`,
          ];
        },
      },
    );
    return 0;
  }
}
