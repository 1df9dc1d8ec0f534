import { createContextValues } from "@connectrpc/connect";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { SchedulesService } from "../../gen/carapace/tasks/v1/schedules_pb.js";
import { schedulesService } from "../tasks/schedules-service.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { BackupManager } from "../backup/backups.js";
import { backupService } from "../backup/service.js";
import type { HealthMonitor } from "../ops/health.js";
import type { LogRing } from "../ops/log-ring.js";
import type { Logger } from "../ops/logger.js";
import { logsService } from "../ops/logs-service.js";
import { doctorService } from "../ops/doctor-service.js";
import { opsService, statusJson } from "../ops/service.js";
import type { collectStatus } from "../ops/status.js";
import type { StatePaths } from "../state/paths.js";
import type { TasksRuntime } from "../tasks/runtime.js";
import type { UpdateManager } from "../update/manager.js";
import { updateService } from "../update/service.js";
import { authGate, clientAddress, FailedAuthLimiter, kPeerAddress } from "./auth.js";
import { errorInfoInterceptor } from "./error-info.js";
import { rpcMetricsInterceptor } from "./rpc-metrics.js";
import type { ServerMetrics } from "../ops/metrics.js";
import { grpcHealthService } from "./grpc-health.js";
import type { RequestHandler } from "./listener.js";
import { registerReflection } from "./reflection.js";
import { rpcAdapter } from "./rpc-adapter.js";
import { notFoundJson } from "./unknown-route.js";

/** Maximum size of one request message (streams send many). */
const READ_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Invalid UTF-8 in a JSON body is refused (invalid_argument), not silently replaced with U+FFFD.
 * (connect-es reads `textDecoder` from the JSON options; the adapter's type does not list it.)
 */
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });
const strictUtf8 = {
  textDecoder: {
    decode(data: Uint8Array): string {
      try {
        return fatalUtf8.decode(data);
      } catch {
        throw new Error("the JSON request body is not valid UTF-8");
      }
    },
  },
} as object;

/** The X-Forwarded-For header as one string (Node joins repeated headers; http2 may give an array). */
function forwardedFor(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(",") : value;
}

export interface RpcRoutesDeps {
  token: string;
  trustedProxies: readonly string[];
  reflection: "token" | "off";
  maxFollowers?: number;
  log: Logger;
  shutdown: AbortSignal;
  status: () => ReturnType<typeof collectStatus>;
  /** The state dir, the server's environment and version: what RunDoctor and CreateBugreport read. */
  paths: StatePaths;
  env: NodeJS.ProcessEnv;
  version: string;
  ring: LogRing;
  tasks: TasksRuntime;
  backups: BackupManager;
  onBackupStreamed: (bytes: number) => void;
  updates: UpdateManager;
  monitor: HealthMonitor;
  metrics: ServerMetrics;
}

/**
 * Every RPC on one handler: the four services, the standard gRPC health service and reflection,
 * behind the bearer-token gate (failed attempts limited per client address, which a trusted
 * proxy may name), with unknown JSON fields ignored and invalid UTF-8 refused.
 */
export function rpcRoutes(d: RpcRoutesDeps): RequestHandler {
  const limiter = new FailedAuthLimiter();
  const trusted = new Set(d.trustedProxies);
  return rpcAdapter({
    routes(router) {
      const ops = { status: d.status };
      const doctor = doctorService({
        paths: d.paths,
        env: d.env,
        version: d.version,
        ring: d.ring,
        serving: () => !d.monitor.shuttingDown,
        statusJson: () => statusJson(ops),
      });
      router.service(
        OpsService,
        opsService(ops, logsService(d.ring, d.shutdown, d.maxFollowers !== undefined ? { maxFollowers: d.maxFollowers } : {}), doctor),
      );
      router.service(TasksService, d.tasks.service(d.shutdown));
      router.service(
        SchedulesService,
        schedulesService({ schedules: d.tasks.schedules, scheduler: d.tasks.scheduler, tasks: d.tasks.store, now: d.tasks.now }),
      );
      router.service(
        BackupService,
        backupService(d.backups, (_sha256, bytes) => d.onBackupStreamed(bytes)),
      );
      router.service(UpdateService, updateService(d.updates, d.shutdown));
      router.service(
        Health,
        grpcHealthService(
          d.monitor,
          [OpsService.typeName, TasksService.typeName, SchedulesService.typeName, BackupService.typeName, UpdateService.typeName],
          d.shutdown,
        ),
      );
      if (d.reflection !== "off") registerReflection(router);
    },
    interceptors: [rpcMetricsInterceptor((...a) => d.metrics.rpcStarted(...a)), errorInfoInterceptor()],
    requestGate: authGate(
      d.token,
      limiter,
      (address, reason) => {
        d.metrics.authFailed(reason);
        d.log.warn({ address, reason }, "rejected an RPC: authentication failed");
      },
      () => d.metrics.authRateLimited(),
    ),
    contextValues: (req) =>
      createContextValues().set(kPeerAddress, clientAddress(req.socket.remoteAddress ?? "unknown", forwardedFor(req.headers["x-forwarded-for"]), trusted)),
    readMaxBytes: READ_MAX_BYTES,
    // Forward compatible: a JSON client one proto version ahead keeps working, as in binary.
    jsonOptions: { ignoreUnknownFields: true, ...strictUtf8 },
    // RPC-shaped requests for no route get UNIMPLEMENTED in their protocol; plain HTTP lands here.
    fallback: notFoundJson,
    onHandlerError: (method, err) =>
      d.log.error({ rpc: `${method.parent.typeName}/${method.name}`, err: (err as Error)?.message }, "an RPC handler failed after answering began"),
  });
}
