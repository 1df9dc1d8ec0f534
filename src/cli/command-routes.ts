import type { CommandClass } from "clipanion";
import type { CaraContext } from "./base.js";

/**
 * Where each verb's implementation lives, by its command path, so that running a verb imports
 * that verb's module (and what it imports) and nothing else. `paths` equals the class's own
 * `paths` (test/cli/command-routes.test.ts checks it). `help` and `completion` are not here:
 * they read every command, so they run on the parser with every command registered.
 */
export interface CommandRoute {
  paths: string[][];
  load: () => Promise<CommandClass<CaraContext>>;
}

export const COMMAND_ROUTES: readonly CommandRoute[] = [
  {
    paths: [["start"]],
    // The server's heap limits go on before its modules load (StartCommand sets them too, for the default command).
    load: async () => {
      (await import("../server/heap-limits.js")).limitHeapGrowth(process.execArgv, process.env.NODE_OPTIONS);
      return (await import("./start.js")).StartCommand;
    },
  },
  { paths: [["status"]], load: async () => (await import("./status.js")).StatusCommand },
  { paths: [["version"]], load: async () => (await import("./version.js")).VersionCommand },
  { paths: [["task", "cancel"]], load: async () => (await import("./task/cancel.js")).TaskCancelCommand },
  { paths: [["task", "create"]], load: async () => (await import("./task/create.js")).TaskCreateCommand },
  { paths: [["task", "get"]], load: async () => (await import("./task/get.js")).TaskGetCommand },
  { paths: [["task", "list"]], load: async () => (await import("./task/list.js")).TaskListCommand },
  { paths: [["task", "resume"]], load: async () => (await import("./task/resume.js")).TaskResumeCommand },
  { paths: [["task", "retry"]], load: async () => (await import("./task/retry.js")).TaskRetryCommand },
  { paths: [["task", "update"]], load: async () => (await import("./task/update.js")).TaskUpdateCommand },
  { paths: [["task", "watch"]], load: async () => (await import("./task/watch.js")).TaskWatchCommand },
  {
    paths: [
      ["tasks", "migrate"],
      ["task", "migrate"],
    ],
    load: async () => (await import("./task/migrate.js")).TasksMigrateCommand,
  },
  { paths: [["schedule", "create"]], load: async () => (await import("./schedule/create.js")).ScheduleCreateCommand },
  { paths: [["schedule", "delete"]], load: async () => (await import("./schedule/delete.js")).ScheduleDeleteCommand },
  { paths: [["schedule", "get"]], load: async () => (await import("./schedule/get.js")).ScheduleGetCommand },
  { paths: [["schedule", "list"]], load: async () => (await import("./schedule/list.js")).ScheduleListCommand },
  { paths: [["schedule", "pause"]], load: async () => (await import("./schedule/pause.js")).SchedulePauseCommand },
  { paths: [["schedule", "resume"]], load: async () => (await import("./schedule/resume.js")).ScheduleResumeCommand },
  { paths: [["schedule", "run"]], load: async () => (await import("./schedule/run.js")).ScheduleRunCommand },
  { paths: [["schedule", "update"]], load: async () => (await import("./schedule/update.js")).ScheduleUpdateCommand },
  { paths: [["verify"]], load: async () => (await import("./verify.js")).VerifyCommand },
  { paths: [["doctor"]], load: async () => (await import("./doctor.js")).DoctorCommand },
  { paths: [["bugreport"]], load: async () => (await import("./bugreport.js")).BugreportCommand },
  { paths: [["logs"]], load: async () => (await import("./logs.js")).LogsCommand },
  { paths: [["backup"], ["backup", "create"]], load: async () => (await import("./backup/create.js")).BackupCommand },
  { paths: [["backup", "inspect"]], load: async () => (await import("./backup/inspect.js")).BackupInspectCommand },
  { paths: [["backup", "list"]], load: async () => (await import("./backup/list.js")).BackupListCommand },
  { paths: [["backup", "verify"]], load: async () => (await import("./backup/verify.js")).BackupVerifyCommand },
  { paths: [["restore"]], load: async () => (await import("./restore.js")).RestoreCommand },
  { paths: [["install"]], load: async () => (await import("./install.js")).InstallCommand },
  { paths: [["update"]], load: async () => (await import("./update/update.js")).UpdateCommand },
  { paths: [["update", "verify"]], load: async () => (await import("./update/verify.js")).UpdateVerifyCommand },
  { paths: [["db", "migrate"]], load: async () => (await import("./db/migrate.js")).DbMigrateCommand },
];

/**
 * The route of the command that `args` names: the longest command path that the leading words of
 * `args` spell. None when `args` start with an option or name no routed path.
 */
export function routeOf(args: readonly string[]): CommandRoute | undefined {
  let best: { route: CommandRoute; length: number } | undefined;
  for (const route of COMMAND_ROUTES) {
    for (const path of route.paths) {
      if (path.length === 0 || path.length > args.length) continue;
      if (!path.every((word, i) => args[i] === word)) continue;
      if (!best || path.length > best.length) best = { route, length: path.length };
    }
  }
  return best?.route;
}
