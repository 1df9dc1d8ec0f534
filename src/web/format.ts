// Display helpers: sizes, durations, times and enum names the way the CLI prints them.
import type { DescEnum } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { shortEnumName } from "../wire/enum-names.js";

/** An enum value as the CLI names it (TASK_STATE_RETRY_WAIT -> "retry_wait"); the zero value is "unspecified". */
export function enumName(schema: DescEnum, value: number): string {
  const v = schema.values.find((x) => x.number === value);
  return v ? shortEnumName(schema, v.name) : `unknown (${value})`;
}

export function bytes(n: number | bigint): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let x = v / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(x < 10 ? 1 : 0)} ${units[i]}`;
}

/** "3m 12s", "2h 5m", "4d 3h": like `cara status`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Local date and time, to the second: 2026-01-02 03:04:05. */
export function dateTime(ms: number | bigint | undefined): string {
  if (ms === undefined) return "—";
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Time of day with milliseconds, for log lines. */
export function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export const tsMs = (t: Timestamp | undefined): number | undefined => (t ? timestampDate(t).getTime() : undefined);

/** "in 5m 2s" / "12s ago" relative to now. */
export function relative(ms: number | bigint | undefined, now: number): string {
  if (ms === undefined) return "—";
  const diff = (Number(ms) - now) / 1000;
  if (Math.abs(diff) < 1) return "just now";
  return diff >= 0 ? `in ${duration(diff)}` : `${duration(-diff)} ago`;
}
