import { Command } from "clipanion";
import { ScheduleRunOutcome } from "../../../gen/carapace/tasks/v1/schedules_pb.js";
import { CliFailure } from "../target.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { OneScheduleCommand, requireScheduleId, runJson, scheduleJson } from "./common.js";

export class ScheduleRunCommand extends OneScheduleCommand {
  static override paths = [["schedule", "run"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Run a schedule now: create one task from its template and print the task id",
    details: "The run is outside the due times: they stay as they were, and the overlap policy does not apply. A paused schedule can be run too.",
    examples: [
      ["Back up now", "cara schedule run nightly-backup"],
      ["Then follow the task", "cara task watch $(cara schedule run nightly-backup --json | jq -r .run.taskId)"],
    ],
  });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    const res = await this.call((c) => c.runScheduleNow({ id }));
    const run = res.run;
    if (!run || !res.schedule) throw new CliFailure("the server answered without the run");
    const created = run.outcome === ScheduleRunOutcome.CREATED;
    const name = stripTerminalUnsafe(res.schedule.name);
    this.print(
      { run: runJson(run), schedule: scheduleJson(res.schedule) },
      {
        json: this.json,
        human: () => (created ? [`Created task ${run.taskId} from schedule ${name}.`, `Follow it: cara task watch ${run.taskId}`] : []),
      },
    );
    if (!created) {
      if (!this.json) this.context.stderr.write(`Error: schedule ${name} could not create its task: ${stripTerminalUnsafe(run.error || "no reason given")}\n`);
      return 1;
    }
    return 0;
  }
}
