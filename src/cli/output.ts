/**
 * How commands print: one JSON document for `--json` (nothing else on stdout), human text
 * otherwise; aligned columns; byte counts. Values from the server go through stripTerminalUnsafe
 * before they reach human text (the callers do that: they know which cells are remote data).
 */
export { formatBytes as bytes } from "../format-bytes.js";

/**
 * JSON text of a `--json` value, whatever a command hands in: no protobuf-es internals
 * (`$typeName` keys are left out) and 64-bit integers (bigint) as numbers when a double holds
 * them exactly, else as strings.
 */
export function jsonText(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (key, v: unknown) => {
      if (key === "$typeName") return undefined;
      if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
      return v;
    },
    indent,
  );
}

/** `value` as one indented JSON document. */
export function printJson(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${jsonText(value, 2)}\n`);
}

/** `value` as one JSON document on one line (a line of a stream: `logs`, `task watch`). */
export function printJsonLine(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${jsonText(value)}\n`);
}

/** `value` as one JSON document when `json`, else the text `human()` gives (lines, or text ending in a newline). */
export function print(out: NodeJS.WritableStream, value: unknown, options: { json: boolean; human: () => string | readonly string[] }): void {
  if (options.json) {
    printJson(out, value);
    return;
  }
  const text = options.human();
  out.write(typeof text === "string" ? text : text.map((line) => `${line}\n`).join(""));
}

/**
 * Rows as aligned columns: each column as wide as its widest cell, two spaces between columns,
 * the last column not padded and no trailing blanks. The first row is usually the header.
 */
export function columns(rows: readonly (readonly string[])[]): string[] {
  const count = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: count }, (_, i) => Math.max(0, ...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}
