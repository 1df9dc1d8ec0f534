import { Command, Option } from "clipanion";
import { TaskState, type Task } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { taskStateNames } from "../../wire/tasks.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { formatTask, requireId, TaskCommand, taskJson } from "./common.js";
import { printJsonLine } from "../output.js";

export class TaskWatchCommand extends TaskCommand {
  static override paths = [["task", "watch"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Follow a task until it reaches done, failed or cancelled",
    details: "Prints a line on every change. Exit 0 when the task ends done, 1 when failed or cancelled. Ctrl-C stops watching (the task goes on).",
    examples: [["Watch a task", "cara task watch 7c0e…"]],
  });
  id = Option.String({ name: "id" });
  override timeout = Option.String("--timeout", "24h", { description: "Stop watching after this long (default 24h)" });

  async run(): Promise<number> {
    const id = requireId(this.id);
    let last: Task | undefined;
    await this.call(async (c) => {
      for await (const msg of c.watchTask({ id })) {
        if (!msg.task) continue;
        last = msg.task;
        if (this.json) printJsonLine(this.context.stdout, { task: taskJson(last) });
        else {
          const t = last;
          this.context.stdout.write(
            `${new Date(Number(t.updatedAtMs)).toISOString()}  ${(taskStateNames.name(t.state) ?? "?").padEnd(10)}  attempts ${t.attempts}${t.lastError ? `  ${stripTerminalUnsafe(t.lastError)}` : ""}\n`,
          );
        }
      }
    });
    if (!last) return 1;
    if (!this.json) this.context.stdout.write(formatTask(last, this.painter()));
    return last.state === TaskState.DONE ? 0 : 1;
  }
}
