import { Command } from "clipanion";
import { OneScheduleCommand, requireScheduleId } from "./common.js";

export class ScheduleGetCommand extends OneScheduleCommand {
  static override paths = [["schedule", "get"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Show one schedule: its rule, template, next three due times and last run",
    examples: [
      ["By name", "cara schedule get nightly-backup"],
      ["As JSON", "cara schedule get nightly-backup --json"],
    ],
  });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    return this.printSchedule((await this.call((c) => c.getSchedule({ id }))).schedule);
  }
}
