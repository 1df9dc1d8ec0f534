import { Command } from "clipanion";
import { OneScheduleCommand, requireScheduleId } from "./common.js";

export class ScheduleDeleteCommand extends OneScheduleCommand {
  static override paths = [["schedule", "delete"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Delete a schedule (the tasks it created stay)",
    details: "Prints the schedule as it was, so it can be created again from the output.",
    examples: [
      ["By name", "cara schedule delete nightly-backup"],
      ["By id", "cara schedule delete 3f6c…"],
    ],
  });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    return this.printSchedule((await this.call((c) => c.deleteSchedule({ id }))).schedule, "Deleted.");
  }
}
