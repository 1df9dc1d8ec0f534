import { Command } from "clipanion";
import { OneScheduleCommand, requireScheduleId } from "./common.js";

export class SchedulePauseCommand extends OneScheduleCommand {
  static override paths = [["schedule", "pause"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Pause a schedule: no runs until it is resumed",
    details: "Due times that pass while a schedule is paused are not caught up later. Tasks it created already are not touched.",
    examples: [["Pause the nightly backup", "cara schedule pause nightly-backup"]],
  });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    return this.printSchedule((await this.call((c) => c.pauseSchedule({ id }))).schedule, "Paused.");
  }
}
