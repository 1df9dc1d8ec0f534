import { Command } from "clipanion";
import { LifecycleCommand } from "./common.js";

export class TaskCancelCommand extends LifecycleCommand {
  static override paths = [["task", "cancel"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Cancel a task (a running attempt is aborted)",
    examples: [["Cancel with a reason", "cara task cancel 7c0e… --reason 'superseded'"]],
  });
  async run(): Promise<number> {
    const req = this.taskRequest();
    return this.printTask((await this.call((c) => c.cancelTask(req))).task);
  }
}
