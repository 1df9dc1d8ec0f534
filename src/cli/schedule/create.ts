import { Command, Option } from "clipanion";
import { CliUsageError } from "../target.js";
import { parseLabels, parsePayloadFlag, parsePriority, policyFromFlags, policyOptions } from "../task/common.js";
import { BACKUP_PAYLOAD, parseEvery, parseOverlap, ScheduleCommand } from "./common.js";

export class ScheduleCreateCommand extends ScheduleCommand {
  static override paths = [["schedule", "create"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Create a recurring schedule: a task from a template at every due time",
    details: `
      The rule is \`--cron\` (5 fields: minute hour day-of-month month day-of-week, or @yearly,
      @monthly, @weekly, @daily, @hourly) in the time zone \`--tz\` (an IANA name, default UTC), or
      \`--every\` a fixed interval (at least 1m). \`--payload\` and the policy flags are those of
      \`cara task create\`. With \`--overlap skip\` (the default) a due time is skipped while the
      previous run's task is not finished. The schedule is on disk when this returns.
    `,
    examples: [
      ["Back up every night at 03:00 UTC, keep seven archives", `cara schedule create --name nightly-backup --cron '0 3 * * *' --payload ${BACKUP_PAYLOAD}`],
      [
        "Every weekday at 08:30 Berlin time",
        `cara schedule create --name morning-brief --cron '30 8 * * 1-5' --tz Europe/Berlin --payload '{"kind":"agentTurn","message":"summarize the night"}'`,
      ],
      ["Check for updates every 6 hours", `cara schedule create --name update-check --every 6h --payload '{"kind":"updateCheck"}'`],
      ["Create it paused", `cara schedule create --name weekly --cron @weekly --payload ${BACKUP_PAYLOAD} --paused`],
    ],
  });
  name = Option.String("--name", { required: true, description: "Unique name (letters, digits, space, . _ : -)" });
  cron = Option.String("--cron", { description: "Cron expression: 5 fields or @daily-style" });
  every = Option.String("--every", { description: "Fixed interval instead of --cron: 15m, 2h, 1d" });
  tz = Option.String("--tz", { description: "IANA time zone of --cron (default UTC)" });
  payload = Option.String("--payload", { required: true, description: "Task payload as JSON, with a kind (as cara task create)" });
  maxAttempts = policyOptions.maxAttempts();
  maxTotalRuntimeMs = policyOptions.maxTotalRuntimeMs();
  maxTurns = policyOptions.maxTurns();
  maxRunTimeoutSeconds = policyOptions.maxRunTimeoutSeconds();
  priority = Option.String("--priority", { description: "Priority of each task (-1000..1000, default 0)" });
  label = Option.Array("--label", { description: "key=value label of each task (repeatable)" });
  overlap = Option.String("--overlap", { description: "skip (default): no new run while one is going; allow" });
  paused = Option.Boolean("--paused", false, { description: "Create it paused (resume with cara schedule resume)" });

  async run(): Promise<number> {
    if ((this.cron === undefined) === (this.every === undefined)) throw new CliUsageError("give exactly one of --cron or --every");
    const rule =
      this.cron !== undefined ? { case: "cron" as const, value: this.cron } : { case: "intervalMs" as const, value: BigInt(parseEvery(this.every!)) };
    const payload = parsePayloadFlag(this.payload);
    const policy = policyFromFlags(this);
    const priority = parsePriority(this.priority);
    const labels = parseLabels(this.label);
    const overlap = this.overlap !== undefined ? parseOverlap(this.overlap) : undefined;
    const res = await this.call((c) =>
      c.createSchedule({
        name: this.name,
        rule,
        timezone: this.tz ?? "",
        template: { payload, ...(policy ? { policy } : {}), labels, ...(priority !== undefined ? { priority } : {}) },
        ...(overlap !== undefined ? { overlap } : {}),
        paused: this.paused,
      }),
    );
    return this.printSchedule(res.schedule, "Created.");
  }
}
