import { Command } from "clipanion";
import { RescheduleCommand } from "./common.js";

export class TaskResumeCommand extends RescheduleCommand {
  static override paths = [["task", "resume"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Resume a blocked task",
    examples: [["Resume now", "cara task resume 7c0e… --reason 'approved'"]],
  });
  async run(): Promise<number> {
    const req = this.scheduleRequest();
    return this.printTask((await this.call((c) => c.resumeTask(req))).task);
  }
}
