/** Names of the backup API's enums (see enum-names.ts for the rule). */
import { BackupProblemKindSchema, type BackupProblemKind } from "../../gen/carapace/backup/v1/backup_pb.js";
import { EnumNames } from "./enum-names.js";

/** marker_invalid, manifest_invalid, ... corrupt_archive */
export const problemKindNames = new EnumNames<BackupProblemKind>(BackupProblemKindSchema);
