/** Names of the update API's enums (see enum-names.ts for the rule). */
import {
  RollbackStateSchema,
  UpdateOutcomeSchema,
  UpdatePhaseSchema,
  UpdateTransactionStateSchema,
  type RollbackState,
  type UpdateOutcome,
  type UpdatePhase,
  type UpdateTransactionState,
} from "../../gen/carapace/update/v1/update_pb.js";
import { EnumNames } from "./enum-names.js";

/** created, downloading, downloaded, verified, applying, applied, failed */
export const updatePhaseNames = new EnumNames<UpdatePhase>(UpdatePhaseSchema);
/** in_progress, applied, failed */
export const transactionStateNames = new EnumNames<UpdateTransactionState>(UpdateTransactionStateSchema);
/** pending, started, cleared, rolled_back, rollback_failed */
export const rollbackStateNames = new EnumNames<RollbackState>(RollbackStateSchema);
/** applied, already_up_to_date, failed */
export const updateOutcomeNames = new EnumNames<UpdateOutcome>(UpdateOutcomeSchema);
