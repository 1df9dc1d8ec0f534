/** Names of the ops API's enums (see enum-names.ts for the rule). */
import { CheckStatusSchema, LogLevelSchema, OverallStatusSchema, type CheckStatus, type LogLevel, type OverallStatus } from "../../gen/carapace/ops/v1/ops_pb.js";
import { EnumNames } from "./enum-names.js";

/** trace, debug, info, warn, error, fatal */
export const logLevelNames = new EnumNames<LogLevel>(LogLevelSchema);
/** ok, warn, fail */
export const checkStatusNames = new EnumNames<CheckStatus>(CheckStatusSchema);
/** healthy, degraded, failing */
export const overallStatusNames = new EnumNames<OverallStatus>(OverallStatusSchema);
