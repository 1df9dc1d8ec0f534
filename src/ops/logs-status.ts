import type { HealthCheck } from "./checks.js";
import type { LogPipeline } from "./log-pipeline.js";
import { formatBytes } from "../format-bytes.js";
import { formatCount } from "../format-count.js";

/** logs: warns when the log file cannot be written (logging goes on to stdout and the ring). */
export function logsCheck(logs: LogPipeline): HealthCheck {
  return {
    name: "logs",
    run() {
      if (!logs.file) return { status: "ok", message: "file logging is off (config logs.file=false); stdout and the ring only" };
      const st = logs.file.status();
      if (!st.writable) {
        return {
          status: "warn",
          message: `cannot write ${st.path} (${st.error ?? "unknown error"}); ${formatCount(st.droppedLines, "line")} kept only in stdout and the ring. Fix the logs directory's permissions or free space`,
        };
      }
      return {
        status: "ok",
        message: `${st.path} (${formatBytes(st.size)}, rotates at ${formatBytes(st.maxBytes)}, keeps ${formatCount(st.maxFiles, "file")})`,
      };
    },
  };
}

/** The status section for the log pipeline (shape of carapace.ops.v1.LogsStatus). */
export function logsStatus(logs: LogPipeline) {
  const ring = logs.ring.stats();
  const file = logs.file?.status();
  return {
    filePath: file?.path ?? "",
    fileSizeBytes: BigInt(file?.size ?? 0),
    ringEntries: ring.size,
    ringCapacity: ring.capacity,
    lastSeq: BigInt(ring.lastSeq),
  };
}
