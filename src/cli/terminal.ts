/**
 * Characters that must never reach a terminal from remote data: C0/C1 controls (but LF and
 * TAB), bidi overrides and isolates, zero-width and other invisible formatting characters.
 */
const UNSAFE =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: each invisible code point is matched on its own, joiners included, so that none can hide in a line.
  /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFF9-\uFFFB]|\uDB40[\uDC01\uDC20-\uDC7F\uDD00-\uDDEF]/g;

export function stripTerminalUnsafe(text: string): string {
  return text.replace(UNSAFE, "");
}

/** `5s`, `1m 5s`, `1h 1m 5s`, `1d 1h 1m 1s`: the largest nonzero unit decides what is shown. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h ${m}m ${sec}s`;
  if (h > 0) return `${h}h ${m}m ${sec}s`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export interface Painter {
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

/** ANSI colours only when writing to a terminal (and NO_COLOR is not set in `env`). */
export function painter(stream: NodeJS.WritableStream, env: Record<string, string | undefined>): Painter {
  const on = (stream as { isTTY?: boolean }).isTTY === true && !env.NO_COLOR;
  const wrap = (code: string) => (s: string) => (on ? `\u001b[${code}m${s}\u001b[0m` : s);
  return { green: wrap("32"), yellow: wrap("33"), red: wrap("31"), bold: wrap("1"), dim: wrap("2") };
}
