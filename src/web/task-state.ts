import { TaskState, TaskStateSchema } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { enumName } from "./format.js";
import type { Tone } from "./ui.js";

export const STATE_TONE: Record<number, Tone> = {
  [TaskState.QUEUED]: "info",
  [TaskState.RUNNING]: "info",
  [TaskState.BLOCKED]: "warn",
  [TaskState.RETRY_WAIT]: "warn",
  [TaskState.DONE]: "ok",
  [TaskState.FAILED]: "fail",
  [TaskState.CANCELLED]: "muted",
};
export const stateName = (s: TaskState) => enumName(TaskStateSchema, s);
