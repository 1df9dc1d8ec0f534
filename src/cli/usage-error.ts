import type { Cli } from "clipanion";
import type { CaraContext } from "./base.js";
import { jsonError } from "./json-error.js";
import { printJson } from "./output.js";
import { commandOf, fromClipanion, missingPositional, missingRequired, unknownCommand, unknownOption } from "./suggest.js";

/**
 * A command line that names no command, or a command without what it requires: one line saying
 * what is wrong (an unknown command with the nearest one, a missing required option, else
 * clipanion's own message), and where to read more. Exit 2; with `--json`, the error document.
 */
export function usageError(cli: Cli<CaraContext>, args: string[], context: CaraContext, err: unknown): number {
  const commands = fromClipanion(cli.definitions());
  const command = commandOf(args, commands);
  const unknown = unknownCommand(args, commands);
  const option = command && !unknown ? unknownOption(args, command) : undefined;
  const missing = command && !unknown && !option ? (missingRequired(args, command) ?? missingPositional(args, command)) : undefined;
  const message = unknown ?? option ?? missing;
  const more =
    command && !unknown && command.path.length > 0 ? `Run 'cara ${command.path.join(" ")} --help' for usage.` : "Run 'cara help' for the list of commands.";
  if (args.includes("--json")) {
    const text =
      message ??
      cli
        .error(err, { colored: false })
        .split("\n")[0]!
        .replace(/^Unknown Syntax Error: /, "");
    printJson(context.stdout, jsonError(text, { code: "usage", details: {} }));
    return 2;
  }
  context.stderr.write(message !== undefined ? `Error: ${message}\n` : cli.error(err, { colored: false }));
  context.stderr.write(`${more}\n`);
  return 2;
}
