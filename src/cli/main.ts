import { Builtins, Cli, type Command } from "clipanion";
import type { CaraContext } from "./base.js";
import { VERSION } from "../package-info.js";
import { StartCommand } from "./start.js";
import { StatusCommand } from "./status.js";
import { VersionCommand } from "./version.js";
import { TaskCancelCommand } from "./task/cancel.js";
import { TaskCreateCommand } from "./task/create.js";
import { TaskGetCommand } from "./task/get.js";
import { TaskListCommand } from "./task/list.js";
import { TaskResumeCommand } from "./task/resume.js";
import { TaskRetryCommand } from "./task/retry.js";
import { TaskUpdateCommand } from "./task/update.js";
import { TaskWatchCommand } from "./task/watch.js";
import { VerifyCommand } from "./verify.js";
import { LogsCommand } from "./logs.js";
import { BackupCommand } from "./backup/create.js";
import { BackupInspectCommand } from "./backup/inspect.js";
import { BackupListCommand } from "./backup/list.js";
import { BackupVerifyCommand } from "./backup/verify.js";
import { RestoreCommand } from "./restore.js";
import { InstallCommand } from "./install.js";
import { UpdateCommand } from "./update/update.js";
import { UpdateVerifyCommand } from "./update/verify.js";
import { CompletionCommand } from "./completion.js";
import { HelpCommand } from "./help-command.js";
import { jsonError } from "./json-error.js";
import { printJson } from "./output.js";
import { commandOf, fromClipanion, missingPositional, missingRequired, unknownCommand, unknownOption } from "./suggest.js";
import { nameValues } from "./value-names.js";

/** clipanion's Cli with every option value named in help and usage text (`--port <port>`, not `--port #0`). */
class CaraCli extends Cli<CaraContext> {
  protected override getUsageByIndex(...args: Parameters<Cli<CaraContext>["getUsageByIndex"]>): ReturnType<Cli<CaraContext>["getUsageByIndex"]> {
    const { usage, options } = super.getUsageByIndex(...args);
    return { usage: nameValues(usage), options: options.map((o) => ({ ...o, definition: nameValues(o.definition) })) };
  }

  override error(...args: Parameters<Cli<CaraContext>["error"]>): string {
    return nameValues(super.error(...args));
  }
}

export function buildCli(context: CaraContext): Cli<CaraContext> {
  const cli = new CaraCli({
    binaryLabel: "cara: the Carapace control plane",
    binaryName: "cara",
    binaryVersion: VERSION,
    enableColors: (context.stdout as { isTTY?: boolean }).isTTY === true && !context.env.NO_COLOR,
  });
  cli.register(StartCommand);
  cli.register(StatusCommand);
  cli.register(VersionCommand);
  for (const command of [TaskCreateCommand, TaskListCommand, TaskGetCommand, TaskCancelCommand, TaskRetryCommand, TaskResumeCommand, TaskUpdateCommand, TaskWatchCommand]) cli.register(command);
  cli.register(VerifyCommand);
  cli.register(LogsCommand);
  for (const command of [BackupCommand, BackupVerifyCommand, BackupInspectCommand, BackupListCommand, RestoreCommand]) cli.register(command);
  for (const command of [UpdateCommand, UpdateVerifyCommand, InstallCommand]) cli.register(command);
  cli.register(HelpCommand);
  cli.register(CompletionCommand);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  return cli;
}

/**
 * Runs the CLI: exit 0 ok, 1 the operation failed, 2 usage error (printed to stderr). Everything
 * it reads of the world (streams, environment, working directory) comes from `context`; it sets
 * no process-wide state, so one process may run it many times.
 */
export async function main(args: string[], context: CaraContext = Cli.defaultContext): Promise<number> {
  const cli = buildCli(context);
  let command: Command<CaraContext>;
  try {
    command = cli.process(args, context);
  } catch (err) {
    return usageError(cli, args, context, err);
  }
  return cli.run(command, context);
}

/**
 * A command line that names no command, or a command without what it requires: one line saying
 * what is wrong (an unknown command with the nearest one, a missing required option, else
 * clipanion's own message), and where to read more. Exit 2; with `--json`, the error document.
 */
function usageError(cli: Cli<CaraContext>, args: string[], context: CaraContext, err: unknown): number {
  const commands = fromClipanion(cli.definitions());
  const command = commandOf(args, commands);
  const unknown = unknownCommand(args, commands);
  const option = command && !unknown ? unknownOption(args, command) : undefined;
  const missing = command && !unknown && !option ? (missingRequired(args, command) ?? missingPositional(args, command)) : undefined;
  const message = unknown ?? option ?? missing;
  const more = command && !unknown && command.path.length > 0 ? `Run 'cara ${command.path.join(" ")} --help' for usage.` : "Run 'cara help' for the list of commands.";
  if (args.includes("--json")) {
    const text = message ?? cli.error(err, { colored: false }).split("\n")[0]!.replace(/^Unknown Syntax Error: /, "");
    printJson(context.stdout, jsonError(text, { code: "usage", details: {} }));
    return 2;
  }
  context.stderr.write(message !== undefined ? `Error: ${message}\n` : cli.error(err, { colored: false }));
  context.stderr.write(`${more}\n`);
  return 2;
}
