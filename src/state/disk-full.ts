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
  const e = err as NodeJS.ErrnoException;
  const path = e.path ?? fallbackPath;
  let free = "";
  for (const dir of [path, dirname(path)]) {
    try {
      const st = statfsSync(dir);
      free = `, ${formatBytes(Number(st.bavail) * Number(st.bsize))} free`;
      break;
    } catch {
      // the file itself may not exist: try its directory
    }
  }
  const what = e.code === "EDQUOT" ? "the disk quota is exhausted" : "the filesystem is full";
  return `${doing}: ${what} (${e.code} writing ${path}${free}). Free space on that filesystem (see 'df -h ${dirname(path)}'), then try again`;
}
