import { Command, Option } from "clipanion";
import { CliUsageError } from "../target.js";
import { EXAMPLE_PAYLOAD, parseLabels, parsePayloadFlag, parseUint, PolicyTaskCommand, policyFromFlags, requireId } from "./common.js";

export class TaskUpdateCommand extends PolicyTaskCommand {
  id = Option.String({ name: "id" });
  reason = Option.String("--reason", { description: "Why (recorded as the task's note; its last error stays; up to 1024 characters)" });
  static override paths = [["task", "update"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Change a task's payload, policy, priority, labels or schedule (not while running or done)",
    examples: [
      ["Raise the attempt budget", "cara task update 7c0e… --max-attempts 500 --reason 'flaky provider'"],
      ["Replace the payload", `cara task update 7c0e… --payload ${EXAMPLE_PAYLOAD}`],
    ],
  });
  payload = Option.String("--payload", { description: "New payload JSON (replaces the old one)" });
  priority = Option.String("--priority", { description: "New priority" });
  nextRunAtMs = Option.String("--next-run-at-ms", { description: "New earliest run time (queued/retry_wait only)" });
  label = Option.Array("--label", { description: "Set a key=value label (repeatable)" });
  removeLabel = Option.Array("--remove-label", { description: "Remove a label (repeatable)" });

  async run(): Promise<number> {
    const id = requireId(this.id);
    const payload = this.payload !== undefined ? parsePayloadFlag(this.payload) : undefined;
    const policy = policyFromFlags(this);
    const next = parseUint(this.nextRunAtMs, "--next-run-at-ms");
    const setLabels = parseLabels(this.label);
    let priority: number | undefined;
    if (this.priority !== undefined) {
      if (!/^-?\d+$/.test(this.priority)) throw new CliUsageError(`--priority must be an integer (got '${this.priority}')`);
      priority = Number(this.priority);
    }
    if (
      !payload &&
      !policy &&
      this.reason === undefined &&
      priority === undefined &&
      next === undefined &&
      Object.keys(setLabels).length === 0 &&
      !this.removeLabel?.length
    ) {
      throw new CliUsageError(
        "task update requires at least one of: --payload, --max-attempts, --max-total-runtime-ms, --max-turns, --max-run-timeout-seconds, --reason, --priority, --next-run-at-ms, --label, --remove-label",
      );
    }
    const res = await this.call((c) =>
      c.updateTask({
        id,
        ...(payload ? { payload } : {}),
        ...(policy ? { policy } : {}),
        ...(this.reason !== undefined ? { reason: this.reason } : {}),
        ...(priority !== undefined ? { priority } : {}),
        ...(next !== undefined ? { nextRunAtMs: BigInt(next) } : {}),
        setLabels,
        removeLabels: this.removeLabel ?? [],
      }),
    );
    return this.printTask(res.task);
  }
}
