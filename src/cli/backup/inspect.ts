import { Command } from "clipanion";
import { InspectingCommand } from "./common.js";

export class BackupInspectCommand extends InspectingCommand {
  static override paths = [["backup", "inspect"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Show what a backup holds (sections, files, sizes, versions) and verify it",
    examples: [
      ["Inspect", "cara backup inspect ./carapace-backup.tar.gz"],
      ["As JSON", "cara backup inspect ./carapace-backup.tar.gz --json"],
    ],
  });
  async run(): Promise<number> {
    return this.report(await this.inspect(true), true);
  }
}
