import { Cli, type Command } from "clipanion";
import { runningAsExecutable } from "../executable-form.js";
import type { CaraContext } from "./base.js";
import { newCli } from "./cara-cli.js";
import { routeOf } from "./command-routes.js";

/**
 * Runs the CLI: exit 0 ok, 1 the operation failed, 2 usage error (printed to stderr). Everything
 * it reads of the world (streams, environment, working directory) comes from `context`; it sets
 * no process-wide state, so one process may run it many times.
 *
 * A command line that names a verb is parsed by a parser holding that verb alone, so only its
 * module is imported. Everything else (`cara help`, `cara completion`, `--help` at the top, a
 * mistyped verb, a verb's usage error) goes to the parser with every command, which gives the
 * same answers as before.
 */
export async function main(args: string[], context: CaraContext = Cli.defaultContext): Promise<number> {
  // A platform executable copied to `<install>/bin/cara` is that install's launcher, not the CLI
  // (../update/executable-launcher.ts); the launcher ends the process itself.
  if (runningAsExecutable()) {
    const { runAsInstallLauncher } = await import("../update/executable-launcher.js");
    if (runAsInstallLauncher(args)) return new Promise<number>(() => {});
  }
  const route = routeOf(args);
  if (route) {
    const cli = newCli(context);
    cli.register(await route.load());
    let command: Command<CaraContext> | undefined;
    try {
      command = cli.process(args, context);
    } catch {
      // Reported by the full parser below, with its suggestions.
    }
    if (command) return cli.run(command, context);
  }
  return mainWithEveryCommand(args, context);
}

async function mainWithEveryCommand(args: string[], context: CaraContext): Promise<number> {
  const [{ buildCli }, { usageError }] = await Promise.all([import("./all-commands.js"), import("./usage-error.js")]);
  const cli = buildCli(context);
  let command: Command<CaraContext>;
  try {
    command = cli.process(args, context);
  } catch (err) {
    return usageError(cli, args, context, err);
  }
  return cli.run(command, context);
}
