import { Builtins, type Cli } from "clipanion";
import type { CaraContext } from "./base.js";
import { newCli } from "./cara-cli.js";
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
import { DbMigrateCommand } from "./db/migrate.js";
import { TasksMigrateCommand } from "./task/migrate.js";
import { CompletionCommand } from "./completion.js";
import { HelpCommand } from "./help-command.js";

/** The parser with every command: help, completion and the nearest-command suggestions read it. */
export function buildCli(context: CaraContext): Cli<CaraContext> {
  const cli = newCli(context);
  cli.register(StartCommand);
  cli.register(StatusCommand);
  cli.register(VersionCommand);
  for (const command of [
    TaskCreateCommand,
    TaskListCommand,
    TaskGetCommand,
    TaskCancelCommand,
    TaskRetryCommand,
    TaskResumeCommand,
    TaskUpdateCommand,
    TaskWatchCommand,
  ])
    cli.register(command);
  for (const command of [
    ScheduleCreateCommand,
    ScheduleListCommand,
    ScheduleGetCommand,
    ScheduleUpdateCommand,
    SchedulePauseCommand,
    ScheduleResumeCommand,
    ScheduleDeleteCommand,
    ScheduleRunCommand,
  ])
    cli.register(command);
  cli.register(VerifyCommand);
  cli.register(LogsCommand);
  cli.register(DoctorCommand);
  cli.register(BugreportCommand);
  for (const command of [BackupCommand, BackupVerifyCommand, BackupInspectCommand, BackupListCommand, RestoreCommand]) cli.register(command);
  for (const command of [UpdateCommand, UpdateVerifyCommand, InstallCommand]) cli.register(command);
  cli.register(DbMigrateCommand);
  cli.register(TasksMigrateCommand);
  cli.register(HelpCommand);
  cli.register(CompletionCommand);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  return cli;
}
