// The generated Connect clients, over Connect-Web (the Connect protocol on fetch), to the origin
// that served this page. Every call carries the session's bearer token.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { SchedulesService } from "../../gen/carapace/tasks/v1/schedules_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { session } from "./session.js";

const bearer: Interceptor = (next) => (req) => {
  // A call that brings its own header (the sign-in probe) keeps it.
  if (!req.header.has("authorization") && session.token) req.header.set("authorization", `Bearer ${session.token}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

export const ops = createClient(OpsService, transport);
export const tasks = createClient(TasksService, transport);
export const schedules = createClient(SchedulesService, transport);
export const backups = createClient(BackupService, transport);
export const updates = createClient(UpdateService, transport);

/** Options for a unary call: cancellable, bounded. */
export const unary = (signal?: AbortSignal) => ({ timeoutMs: 30_000, ...(signal ? { signal } : {}) });
