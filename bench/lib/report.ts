import type { Row } from "./types.js";

export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

const ratio = (r: number | null | undefined) => {
  if (r === null || r === undefined || !Number.isFinite(r)) return "—";
  if (r >= 100) return `${Math.round(r).toLocaleString("en-US")}×`;
  if (r < 0.01 && r > 0) return `${r.toPrecision(2)}×`;
  return `${r.toFixed(2)}×`;
};
const met = (m: boolean | null) => (m === null ? "" : m ? "yes" : "NO");

function cells(r: Row): string[] {
  return [
    r.name,
    r.unit,
    fmt(r.median),
    fmt(r.min),
    fmt(r.max),
    r.baseline ? fmt(r.baseline.median) : "",
    r.baseline ? ratio(r.ratio) : "",
    r.goal?.label ?? "",
    met(r.met),
    r.note ?? "",
  ];
}

const HEAD = ["benchmark", "unit", "median", "min", "max", "baseline", "ratio", "goal", "met?", "note"];

/** Plain-text table for the console, grouped by benchmark. */
export function textTable(rows: Row[]): string {
  const body = rows.map(cells);
  const noteCol = HEAD.length - 1;
  const widths = HEAD.map((h, i) => (i === noteCol ? 0 : Math.max(h.length, ...body.map((c) => c[i]!.length))));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === noteCol ? v : i >= 2 && i <= 6 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out: string[] = [line(HEAD), widths.map((w) => "-".repeat(w)).join("  ")];
  let group = "";
  rows.forEach((r, i) => {
    if (r.group !== group) {
      group = r.group;
      out.push(`[${group}]`);
    }
    out.push(line(body[i]!));
  });
  return out.join("\n");
}

/** Markdown table (README, results.md). */
export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const out = [`| ${HEAD.join(" | ")} |`, `|${HEAD.map((_, i) => (i >= 2 && i <= 6 ? "---:" : "---")).join("|")}|`];
  let group = "";
  for (const r of rows) {
    if (r.group !== group) {
      group = r.group;
      out.push(`| **${esc(group)}** |  |  |  |  |  |  |  |  |  |`);
    }
    out.push(`| ${cells(r).map(esc).join(" | ")} |`);
  }
  return out.join("\n");
}
