import { Command, Option } from "clipanion";
import { VERSION } from "../package-info.js";
import { CaraCommand } from "./base.js";

export class VersionCommand extends CaraCommand {
  static override paths = [["version"]];
  static override usage = Command.Usage({
    description: "Print the version of this cara",
    examples: [
      ["Print the version", "cara version"],
      ["As JSON", "cara version --json"],
    ],
  });

  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    if (this.json) {
      this.printJson({ version: VERSION, node: process.version, platform: process.platform, arch: process.arch });
    } else {
      this.context.stdout.write(`cara ${VERSION} (node ${process.version}, ${process.platform}/${process.arch})\n`);
    }
    return 0;
  }
}
