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
    const v = { version: VERSION, node: process.version, platform: process.platform, arch: process.arch };
    this.print(v, { json: this.json, human: () => [`cara ${v.version} (node ${v.node}, ${v.platform}/${v.arch})`] });
    return 0;
  }
}
