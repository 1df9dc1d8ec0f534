import { Command, Option } from "clipanion";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TaskTemplateSchema } from "../../../gen/carapace/tasks/v1/schedules_pb.js";
import { CliFailure, CliUsageError } from "../target.js";
import { parseLabels, parsePayloadFlag, parsePriority, policyFromFlags, policyOptions } from "../task/common.js";
import { OneScheduleCommand, parseEvery, parseOverlap, requireScheduleId } from "./common.js";

export class ScheduleUpdateCommand extends OneScheduleCommand {
  static override paths = [["schedule", "update"]];
  static override usage = Command.Usage({
    category: "Schedules",
    description: "Change a schedule's name, rule, time zone, overlap policy or task template",
    details: `
      Only the flags given change. A new rule (\`--cron\`, \`--every\`) or time zone counts from now:
      due times of the old rule are not caught up. The template flags (\`--payload\`, policy,
      \`--priority\`, \`--label\`, \`--remove-label\`) change the tasks of later runs, not the ones
      created already.
    `,
    examples: [
      ["Back up at 02:30 instead", "cara schedule update nightly-backup --cron '30 2 * * *'"],
      ["Keep fourteen archives", `cara schedule update nightly-backup --payload '{"kind":"backup","keep":14}'`],
      ["Run in Berlin time", "cara schedule update nightly-backup --tz Europe/Berlin"],
    ],
  });
  name = Option.String("--name", { description: "New name" });
  cron = Option.String("--cron", { description: "New cron expression (replaces an interval)" });
  every = Option.String("--every", { description: "New interval, like 15m (replaces a cron expression)" });
  tz = Option.String("--tz", { description: "New IANA time zone" });
  overlap = Option.String("--overlap", { description: "New overlap policy: skip or allow" });
  payload = Option.String("--payload", { description: "New task payload JSON (replaces the old one)" });
  maxAttempts = policyOptions.maxAttempts();
  maxTotalRuntimeMs = policyOptions.maxTotalRuntimeMs();
  maxTurns = policyOptions.maxTurns();
  maxRunTimeoutSeconds = policyOptions.maxRunTimeoutSeconds();
  priority = Option.String("--priority", { description: "New task priority (-1000..1000)" });
  label = Option.Array("--label", { description: "Set a key=value task label (repeatable)" });
  removeLabel = Option.Array("--remove-label", { description: "Remove a task label (repeatable)" });

  async run(): Promise<number> {
    const id = requireScheduleId(this.id);
    if (this.cron !== undefined && this.every !== undefined) throw new CliUsageError("give --cron or --every, not both");
    const intervalMs = this.every !== undefined ? parseEvery(this.every) : undefined;
    const overlap = this.overlap !== undefined ? parseOverlap(this.overlap) : undefined;
    const payload = this.payload !== undefined ? parsePayloadFlag(this.payload) : undefined;
    const policy = policyFromFlags(this);
    const priority = parsePriority(this.priority);
    const setLabels = parseLabels(this.label);
    const removeLabels = this.removeLabel ?? [];
    const templateChanges =
      payload !== undefined || policy !== undefined || priority !== undefined || Object.keys(setLabels).length > 0 || removeLabels.length > 0;
    if (this.name === undefined && this.cron === undefined && intervalMs === undefined && this.tz === undefined && overlap === undefined && !templateChanges) {
      throw new CliUsageError(
        "schedule update requires at least one of: --name, --cron, --every, --tz, --overlap, --payload, --max-attempts, --max-total-runtime-ms, --max-turns, --max-run-timeout-seconds, --priority, --label, --remove-label",
      );
    }
    const res = await this.call(async (c) => {
      let template: MessageInitShape<typeof TaskTemplateSchema> | undefined;
      if (templateChanges) {
        // The API replaces the whole template: start from the current one.
        const current = (await c.getSchedule({ id })).schedule?.template;
        if (!current) throw new CliFailure("the server answered without the schedule's template");
        const labels = { ...current.labels, ...setLabels };
        for (const key of removeLabels) delete labels[key];
        template = {
          payload: payload ?? current.payload,
          policy: { ...current.policy, ...policy },
          labels,
          priority: priority ?? current.priority,
        };
      }
      return c.updateSchedule({
        id,
        ...(this.name !== undefined ? { name: this.name } : {}),
        ...(this.cron !== undefined ? { cron: this.cron } : {}),
        ...(intervalMs !== undefined ? { intervalMs: BigInt(intervalMs) } : {}),
        ...(this.tz !== undefined ? { timezone: this.tz } : {}),
        ...(overlap !== undefined ? { overlap } : {}),
        ...(template ? { template } : {}),
      });
    });
    return this.printSchedule(res.schedule, "Updated.");
  }
}
