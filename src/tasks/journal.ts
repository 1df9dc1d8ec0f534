/**
 * The task store's journal format, `queue.journal`: JSON lines appended after `queue.json`.
 *
 *   {"op":"put","task":{...}}     a task record as it now is
 *   {"op":"del","id":"..."}       a task removed
 *   {"op":"commit"}               the end of one batch (one group-committed write)
 *
 * A batch is acknowledged only after all of its lines, commit line included, are written and
 * fsync'ed. So anything after the last commit line was never acknowledged: a write that a crash
 * or a full disk cut short. The reader drops such a tail and keeps every committed batch; a bad
 * line *before* the last commit cannot be explained by a torn write and fails closed.
 *
 * Journals written before commit lines existed have none; their complete lines are applied one
 * by one as they always were. Runs of zero bytes ("holes") are never written by cara: they are
 * what a write past the real end of file left behind (older versions could do that on a full
 * disk). The reader skips them, reports how many bytes, and applies the lines around them.
 */

export type JournalOp = { op: "put"; task: unknown; line: number } | { op: "del"; id: string; line: number };

export const COMMIT_LINE = '{"op":"commit"}\n';

export interface ParsedJournal {
  /** Operations to apply, in order (from committed batches, or every line of a legacy journal). */
  ops: JournalOp[];
  /** Byte length of the part to keep: the journal is truncated to it. */
  goodEnd: number;
  /** The journal has commit lines (written by this format). */
  framed: boolean;
  /** Bytes after goodEnd (a torn, never acknowledged write). */
  tornBytes: number;
  /** Complete operations in the torn tail (dropped). */
  tornOps: number;
  /** Zero bytes skipped (holes) and where the first one starts. */
  holeBytes: number;
  firstHoleAt: number;
  /** Set when the journal is damaged in a way a torn write cannot explain. */
  problem?: string;
}

type Parsed = { kind: "op"; op: JournalOp } | { kind: "commit" } | { kind: "bad"; message: string };

function parseLine(text: string, line: number): Parsed {
  let entry: { op?: unknown; task?: unknown; id?: unknown };
  try {
    entry = JSON.parse(text) as typeof entry;
  } catch (err) {
    return { kind: "bad", message: (err as Error).message };
  }
  if (typeof entry !== "object" || entry === null) return { kind: "bad", message: "not a JSON object" };
  if (entry.op === "put") return { kind: "op", op: { op: "put", task: entry.task, line } };
  if (entry.op === "del" && typeof entry.id === "string") return { kind: "op", op: { op: "del", id: entry.id, line } };
  if (entry.op === "commit") return { kind: "commit" };
  return { kind: "bad", message: "unknown journal entry" };
}

export function parseJournal(raw: Buffer): ParsedJournal {
  const result: ParsedJournal = { ops: [], goodEnd: 0, framed: false, tornBytes: 0, tornOps: 0, holeBytes: 0, firstHoleAt: -1 };
  const parsed: { item: Parsed; end: number }[] = [];
  let offset = 0;
  while (offset < raw.length) {
    const nl = raw.indexOf(10, offset);
    if (nl < 0) break; // an incomplete last line: its write never completed
    // Text after the last zero byte of a line is a line of its own; the bytes before a hole are
    // the head of a line whose write was cut short.
    const lastZero = raw.lastIndexOf(0, nl);
    const from = lastZero >= offset ? lastZero + 1 : offset;
    if (lastZero >= offset) {
      if (result.firstHoleAt < 0) result.firstHoleAt = offset;
      for (let i = offset; i < from; i++) if (raw[i] === 0) result.holeBytes++;
    }
    if (from < nl) parsed.push({ item: parseLine(raw.subarray(from, nl).toString("utf8"), parsed.length + 1), end: nl + 1 });
    offset = nl + 1;
  }
  let lastCommit = -1;
  for (let i = 0; i < parsed.length; i++) if ((parsed[i] as { item: Parsed }).item.kind === "commit") lastCommit = i;
  result.framed = lastCommit >= 0;
  // Framed: only what a commit line closes counts. Legacy: every complete line.
  const keep = result.framed ? lastCommit + 1 : parsed.length;
  for (let i = 0; i < keep; i++) {
    const { item } = parsed[i] as { item: Parsed };
    if (item.kind === "bad") {
      result.problem = `line ${i + 1}: ${item.message}`;
      return result;
    }
    if (item.kind === "op") result.ops.push(item.op);
  }
  for (let i = keep; i < parsed.length; i++) if ((parsed[i] as { item: Parsed }).item.kind === "op") result.tornOps++;
  result.goodEnd = result.framed ? (parsed[lastCommit] as { end: number }).end : offset;
  result.tornBytes = raw.length - result.goodEnd;
  return result;
}
