import { Command } from "clipanion";
import { OneScheduleCommand, requireScheduleId } from "./common.js";

export class ScheduleResumeCommand extends OneScheduleCommand {
  static override paths = [["schedule", "resume"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Resume a paused schedule from its next due time after now",
    examples: [["Resume the nightly backup", "cara schedule resume nightly-backup"]],
  });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    return this.printSchedule((await this.call((c) => c.resumeSchedule({ id }))).schedule, "Resumed.");
  }
}
