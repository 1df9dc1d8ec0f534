import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { invalidField } from "../wire/error-details.js";
import type { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import type { LogFilter as ProtoLogFilter } from "../../gen/carapace/ops/v1/ops_pb.js";
import { checkFollowQuery, checkTailQuery, isLogQueryError, levelFromNumber } from "./log-query.js";
import { isDroppedMarker, LOG_LEVELS, type LogEntry, type LogRing } from "./log-ring.js";

function toProtoEntry(e: LogEntry) {
  return {
    seq: BigInt(e.seq),
    time: timestampFromMs(e.time),
    level: LOG_LEVELS.indexOf(e.level) + 1,
    component: e.component,
    message: e.message,
    fields: e.fields as JsonObject,
  };
}

function rawFilter(filter: ProtoLogFilter | undefined) {
  const minLevel = filter?.minLevel ? levelFromNumber(filter.minLevel) : undefined;
  return {
    ...(minLevel ? { minLevel } : {}),
    contains: filter?.contains ?? "",
    pattern: filter?.pattern ?? "",
  };
}

/** Filter fields live under `filter` in the requests; the others are top-level. */
const FILTER_FIELDS = new Set(["min_level", "contains", "pattern"]);

function invalid(err: unknown): never {
  if (isLogQueryError(err)) throw invalidField(err.message, "LOG_QUERY_INVALID", FILTER_FIELDS.has(err.field) ? `filter.${err.field}` : err.field);
  throw err;
}

/** TailLogs and FollowLogs over the server's redacted in-memory ring. */
export function logsService(ring: LogRing, shutdown: AbortSignal): Pick<ServiceImpl<typeof OpsService>, "tailLogs" | "followLogs"> {
  return {
    tailLogs(req) {
      let query;
      try {
        query = checkTailQuery({ ...rawFilter(req.filter), ...(req.limit !== undefined ? { limit: req.limit } : {}), ...(req.maxBytes !== undefined ? { maxBytes: req.maxBytes } : {}), ...(req.afterSeq !== undefined ? { afterSeq: req.afterSeq } : {}) });
      } catch (err) {
        invalid(err);
      }
      const res = ring.tail(query);
      return { entries: res.entries.map(toProtoEntry), nextSeq: BigInt(res.nextSeq), reset: res.reset, truncated: res.truncated };
    },
    async *followLogs(req, ctx: HandlerContext) {
      let query;
      try {
        query = checkFollowQuery({ ...rawFilter(req.filter), ...(req.tail !== undefined ? { tail: req.tail } : {}), ...(req.afterSeq !== undefined ? { afterSeq: req.afterSeq } : {}) });
      } catch (err) {
        invalid(err);
      }
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      const sub = ring.follow({ filter: query.filter, tail: query.tail, ...(query.afterSeq !== undefined ? { afterSeq: query.afterSeq } : {}), bufferLimit: 1000, signal });
      for await (const item of sub) {
        if (isDroppedMarker(item)) yield { event: { case: "dropped" as const, value: BigInt(item.dropped) } };
        else yield { event: { case: "entry" as const, value: toProtoEntry(item) } };
      }
    },
  };
}
