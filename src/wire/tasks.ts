/** Names of the tasks API's enums (see enum-names.ts for the rule). */
import { BlockedReasonSchema, TaskStateSchema, type BlockedReason, type TaskState } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { EnumNames } from "./enum-names.js";

/** queued, running, blocked, retry_wait, done, failed, cancelled */
export const taskStateNames = new EnumNames<TaskState>(TaskStateSchema);
/** approval_required, config_missing, delivery_failure, external_dependency, operator_action_required, unknown */
export const blockedReasonNames = new EnumNames<BlockedReason>(BlockedReasonSchema);
