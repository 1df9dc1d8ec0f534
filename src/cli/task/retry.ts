import { Command } from "clipanion";
import { RescheduleCommand } from "./common.js";

export class TaskRetryCommand extends RescheduleCommand {
  static override paths = [["task", "retry"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Retry a failed, blocked, cancelled or waiting task (attempts are not reset)",
    examples: [["Retry in a minute", "cara task retry 7c0e… --delay-ms 60000 --reason 'provider fixed'"]],
  });
  async run(): Promise<number> {
    const req = this.scheduleRequest();
    return this.printTask((await this.call((c) => c.retryTask(req))).task);
  }
}
