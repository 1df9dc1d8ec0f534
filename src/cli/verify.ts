import { Command, Option } from "clipanion";
import { TaskState, TasksService, type Task } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { ClientCommand } from "./base.js";
import { httpGet } from "./http-probe.js";
import { describeError, rpcClient } from "./rpc.js";
import { blockedReasonName, stateName } from "./task/common.js";
import { stripTerminalUnsafe } from "./terminal.js";
import { CliFailure, CliUsageError, parseTimeout } from "./target.js";

interface CheckLine {
  name: string;
  pass: boolean;
  detail: string;
  next?: string;
}

export class VerifyCommand extends ClientCommand {
  static override paths = [["verify"]];
  static override usage = Command.Usage({
    description: "Prove an outcome end to end (today: autonomy, a real durable task)",
    details: `
      \`--outcome autonomy\` checks that the server answers, creates an \`agentTurn\` task with the message
      "verify-autonomy" and a tight policy (1 attempt, 30 s per attempt, 60 s in all), and watches it for up to
      70 s. PASS needs start proof (attempts > 0) and terminal proof (\`done\`, or \`blocked\` when no LLM provider
      is configured). \`failed\`, \`cancelled\` or a timeout FAIL. Each check prints its evidence; a FAIL prints the
      next step. Exit 0 on PASS, 1 on FAIL.
    `,
    examples: [
      ["Verify the local server", "cara verify --outcome autonomy"],
      ["Another port", "cara verify --outcome autonomy --port 18800"],
    ],
  });

  outcome = Option.String("--outcome", { required: true, description: "What to verify: autonomy" });
  deadline = Option.String("--deadline", "70s", { description: "How long to wait for a terminal state (default 70s)" });
  json = Option.Boolean("--json", false, { description: "Print the checks as one JSON document" });

  async run(): Promise<number> {
    if (this.outcome !== "autonomy") throw new CliUsageError(`unknown --outcome '${this.outcome}' (supported: autonomy)`);
    const deadlineMs = parseTimeout(this.deadline, "--deadline");
    const target = await this.target();
    const checks: CheckLine[] = [];
    const finish = () => this.report(target.display, checks);
    const retry = `cara verify --outcome autonomy --port ${target.port}`;

    // 1. Reachability.
    try {
      const res = await httpGet(target, "/health", this.timeoutMs(5_000));
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      checks.push({ name: "Gateway reachability", pass: true, detail: `service is reachable at ${target.display}` });
    } catch (err) {
      checks.push({
        name: "Gateway reachability",
        pass: false,
        detail: describeError(err, target),
        next: `start the service (\`cara start --port ${target.port}\`) and retry \`${retry}\``,
      });
      return finish();
    }

    // 2. Create the task.
    const client = await rpcClient(TasksService, target, this.timeoutMs(15_000));
    let task: Task;
    try {
      const res = await client.createTask({
        payload: { kind: { case: "agentTurn", value: { message: "verify-autonomy" } } },
        policy: { maxAttempts: 1, maxTotalRuntimeMs: 60_000n, maxTurns: 1, maxRunTimeoutSeconds: 30 },
        labels: { purpose: "verify-autonomy" },
      });
      if (!res.task) throw new CliFailure("task response missing task object");
      task = res.task;
      checks.push({ name: "Task create", pass: true, detail: `created task \`${task.id}\`` });
    } catch (err) {
      checks.push({
        name: "Task create",
        pass: false,
        detail: err instanceof CliFailure ? err.message : describeError(err, target),
        next: `verify control auth and task queue availability, then retry \`${retry}\``,
      });
      return finish();
    }

    // 3. Watch it until terminal (or blocked), or the deadline.
    let maxAttempts = task.attempts;
    let pollError: string | undefined;
    // The deadline is ours (the stream has no deadline of its own); leaving the loop early
    // cancels the stream, so nothing of it outlives the command.
    const stop = AbortSignal.timeout(deadlineMs);
    const seen = new AbortController();
    try {
      for await (const msg of client.watchTask({ id: task.id }, { signal: AbortSignal.any([stop, seen.signal]), timeoutMs: 0 })) {
        if (!msg.task) continue;
        task = msg.task;
        maxAttempts = Math.max(maxAttempts, task.attempts);
        if ([TaskState.DONE, TaskState.BLOCKED, TaskState.FAILED, TaskState.CANCELLED].includes(task.state)) break;
      }
    } catch (err) {
      if (!stop.aborted) pollError = describeError(err, target);
    } finally {
      seen.abort();
    }
    if (pollError !== undefined) {
      checks.push({ name: "Task polling", pass: false, detail: pollError, next: "confirm service health and control auth, then retry" });
      return finish();
    }
    checks.push(
      maxAttempts > 0
        ? { name: "Task start proof", pass: true, detail: `task attempts observed: ${maxAttempts}` }
        : {
            name: "Task start proof",
            pass: false,
            detail: "task never reported attempts > 0",
            next: "inspect the worker with `cara logs` and `cara status`, then retry verification",
          },
    );
    const terminal = ((): CheckLine => {
      switch (task.state) {
        case TaskState.DONE:
          return { name: "Task terminal proof", pass: true, detail: `task reached done state (run IDs: ${task.runIds.length})` };
        case TaskState.BLOCKED:
          return {
            name: "Task terminal proof",
            pass: true,
            detail: `task reached blocked state (${blockedReasonName(task.blockedReason)}: ${stripTerminalUnsafe(task.lastError ?? "")})`,
          };
        case TaskState.FAILED:
          return {
            name: "Task terminal proof",
            pass: false,
            detail: `task failed: ${stripTerminalUnsafe(task.lastError ?? "unknown error")}`,
            next: "check provider configuration (agent.baseUrl, agent.model, CARAPACE_AGENT_API_KEY) or the task policy, then retry",
          };
        case TaskState.CANCELLED:
          return {
            name: "Task terminal proof",
            pass: false,
            detail: "task was cancelled unexpectedly during verification",
            next: `find who cancelled it (\`cara task get ${task.id}\`), then retry`,
          };
        default:
          return {
            name: "Task terminal proof",
            pass: false,
            detail: `task did not reach terminal state before timeout (last state: ${stateName(task.state)})`,
            next: "check the worker (`cara status`) and the logs (`cara logs`), then retry",
          };
      }
    })();
    checks.push(terminal);
    return finish();
  }

  private report(display: string, checks: CheckLine[]): number {
    const passed = checks.length > 0 && checks.every((c) => c.pass);
    if (this.json) {
      this.printJson({ outcome: "autonomy", target: display, passed, checks });
      return passed ? 0 : 1;
    }
    const out = this.context.stdout;
    out.write(`\nOutcome verification summary\n----------------------------\nOutcome: autonomy\nGateway: ${display}\n\n`);
    for (const c of checks) {
      out.write(`[${c.pass ? "PASS" : "FAIL"}] ${c.name}: ${c.detail}\n`);
      if (!c.pass && c.next) out.write(`      next step: ${c.next}\n`);
    }
    out.write(passed ? "\nOutcome verification passed.\n" : "\nOutcome verification FAILED.\n");
    if (!passed) this.context.stderr.write("Error: outcome verification failed\n");
    return passed ? 0 : 1;
  }
}
