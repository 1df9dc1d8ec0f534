import { pino, type Logger, type DestinationStream } from "pino";
import type { LogLevelName } from "../state/config.js";

export type { Logger };

/**
 * The server's logger: JSON lines (pino) with an ISO time, a textual level and a `component`
 * on every child. Secrets are never passed to it; the log pipeline redacts on top of that.
 */
export function createLogger(level: LogLevelName, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
