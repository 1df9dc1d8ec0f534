import { Command } from "clipanion";
import { InspectingCommand } from "./common.js";

export class BackupVerifyCommand extends InspectingCommand {
  static override paths = [["backup", "verify"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Verify a backup without extracting it (marker, manifest, every hash, the HMAC)",
    details: "Exit 0 when the archive is complete, untampered and made by this deployment; 1 otherwise, with every problem named.",
    examples: [["Verify", "cara backup verify ./carapace-backup.tar.gz"]],
  });
  async run(): Promise<number> {
    return this.report(await this.inspect(false), false);
  }
}

