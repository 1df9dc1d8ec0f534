import { Command, Option } from "clipanion";
import { TaskState, type Task } from "../../../gen/carapace/tasks/v1/tasks_pb.js";
import { taskStateNames } from "../../wire/tasks.js";
import { stripTerminalUnsafe } from "../terminal.js";
import { formatTask, requireId, TaskCommand, taskJson } from "./common.js";
import { printJsonLine } from "../output.js";

const TERMINAL = new Set([TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED]);

/** One change: time, state, attempts, when the next attempt is due (retry_wait), the last error. */
export function watchLine(t: Task, now: number): string {
  const state = taskStateNames.name(t.state) ?? "?";
  let line = `${new Date(Number(t.updatedAtMs)).toISOString()}  ${state.padEnd(10)}  attempts ${t.attempts}`;
  if (t.state === TaskState.RETRY_WAIT && t.nextRunAtMs !== undefined) {
    const inS = Math.max(0, Math.round((Number(t.nextRunAtMs) - now) / 1000));
    line += `  next attempt ${new Date(Number(t.nextRunAtMs)).toISOString()} (in ${inS}s)`;
  }
  if (t.lastError) line += `  ${stripTerminalUnsafe(t.lastError)}`;
  return `${line}\n`;
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
        if (this.json) printJsonLine(this.context.stdout, { task: taskJson(last) });
        else this.context.stdout.write(watchLine(last, Date.now()));
      }
    });
    if (!last) return 1;
    if (!this.json) this.context.stdout.write(formatTask(last, this.painter()));
    if (!TERMINAL.has(last.state)) {
      // The server ends a watch early only when it shuts down (or the task is removed).
      this.context.stderr.write(
        `The watch ended while the task was ${taskStateNames.name(last.state) ?? "?"}: the server closed the stream (stopping or restarting). The task is kept; once the server is back: cara task watch ${last.id}\n`,
      );
    }
    return last.state === TaskState.DONE ? 0 : 1;
  }
}
