import { Command, Option } from "clipanion";
import { InspectingCommand } from "./common.js";

export class BackupVerifyCommand extends InspectingCommand {
  static override paths = [["backup", "verify"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "Verify a backup without extracting it (marker, manifest, every hash, the HMAC)",
    details: `
      Exit 0 when the archive is complete, untampered and made by this deployment; 1 otherwise, with every problem named.
      The server checks it; with --offline, or when no server answers on this machine, it is checked here with the
      server secret from CARAPACE_SERVER_SECRET or <state>/auth/server-secret. --allow-foreign checks the marker,
      the manifest and every file's hash but not the HMAC (no secret and no server needed): it says so.
    `,
    examples: [
      ["Verify", "cara backup verify ./carapace-backup.tar.gz"],
      ["The server is down", "cara backup verify ./carapace-backup.tar.gz --offline --state-dir /srv/carapace"],
      ["Made by another deployment: check integrity only", "cara backup verify ./other.tar.gz --allow-foreign"],
    ],
  });
  allowForeign = Option.Boolean("--allow-foreign", false, {
    description: "Check the marker, manifest and every hash, but not the HMAC (authenticity); no secret needed",
  });

  protected override checkAuthenticity(): boolean {
    return !this.allowForeign;
  }
  async run(): Promise<number> {
    return this.report(await this.inspect(false), false);
  }
}
