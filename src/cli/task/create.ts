import { readFile } from "node:fs/promises";
import { Command, Option } from "clipanion";
import { CliFailure, CliUsageError } from "../target.js";
import { parseTaskLines, type TaskLine } from "./task-lines.js";
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

      \`--from-file\` creates many tasks: one JSON object per line, with \`payload\` and optionally \`policy\`
      ({maxAttempts, maxTotalRuntimeMs, maxTurns, maxRunTimeoutSeconds}), \`priority\`, \`labels\`,
      \`idempotencyKey\` and \`nextRunAtMs\` (\`-\` reads standard input). Every line is checked before
      anything is sent; they are sent in calls of up to 1,000 tasks.
    `,
    examples: [
      ["Ask the agent something", `cara task create --payload ${EXAMPLE_PAYLOAD}`],
      [
        "Record an event in an hour",
        `cara task create --payload '{"kind":"systemEvent","text":"deploy done"}' --next-run-at-ms $(( $(date +%s%3N) + 3600000 ))`,
      ],
      ["At most 3 attempts, high priority", `cara task create --payload ${EXAMPLE_PAYLOAD} --max-attempts 3 --priority 10`],
      ["Many tasks, one JSON object per line", `cara task create --from-file tasks.jsonl`],
    ],
  });
  payload = Option.String("--payload", { description: "The task payload as JSON, with a kind (required unless --from-file)" });
  fromFile = Option.String("--from-file", { description: "Create the tasks of a JSON Lines file (- for stdin), one object per line" });
  nextRunAtMs = Option.String("--next-run-at-ms", { description: "Do not run before this Unix time (ms)" });
  priority = Option.String("--priority", { description: "Higher runs first (integer, default 0)" });
  idempotencyKey = Option.String("--idempotency-key", { description: "Create at most once per key" });
  label = Option.Array("--label", { description: "key=value label (repeatable)" });

  async run(): Promise<number> {
    if (this.fromFile !== undefined) return this.createFromFile(this.fromFile);
    if (this.payload === undefined) throw new CliUsageError("missing required option --payload <json>");
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

  /** `--from-file`: every line checked first, then CreateTasks calls of up to BATCH tasks. */
  private async createFromFile(file: string): Promise<number> {
    const flags = {
      "--payload": this.payload,
      "--next-run-at-ms": this.nextRunAtMs,
      "--priority": this.priority,
      "--idempotency-key": this.idempotencyKey,
      "--label": this.label,
      "--max-attempts": this.maxAttempts,
      "--max-total-runtime-ms": this.maxTotalRuntimeMs,
      "--max-turns": this.maxTurns,
      "--max-run-timeout-seconds": this.maxRunTimeoutSeconds,
    };
    const given = Object.entries(flags)
      .filter(([, v]) => v !== undefined)
      .map(([k]) => k);
    if (given.length > 0) throw new CliUsageError(`--from-file takes each task's fields from the file: leave out ${given.join(", ")}`);
    const source = file === "-" ? "stdin" : file;
    const tasks = parseTaskLines(await this.readInput(file), source);
    if (tasks.length === 0) throw new CliUsageError(`${source} has no tasks (one JSON object per line)`);
    const ids: string[] = [];
    let created = 0;
    for (let start = 0; start < tasks.length; start += BATCH) {
      const batch: TaskLine[] = tasks.slice(start, start + BATCH);
      let res;
      try {
        res = await this.call((c) => c.createTasks({ tasks: batch }));
      } catch (err) {
        // What earlier calls created is on disk: say how far it got.
        if (start === 0 || !(err instanceof CliFailure)) throw err;
        throw new CliFailure(`${err.message} (earlier calls created or found the first ${start} of the ${tasks.length} tasks)`, err.facts);
      }
      for (const r of res.results) {
        ids.push(r.task?.id ?? "");
        if (r.created) created++;
      }
    }
    const existing = ids.length - created;
    this.print(
      { created, existing, ids },
      {
        json: this.json,
        human: () =>
          `Created ${created} task${created === 1 ? "" : "s"}${existing > 0 ? `; ${existing} existed already with the same idempotency key` : ""}.\n`,
      },
    );
    return 0;
  }

  private async readInput(file: string): Promise<string> {
    if (file === "-") {
      const chunks: Buffer[] = [];
      for await (const chunk of this.context.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
      return Buffer.concat(chunks).toString("utf8");
    }
    try {
      return await readFile(this.resolvePath(file), "utf8");
    } catch (err) {
      throw new CliFailure(`cannot read ${file}: ${(err as Error).message}`);
    }
  }
}

/** Tasks per CreateTasks call (the API's limit). */
const BATCH = 1000;
