import { orderedRecord, type TaskRecord } from "./model.js";

/**
 * The text of `queue.json` for these records, exactly as the file store writes it when it
 * compacts: one JSON array, two-space indent, fields in the original Rust cara's order, a final
 * newline. A backup of the PostgreSQL store writes its tasks with it, so an archive has one
 * format whichever store made it.
 */
export function queueFileText(records: Iterable<TaskRecord>): string {
  return `${JSON.stringify([...records].map(orderedRecord), null, 2)}\n`;
}
