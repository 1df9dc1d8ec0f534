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
import { ScheduleCreateCommand } from "./schedule/create.js";
import { ScheduleDeleteCommand } from "./schedule/delete.js";
import { ScheduleGetCommand } from "./schedule/get.js";
import { ScheduleListCommand } from "./schedule/list.js";
import { SchedulePauseCommand } from "./schedule/pause.js";
import { ScheduleResumeCommand } from "./schedule/resume.js";
import { ScheduleRunCommand } from "./schedule/run.js";
import { ScheduleUpdateCommand } from "./schedule/update.js";
import { VerifyCommand } from "./verify.js";
import { DoctorCommand } from "./doctor.js";
import { BugreportCommand } from "./bugreport.js";
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
import { usageError } from "./usage-error.js";
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
  for (const command of [ScheduleCreateCommand, ScheduleListCommand, ScheduleGetCommand, ScheduleUpdateCommand, SchedulePauseCommand, ScheduleResumeCommand, ScheduleDeleteCommand, ScheduleRunCommand]) cli.register(command);
  cli.register(VerifyCommand);
  cli.register(LogsCommand);
  cli.register(DoctorCommand);
  cli.register(BugreportCommand);
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
