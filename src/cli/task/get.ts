import { Command, Option } from "clipanion";
import { requireId, TaskCommand } from "./common.js";

export class TaskGetCommand extends TaskCommand {
  static override paths = [["task", "get"]];
  static override usage = Command.Usage({ category: "Tasks", description: "Show one task", examples: [["Show a task", "cara task get 7c0e…"]] });
  id = Option.String({ name: "id" });
  async run(): Promise<number> {
    const id = requireId(this.id);
    const res = await this.call((c) => c.getTask({ id }));
    return this.printTask(res.task);
  }
}
