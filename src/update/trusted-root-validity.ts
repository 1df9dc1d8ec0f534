/**
 * The validity windows of a Sigstore trusted root, checked before the library reads it.
 *
 * Every key and CA in a trusted root is trusted only within its `validFor` window; the trusted
 * root specification makes `start` required. @sigstore/verify fills a missing `start` (or a
 * missing `validFor`) with the beginning of time, so a root that lost its `start` (hand edited,
 * truncated, produced by a broken tool) would silently trust a log key or CA for entries and
 * certificates of any date. We refuse such a root as malformed instead, naming the field.
 * `end` stays optional (an open window is how the current keys are listed).
 */

/** Where each list keeps its window: log keys under `publicKey.validFor`, CAs and TSAs under `validFor`. */
const WINDOWS = [
  { list: "tlogs", path: ["publicKey", "validFor"] },
  { list: "ctlogs", path: ["publicKey", "validFor"] },
  { list: "certificateAuthorities", path: ["validFor"] },
  { list: "timestampAuthorities", path: ["validFor"] },
] as const;

// RFC 3339 as protobuf JSON writes a Timestamp: date, time, optional fraction, Z or an offset.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function timestampProblem(value: unknown, field: string): string | undefined {
  if (typeof value !== "string" || !RFC3339.test(value) || Number.isNaN(Date.parse(value))) {
    return `${field} is ${JSON.stringify(value)}, not an RFC 3339 timestamp (e.g. "2021-01-12T11:53:27Z")`;
  }
  return undefined;
}

/**
 * The first problem with the validity windows of a trusted root document, as a sentence naming
 * the field (e.g. `tlogs[0].publicKey.validFor.start`), or undefined when every window has a
 * valid `start` (and a valid `end` after it when one is given). Lists that are absent are left
 * to the caller's own checks.
 */
export function validityWindowProblem(root: Record<string, unknown>): string | undefined {
  for (const { list, path } of WINDOWS) {
    const items = root[list];
    if (!Array.isArray(items)) continue;
    for (const [i, item] of items.entries()) {
      let at: unknown = item;
      let field = `${list}[${i}]`;
      for (const key of path) {
        if (!isObject(at)) return `${field} is not an object`;
        at = at[key];
        field += `.${key}`;
      }
      if (at === undefined)
        return `${field} is missing (every entry needs the start of its validity window; without it the entry would be trusted for any date)`;
      if (!isObject(at)) return `${field} is not an object`;
      if (at.start === undefined)
        return `${field}.start is missing (every entry needs the start of its validity window; without it the entry would be trusted for any date)`;
      const start = timestampProblem(at.start, `${field}.start`);
      if (start !== undefined) return start;
      if (at.end !== undefined) {
        const end = timestampProblem(at.end, `${field}.end`);
        if (end !== undefined) return end;
        if (Date.parse(at.end as string) < Date.parse(at.start as string)) return `${field}.end (${String(at.end)}) is before its start (${String(at.start)})`;
      }
    }
  }
  return undefined;
}
