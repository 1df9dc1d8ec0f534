import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { formatBytes } from "../format-bytes.js";

/** Whether an error means the filesystem (or the user's quota on it) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/**
 * One line for an operator whose disk is full: which file could not be written, how much is
 * free on that filesystem, and what to do. `fallbackPath` names the place when the error does not.
 */
export function describeDiskFull(err: unknown, fallbackPath: string, doing: string): string {
  const e = err as NodeJS.ErrnoException & { dest?: string };
  // A copy names its source in `path` and what it was writing in `dest`.
  const path = e.dest ?? e.path ?? fallbackPath;
  // The file (a temp file, a snapshot) may be gone by now: ask about its nearest existing ancestor.
  let free = "";
  let where = dirname(path);
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      const st = statfsSync(dir);
      free = `, ${formatBytes(Number(st.bavail) * Number(st.bsize))} free`;
      where = dir;
      break;
    } catch {
      if (dirname(dir) === dir) break;
    }
  }
  const what = e.code === "EDQUOT" ? "the disk quota is exhausted" : "the filesystem is full";
  return `${doing}: ${what} (${e.code} writing ${path}${free}). Free space on that filesystem (see 'df -h ${where}'), then try again`;
}
