import assert from "node:assert/strict";
import { test } from "node:test";
import type { EnumNames } from "../../src/wire/enum-names.js";
import { enumValueName } from "../../src/wire/enum-names.js";
import { problemKindNames } from "../../src/wire/backup.js";
import { checkStatusNames, doctorStepStatusNames, logLevelNames, overallStatusNames } from "../../src/wire/ops.js";
import { overlapPolicyNames, scheduleRunOutcomeNames } from "../../src/wire/schedules.js";
import { STEP_STATUSES } from "../../src/ops/doctor.js";
import { blockedReasonNames, taskStateNames } from "../../src/wire/tasks.js";
import { rollbackStateNames, transactionStateNames, updateOutcomeNames, updatePhaseNames } from "../../src/wire/update.js";
import { PROBLEM_KINDS } from "../../src/backup/archive.js";
import { LOG_LEVELS } from "../../src/ops/log-ring.js";
import { BLOCKED_REASONS, TASK_STATES } from "../../src/tasks/model.js";
import { OVERLAP_POLICIES, RUN_OUTCOMES } from "../../src/tasks/schedule.js";
import { MARKER_STATES } from "../../src/update/rollback-marker.js";
import { TX_PHASES, TX_STATES } from "../../src/update/transaction.js";
import { TaskStateSchema } from "../../gen/carapace/tasks/v1/tasks_pb.js";

/**
 * Every enum the CLI, the console or a service names: each declared value but the zero one has a
 * name, the name leads back to the value, and the names are exactly the domain's own list (same
 * order), so a stored or printed name always has a wire value and back.
 */
const ENUMS: [string, EnumNames<number>, readonly string[]][] = [
  ["TaskState", taskStateNames, TASK_STATES],
  ["BlockedReason", blockedReasonNames, BLOCKED_REASONS],
  ["OverlapPolicy", overlapPolicyNames, OVERLAP_POLICIES],
  ["ScheduleRunOutcome", scheduleRunOutcomeNames, RUN_OUTCOMES],
  ["UpdatePhase", updatePhaseNames, TX_PHASES],
  ["UpdateTransactionState", transactionStateNames, TX_STATES],
  ["RollbackState", rollbackStateNames, MARKER_STATES],
  ["UpdateOutcome", updateOutcomeNames, ["applied", "already_up_to_date", "failed"]],
  ["LogLevel", logLevelNames, LOG_LEVELS],
  ["CheckStatus", checkStatusNames, ["ok", "warn", "fail"]],
  ["OverallStatus", overallStatusNames, ["healthy", "degraded", "failing"]],
  ["DoctorStepStatus", doctorStepStatusNames, STEP_STATUSES],
  ["BackupProblemKind", problemKindNames, PROBLEM_KINDS],
];

for (const [label, names, domain] of ENUMS) {
  test(`${label}: wire value -> name -> wire value for every value, and the names are the domain's`, () => {
    assert.deepEqual(names.names, domain);
    for (const name of domain) {
      const value = names.value(name);
      assert.ok(value !== undefined && value > 0, `${label} has ${name}`);
      assert.equal(names.name(value), name);
      assert.equal(names.toWire(name), value);
    }
    assert.equal(names.name(0), undefined);
    assert.equal(names.name(domain.length + 1), undefined);
    assert.equal(names.value("unspecified"), undefined);
    assert.equal(names.toWire("no-such-name"), 0);
    assert.equal(names.toWire(undefined), 0);
  });
}

test("the rule: the proto name without the enum's shared prefix, lower-cased; the zero value has no name", () => {
  assert.equal(enumValueName(TaskStateSchema, 4), "retry_wait");
  assert.equal(enumValueName(TaskStateSchema, 0), undefined);
  assert.equal(enumValueName(TaskStateSchema, 99), undefined);
  assert.equal(taskStateNames.value("RETRY_WAIT"), undefined, "names are lower case only");
});
