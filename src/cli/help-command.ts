import { Command, Option } from "clipanion";
import type { CaraContext } from "./base.js";
import { fromClipanion, unknownCommand } from "./suggest.js";

/** `cara help` (every command) and `cara help <command>` (its options and examples); exit 0. */
export class HelpCommand extends Command<CaraContext> {
  static override paths = [["help"]];
  static override usage = Command.Usage({
    description: "List the commands, or show one command's options and examples",
    examples: [
      ["Every command", "cara help"],
      ["One command", "cara help task create"],
    ],
  });
  words = Option.Rest({ name: "command" });

  async execute(): Promise<number> {
    if (this.words.length === 0) {
      this.context.stdout.write(this.cli.usage(null));
      return 0;
    }
    const commands = fromClipanion(this.cli.definitions());
    const wanted = this.words.join(" ");
    const known = commands.some((c) => c.path.join(" ") === wanted);
    if (!known) {
      this.context.stderr.write(`Error: ${unknownCommand(this.words, commands) ?? `unknown command '${wanted}'`}\nRun 'cara help' for the list of commands.\n`);
      return 2;
    }
    return this.cli.run([...this.words, "--help"]);
  }
}
