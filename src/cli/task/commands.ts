import { Command, Option } from "clipanion";
import { TaskState, type Task } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { CliUsageError } from "../target.js";
import { taskStateNames } from "../../wire/tasks.js";
import {
  formatTask,
  parseLabels,
  parsePayloadFlag,
  parseStateFilter,
  parseUint,
  payloadSummary,
  PolicyTaskCommand,
  policyFromFlags,
  requireId,
  TaskCommand,
  taskJson,
} from "./common.js";

const EXAMPLE_PAYLOAD = `'{"kind":"agentTurn","message":"summarize recent logs"}'`;

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
    let priority: number | undefined;
    if (this.priority !== undefined) {
      if (!/^-?\d+$/.test(this.priority) || Math.abs(Number(this.priority)) > 2 ** 31 - 1) throw new CliUsageError(`--priority must be an integer (got '${this.priority}')`);
      priority = Number(this.priority);
    }
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

export class TaskListCommand extends TaskCommand {
  static override paths = [["task", "list"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "List tasks, most recently updated first",
    examples: [
      ["Everything (first 100)", "cara task list"],
      ["Blocked and failed tasks", "cara task list --state blocked,failed"],
      ["The next page", "cara task list --page-token <token from the previous page>"],
    ],
  });
  state = Option.String("--state", { description: "Only these states (comma-separated)" });
  limit = Option.String("--limit", { description: "At most this many (0-1000, default 100)" });
  pageToken = Option.String("--page-token", { description: "Continue after a previous page" });
  label = Option.Array("--label", { description: "Only tasks with this key=value label (repeatable)" });

  async run(): Promise<number> {
    const states = this.state !== undefined && this.state.trim() !== "" ? parseStateFilter(this.state) : [];
    const limit = parseUint(this.limit, "--limit", 1000);
    const labels = parseLabels(this.label);
    const res = await this.call((c) => c.listTasks({ states, ...(limit !== undefined ? { limit } : {}), pageToken: this.pageToken ?? "", labels }));
    if (this.json) {
      this.printJson({ tasks: res.tasks.map(taskJson), total: res.total, ...(res.nextPageToken ? { nextPageToken: res.nextPageToken } : {}) });
      return 0;
    }
    const out = this.context.stdout;
    if (res.tasks.length === 0) {
      out.write(res.total === 0 ? "No tasks.\n" : `${res.total} tasks match; none on this page.\n`);
      return 0;
    }
    const rows = res.tasks.map((t) => [t.id, taskStateNames.name(t.state) ?? "?", String(t.attempts), new Date(Number(t.updatedAtMs)).toISOString(), stripTerminalUnsafe(payloadSummary(t)).slice(0, 40), stripTerminalUnsafe(t.lastError ?? "").slice(0, 60)]);
    const header = ["ID", "STATE", "ATT", "UPDATED", "PAYLOAD", "LAST ERROR"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
    out.write(`${this.painter().bold(line(header))}\n`);
    for (const r of rows) out.write(`${line(r)}\n`);
    out.write(`\n${res.tasks.length} of ${res.total} shown${res.nextPageToken ? `; next page: --page-token ${res.nextPageToken}` : ""}\n`);
    return 0;
  }
}

export class TaskGetCommand extends TaskCommand {
  static override paths = [["task", "get"]];
  static override usage = Command.Usage({ category: "Tasks", description: "Show one task", examples: [["Show a task", "cara task get 7c0e…"]] });
  id = Option.String({ name: "id" });
  async run(): Promise<number> {
    const id = requireId(this.id);
    const res = await this.call((c) => c.getTask({ id }));
    return this.printTask(res.task);
  }
}

abstract class LifecycleCommand extends TaskCommand {
  id = Option.String({ name: "id" });
  reason = Option.String("--reason", { description: "Why (recorded as the task's lastError; up to 1024 characters)" });
}

export class TaskCancelCommand extends LifecycleCommand {
  static override paths = [["task", "cancel"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Cancel a task (a running attempt is aborted)",
    examples: [["Cancel with a reason", "cara task cancel 7c0e… --reason 'superseded'"]],
  });
  async run(): Promise<number> {
    const id = requireId(this.id);
    const res = await this.call((c) => c.cancelTask({ id, ...(this.reason !== undefined ? { reason: this.reason } : {}) }));
    return this.printTask(res.task);
  }
}

abstract class RescheduleCommand extends LifecycleCommand {
  delayMs = Option.String("--delay-ms", { description: "Run again after this many ms (default 0: now)" });
  protected delay(): bigint | undefined {
    const d = parseUint(this.delayMs, "--delay-ms");
    return d === undefined ? undefined : BigInt(d);
  }
}

export class TaskRetryCommand extends RescheduleCommand {
  static override paths = [["task", "retry"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Retry a failed, blocked, cancelled or waiting task (attempts are not reset)",
    examples: [["Retry in a minute", "cara task retry 7c0e… --delay-ms 60000 --reason 'provider fixed'"]],
  });
  async run(): Promise<number> {
    const id = requireId(this.id);
    const delayMs = this.delay();
    const res = await this.call((c) => c.retryTask({ id, ...(delayMs !== undefined ? { delayMs } : {}), ...(this.reason !== undefined ? { reason: this.reason } : {}) }));
    return this.printTask(res.task);
  }
}

export class TaskResumeCommand extends RescheduleCommand {
  static override paths = [["task", "resume"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Resume a blocked task",
    examples: [["Resume now", "cara task resume 7c0e… --reason 'approved'"]],
  });
  async run(): Promise<number> {
    const id = requireId(this.id);
    const delayMs = this.delay();
    const res = await this.call((c) => c.resumeTask({ id, ...(delayMs !== undefined ? { delayMs } : {}), ...(this.reason !== undefined ? { reason: this.reason } : {}) }));
    return this.printTask(res.task);
  }
}

export class TaskUpdateCommand extends PolicyTaskCommand {
  id = Option.String({ name: "id" });
  reason = Option.String("--reason", { description: "Why (recorded as the task's lastError; up to 1024 characters)" });
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
    if (!payload && !policy && this.reason === undefined && priority === undefined && next === undefined && Object.keys(setLabels).length === 0 && !this.removeLabel?.length) {
      throw new CliUsageError("task update requires at least one of: --payload, --max-attempts, --max-total-runtime-ms, --max-turns, --max-run-timeout-seconds, --reason, --priority, --next-run-at-ms, --label, --remove-label");
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

export class TaskWatchCommand extends TaskCommand {
  static override paths = [["task", "watch"]];
  static override usage = Command.Usage({
    category: "Tasks",
    description: "Follow a task until it reaches done, failed or cancelled",
    details: "Prints a line on every change. Exit 0 when the task ends done, 1 when failed or cancelled. Ctrl-C stops watching (the task goes on).",
    examples: [["Watch a task", "cara task watch 7c0e…"]],
  });
  id = Option.String({ name: "id" });
  override timeout = Option.String("--timeout", "24h", { description: "Stop watching after this long (default 24h)" });

  async run(): Promise<number> {
    const id = requireId(this.id);
    let last: Task | undefined;
    await this.call(async (c) => {
      for await (const msg of c.watchTask({ id })) {
        if (!msg.task) continue;
        last = msg.task;
        if (this.json) this.context.stdout.write(`${JSON.stringify(taskJson(last))}\n`);
        else {
          const t = last;
          this.context.stdout.write(
            `${new Date(Number(t.updatedAtMs)).toISOString()}  ${(taskStateNames.name(t.state) ?? "?").padEnd(10)}  attempts ${t.attempts}${t.lastError ? `  ${stripTerminalUnsafe(t.lastError)}` : ""}\n`,
          );
        }
      }
    });
    if (!last) return 1;
    if (!this.json) this.context.stdout.write(formatTask(last, this.painter()));
    return last.state === TaskState.DONE ? 0 : 1;
  }
}

export const TASK_COMMANDS = [
  TaskCreateCommand,
  TaskListCommand,
  TaskGetCommand,
  TaskCancelCommand,
  TaskRetryCommand,
  TaskResumeCommand,
  TaskUpdateCommand,
  TaskWatchCommand,
];
