import { Command, Option } from "clipanion";
import { EXAMPLE_PAYLOAD, parseLabels, parsePayloadFlag, parsePriority, parseUint, PolicyTaskCommand, policyFromFlags, taskJson } from "./common.js";

export class TaskCreateCommand extends PolicyTaskCommand {
  static override paths = [["task", "create"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Create a durable task",
    details: `
      Payload kinds: \`systemEvent\` {text}, \`agentTurn\` {message, model?, timeoutSeconds?}, \`backup\` {keep},
      \`updateCheck\` {channel?}. The task is on disk when this returns. With \`--idempotency-key\`, creating
      the same key again returns the existing task instead of a duplicate.
    `,
    examples: [
      ["Ask the agent something", `cara task create --payload ${EXAMPLE_PAYLOAD}`],
      ["Record an event in an hour", `cara task create --payload '{"kind":"systemEvent","text":"deploy done"}' --next-run-at-ms $(( $(date +%s%3N) + 3600000 ))`],
      ["At most 3 attempts, high priority", `cara task create --payload ${EXAMPLE_PAYLOAD} --max-attempts 3 --priority 10`],
    ],
  });
  payload = Option.String("--payload", { required: true, description: "The task payload as JSON, with a kind" });
  nextRunAtMs = Option.String("--next-run-at-ms", { description: "Do not run before this Unix time (ms)" });
  priority = Option.String("--priority", { description: "Higher runs first (integer, default 0)" });
  idempotencyKey = Option.String("--idempotency-key", { description: "Create at most once per key" });
  label = Option.Array("--label", { description: "key=value label (repeatable)" });

  async run(): Promise<number> {
    const payload = parsePayloadFlag(this.payload);
    const policy = policyFromFlags(this);
    const next = parseUint(this.nextRunAtMs, "--next-run-at-ms");
    const priority = parsePriority(this.priority);
    const labels = parseLabels(this.label);
    const res = await this.call((c) =>
      c.createTask({
        payload,
        ...(policy ? { policy } : {}),
        ...(next !== undefined ? { nextRunAtMs: BigInt(next) } : {}),
        ...(priority !== undefined ? { priority } : {}),
        ...(this.idempotencyKey !== undefined ? { idempotencyKey: this.idempotencyKey } : {}),
        labels,
      }),
    );
    if (!this.json && !res.created) this.context.stderr.write("A task with this idempotency key exists already; showing it.\n");
    if (this.json && res.task) {
      this.printJson({ task: taskJson(res.task), created: res.created });
      return 0;
    }
    return this.printTask(res.task);
  }
}
