/** What a task does, in a few words, for the CLI and the console alike. */
import type { TaskPayload } from "../../gen/carapace/tasks/v1/tasks_pb.js";

/** A payload in a few words: `backup (keep 7)`, `systemEvent "hi"`. */
export function payloadText(p: TaskPayload | undefined): string {
  const k = p?.kind;
  switch (k?.case) {
    case "systemEvent":
      return `systemEvent ${JSON.stringify(k.value.text)}`;
    case "agentTurn":
      return `agentTurn ${JSON.stringify(k.value.message)}${k.value.model ? ` (model ${k.value.model})` : ""}`;
    case "backup":
      return `backup (keep ${k.value.keep})`;
    case "updateCheck":
      return `updateCheck${k.value.channel ? ` (${k.value.channel})` : ""}`;
    default:
      return "unknown payload kind";
  }
}
