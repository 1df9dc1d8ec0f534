import { Command } from "clipanion";
import { ruleText } from "../../wire/schedules.js";
import { columns } from "../output.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { runOutcomeText, ScheduleCommand, scheduleJson } from "./common.js";

const iso = (v: bigint) => new Date(Number(v)).toISOString();

export class ScheduleListCommand extends ScheduleCommand {
  static override paths = [["schedule", "list"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "List schedules, oldest first, with their next due time and last run",
    examples: [
      ["All schedules", "cara schedule list"],
      ["As JSON", "cara schedule list --json"],
    ],
  });

  async run(): Promise<number> {
    const res = await this.call((c) => c.listSchedules({}));
    this.print(
      { schedules: res.schedules.map(scheduleJson) },
      {
        json: this.json,
        human: () => {
          if (res.schedules.length === 0) return ["No schedules. Create one with 'cara schedule create' (see --help)."];
          const rows = res.schedules.map((s) => [
            s.id,
            stripTerminalUnsafe(s.name),
            stripTerminalUnsafe(s.rule.case === "cron" ? s.rule.value : ruleText(s)),
            s.rule.case === "cron" ? s.timezone : "-",
            s.enabled ? "enabled" : "paused",
            s.nextDueMs[0] !== undefined ? iso(s.nextDueMs[0]) : "-",
            s.lastRun ? `${iso(s.lastRun.atMs)} ${runOutcomeText(s.lastRun)}` : "-",
          ]);
          const [header, ...lines] = columns([["ID", "NAME", "WHEN", "TZ", "STATE", "NEXT DUE", "LAST RUN"], ...rows]);
          return [this.painter().bold(header!), ...lines];
        },
      },
    );
    return 0;
  }
}
