import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "clipanion";
import { BackupService } from "../../../gen/carapace/backup/v1/backup_pb.js";
import { ClientCommand } from "../base.js";
import { bytes } from "../output.js";
import { stripTerminalUnsafe } from "../terminal.js";

export class BackupListCommand extends ClientCommand {
  static override paths = [["backup", "list"]];
  static override usage = Command.Usage({
    category: "Backup",
    description: "List the archives in the server's <state>/backups/ (backup tasks, pre-restore and pre-update backups)",
    details:
      "One line per archive, newest first: time, size, origin, name and the sections its manifest lists (only the head of each archive is read; use `cara backup verify` to check a whole archive). An archive whose marker or manifest cannot be read is listed as unreadable, with the reason.",
    examples: [
      ["List", "cara backup list"],
      ["As JSON", "cara backup list --json"],
    ],
  });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });
  async run(): Promise<number> {
    const res = await this.withClient(BackupService, this.timeoutMs(30_000), (c) => c.listBackups({}));
    this.print(
      {
        directory: res.directory,
        backups: res.backups.map((b) => ({
          name: b.name,
          path: b.path,
          bytes: Number(b.sizeBytes),
          createdAt: b.createdAt ? timestampDate(b.createdAt).toISOString() : null,
          origin: b.origin,
          sections: b.sections,
          caraVersion: b.caraVersion ?? null,
          error: b.error ?? null,
        })),
      },
      {
        json: this.json,
        human: () =>
          res.backups.length === 0
            ? [`No backups in ${res.directory}.`]
            : res.backups.map((b) => {
                const what = b.error !== undefined ? `unreadable: ${stripTerminalUnsafe(b.error)}` : b.sections.join(",") || "(no sections)";
                return `${b.createdAt ? timestampDate(b.createdAt).toISOString() : "?"}  ${bytes(Number(b.sizeBytes)).padStart(10)}  ${b.origin.padEnd(11)}  ${stripTerminalUnsafe(b.name)}  ${what}`;
              }),
      },
    );
    return 0;
  }
}
