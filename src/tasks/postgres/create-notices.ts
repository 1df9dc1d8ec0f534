/**
 * The change notices of a create carry the created rows, so that the other servers on the
 * database apply them as they arrive instead of reading each back with a query: with n servers
 * that read-back was n - 1 queries per create transaction, the cost that grew with every server
 * added (issue 19's benchmark).
 *
 * A notice is `<origin> <id>,<id>,\n<version> <version>\n<record>\n<record>`: the ids first (a
 * reader that only knows the plain form `<origin> <id>,<id>` reads the part before the line break
 * as ids and reads those rows back), then the rows' versions (given by the database in the insert
 * statement, see rows.ts), then each record's JSON on a line of its own (JSON.stringify never
 * writes a raw line break). A record too large for a notice goes in a plain one and is read back.
 * Updates and claims send the same form (rowNotices): with 4 servers, every claim and finished
 * attempt was read back by the 3 others.
 */

/** A NOTIFY payload must stay under 8000 bytes. */
export const NOTICE_BYTES = 7000;
/** Room a version takes in a notice: up to 19 digits and a space. */
const VERSION_BYTES = 20;

/** The create notices of rows (`ids[i]` with record JSON `records[i]`), as the insert statement sends them. */
export interface CreateNotices {
  /** For each row, the notice (1-based) that carries it, or 0 when it is too large for one. */
  chunkOf: number[];
  /** Per notice: `<origin> <ids>,\n` (the versions follow, added by the database). */
  heads: string[];
  /** Per notice: `\n` and the records, one per line. */
  bodies: string[];
  /** Plain notices naming the rows too large to carry. */
  plain: string[];
}

export function createNotices(origin: string, ids: readonly string[], records: readonly string[]): CreateNotices {
  const out: CreateNotices = { chunkOf: [], heads: [], bodies: [], plain: [] };
  const large: string[] = [];
  let chunkIds: string[] = [];
  let chunkRecords: string[] = [];
  let bytes = 0;
  const base = Buffer.byteLength(origin) + 3;
  const close = () => {
    if (chunkIds.length === 0) return;
    out.heads.push(`${origin} ${chunkIds.join(",")},\n`);
    out.bodies.push(`\n${chunkRecords.join("\n")}`);
    chunkIds = [];
    chunkRecords = [];
    bytes = 0;
  };
  for (const [i, id] of ids.entries()) {
    const record = records[i]!;
    const cost = Buffer.byteLength(id) + 1 + VERSION_BYTES + Buffer.byteLength(record) + 1;
    if (base + cost > NOTICE_BYTES) {
      out.chunkOf.push(0);
      large.push(id);
      continue;
    }
    if (base + bytes + cost > NOTICE_BYTES) close();
    chunkIds.push(id);
    chunkRecords.push(record);
    bytes += cost;
    out.chunkOf.push(out.heads.length + 1);
  }
  close();
  out.plain = plainNotices(origin, large);
  return out;
}

/**
 * The notices of written rows whose versions are already known (updates and claims: the statement
 * returned them), complete and ready to send: the same form as a create's, so the other servers
 * apply a claim or a finished attempt without reading it back either. `record` is the row's JSON.
 */
export function rowNotices(origin: string, rows: readonly { id: string; version: bigint; record: string }[]): string[] {
  const notices = createNotices(
    origin,
    rows.map((r) => r.id),
    rows.map((r) => r.record),
  );
  const versions: string[][] = notices.heads.map(() => []);
  for (const [i, chunk] of notices.chunkOf.entries()) if (chunk > 0) versions[chunk - 1]!.push(String(rows[i]!.version));
  return [...notices.heads.map((head, k) => `${head}${versions[k]!.join(" ")}${notices.bodies[k]}`), ...notices.plain];
}

/** The plain notices `<origin> <id>,<id>` naming `ids` (each under the size limit). */
export function plainNotices(origin: string, ids: readonly string[]): string[] {
  const out: string[] = [];
  let chunk: string[] = [];
  let bytes = 0;
  for (const id of ids) {
    if (bytes + id.length + 1 > NOTICE_BYTES - origin.length - 1 && chunk.length > 0) {
      out.push(`${origin} ${chunk.join(",")}`);
      chunk = [];
      bytes = 0;
    }
    chunk.push(id);
    bytes += id.length + 1;
  }
  if (chunk.length > 0) out.push(`${origin} ${chunk.join(",")}`);
  return out;
}

/** A notice as read: who sent it, the ids it names, and the rows it carries (to apply without a read). */
export interface ReadNotice {
  origin: string;
  /** Ids to read back: those the notice names without carrying their row. */
  ids: string[];
  rows: { id: string; version: string; record: string }[];
}

/** Reads a notice of either form; undefined for one that is not a change notice. */
export function readNotice(payload: string): ReadNotice | undefined {
  const space = payload.indexOf(" ");
  if (space < 0) return undefined;
  const origin = payload.slice(0, space);
  const lineBreak = payload.indexOf("\n", space);
  const ids = payload
    .slice(space + 1, lineBreak < 0 ? undefined : lineBreak)
    .split(",")
    .filter((id) => id !== "");
  if (lineBreak < 0) return { origin, ids, rows: [] };
  const lines = payload.slice(lineBreak + 1).split("\n");
  const versions = lines[0]!.split(" ");
  // A notice that does not add up is read back whole rather than half-applied.
  if (versions.length !== ids.length || lines.length !== ids.length + 1 || !versions.every((v) => /^\d+$/.test(v))) {
    return { origin, ids, rows: [] };
  }
  return { origin, ids: [], rows: ids.map((id, i) => ({ id, version: versions[i]!, record: lines[i + 1]! })) };
}
