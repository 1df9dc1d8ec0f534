/** Names of the ops API's enums (see enum-names.ts for the rule). */
import {
  CheckStatusSchema,
  DoctorStepStatusSchema,
  LogLevelSchema,
  OverallStatusSchema,
  type CheckStatus,
  type DoctorStepStatus,
  type LogLevel,
  type OverallStatus,
} from "../../gen/carapace/ops/v1/ops_pb.js";
import { EnumNames } from "./enum-names.js";

/** trace, debug, info, warn, error, fatal */
export const logLevelNames = new EnumNames<LogLevel>(LogLevelSchema);
/** ok, warn, fail */
export const checkStatusNames = new EnumNames<CheckStatus>(CheckStatusSchema);
/** healthy, degraded, failing */
export const overallStatusNames = new EnumNames<OverallStatus>(OverallStatusSchema);
/** ok, warn, fail, skip (a doctor step and the report's verdict) */
export const doctorStepStatusNames = new EnumNames<DoctorStepStatus>(DoctorStepStatusSchema);
