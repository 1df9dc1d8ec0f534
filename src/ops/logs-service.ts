import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { rpcError } from "../wire/error-details.js";
import { errorTable, onMatch } from "../wire/error-table.js";
import type { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import type { LogFilter as ProtoLogFilter, LogLevel as LogLevelValue } from "../../gen/carapace/ops/v1/ops_pb.js";
import { logLevelNames } from "../wire/ops.js";
import { loadLogPatternEngine } from "./log-pattern.js";
import { checkFollowQuery, checkTailQuery, isLogQueryError, LogQueryError } from "./log-query.js";
import { isDroppedMarker, type LogEntry, type LogLevel, type LogRing } from "./log-ring.js";

function toProtoEntry(e: LogEntry) {
  return {
    seq: BigInt(e.seq),
    time: timestampFromMs(e.time),
    level: logLevelNames.toWire(e.level),
    component: e.component,
    message: e.message,
    fields: e.fields as JsonObject,
  };
}

/** The level for the API enum value: 0 (unspecified) is no minimum; an undeclared number is refused. */
export function levelFromWire(value: LogLevelValue, field = "min_level"): LogLevel | undefined {
  if (value === 0) return undefined;
  const level = logLevelNames.name(value);
  if (level === undefined) throw new LogQueryError(field, `unknown log level ${value}; use 1 (trace) to 6 (fatal), or 0 for all levels`);
  return level as LogLevel;
}

function rawFilter(filter: ProtoLogFilter | undefined) {
  const minLevel = filter?.minLevel ? levelFromWire(filter.minLevel) : undefined;
  return {
    ...(minLevel ? { minLevel } : {}),
    contains: filter?.contains ?? "",
    pattern: filter?.pattern ?? "",
    ...(filter?.since ? { sinceMs: timestampMs(filter.since) } : {}),
  };
}

/** Filter fields live under `filter` in the requests; the others are top-level. */
const FILTER_FIELDS = new Set(["min_level", "contains", "pattern"]);

/** Query errors on the wire. */
const errors = errorTable([
  onMatch(isLogQueryError, (e) => ({
    code: Code.InvalidArgument,
    reason: "LOG_QUERY_INVALID",
    field: FILTER_FIELDS.has(e.field) ? `filter.${e.field}` : e.field,
  })),
]);

export const DEFAULT_MAX_FOLLOWERS = 64;

/**
 * TailLogs and FollowLogs over the server's redacted in-memory ring. Each follower costs at
 * most its queue of bytes (a slow reader is told how many records it missed), and at most
 * `maxFollowers` follow at once.
 */
export function logsService(
  ring: LogRing,
  shutdown: AbortSignal,
  options: { maxFollowers?: number } = {},
): Pick<ServiceImpl<typeof OpsService>, "tailLogs" | "followLogs"> {
  const maxFollowers = options.maxFollowers ?? DEFAULT_MAX_FOLLOWERS;
  let followers = 0;
  return {
    async tailLogs(req) {
      if (req.filter?.pattern) await loadLogPatternEngine();
      let query;
      try {
        query = checkTailQuery({
          ...rawFilter(req.filter),
          ...(req.limit !== undefined ? { limit: req.limit } : {}),
          ...(req.maxBytes !== undefined ? { maxBytes: req.maxBytes } : {}),
          ...(req.afterSeq !== undefined ? { afterSeq: req.afterSeq } : {}),
        });
      } catch (err) {
        throw errors.map(err);
      }
      const res = ring.tail(query);
      return { entries: res.entries.map(toProtoEntry), nextSeq: BigInt(res.nextSeq), reset: res.reset, truncated: res.truncated };
    },
    async *followLogs(req, ctx: HandlerContext) {
      if (req.filter?.pattern) await loadLogPatternEngine();
      let query;
      try {
        query = checkFollowQuery({
          ...rawFilter(req.filter),
          ...(req.tail !== undefined ? { tail: req.tail } : {}),
          ...(req.afterSeq !== undefined ? { afterSeq: req.afterSeq } : {}),
        });
      } catch (err) {
        throw errors.map(err);
      }
      if (followers >= maxFollowers) {
        throw rpcError(
          `${maxFollowers} log streams are open already (logs.maxFollowers); close one (e.g. another 'cara logs -f') or use TailLogs`,
          Code.ResourceExhausted,
          { reason: "LOG_FOLLOWERS_LIMIT", retryAfterMs: 5_000 },
        );
      }
      followers++;
      // The place is freed when the stream ends or its caller goes away, whichever is first
      // (a generator parked at a yield for a caller that left may never resume).
      let released = false;
      const release = () => {
        if (!released) followers--;
        released = true;
      };
      ctx.signal.addEventListener("abort", release, { once: true });
      try {
        const signal = AbortSignal.any([ctx.signal, shutdown]);
        const sub = ring.follow({
          filter: query.filter,
          tail: query.tail,
          ...(query.afterSeq !== undefined ? { afterSeq: query.afterSeq } : {}),
          bufferLimit: 1000,
          signal,
        });
        for await (const item of sub) {
          if (isDroppedMarker(item)) yield { event: { case: "dropped" as const, value: BigInt(item.dropped) } };
          else yield { event: { case: "entry" as const, value: toProtoEntry(item) } };
        }
      } finally {
        ctx.signal.removeEventListener("abort", release);
        release();
      }
    },
  };
}
