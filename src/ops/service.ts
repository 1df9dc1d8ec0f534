import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AuthMode, type OpsService, SecretSource, type GetStatusResponse } from "../../gen/carapace/ops/v1/ops_pb.js";
import { checkStatusNames, overallStatusNames } from "../wire/ops.js";
import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { GetStatusResponseSchema } from "../../gen/carapace/ops/v1/ops_pb.js";
import type { ServerStatus } from "./status.js";

/** Maps the domain status to the wire message. Sections are passed through as already-shaped inits. */
export function statusToProto(status: ServerStatus): MessageInitShape<typeof GetStatusResponseSchema> {
  const msg: MessageInitShape<typeof GetStatusResponseSchema> = {
    version: status.version,
    startedAt: timestampFromDate(status.startedAt),
    uptimeSeconds: BigInt(status.uptimeSeconds),
    pid: status.pid,
    nodeVersion: status.nodeVersion,
    platform: status.platform,
    arch: status.arch,
    bind: status.bind,
    port: status.port,
    tls: status.tls,
    stateDir: status.stateDir,
    authMode: status.tokenSource === "env" ? AuthMode.TOKEN_ENV : AuthMode.TOKEN_FILE,
    secretSource: status.secretSource === "env" ? SecretSource.ENV : SecretSource.GENERATED,
    overall: overallStatusNames.toWire(status.overall),
    checks: status.checks.map((c) => ({ name: c.name, status: checkStatusNames.toWire(c.status), message: c.message, durationMs: c.durationMs })),
    diagnostics: {
      memoryRssBytes: BigInt(status.diagnostics.memoryRssBytes),
      diskFreeBytes: BigInt(status.diagnostics.diskFreeBytes),
      openFds: status.diagnostics.openFds,
    },
    shuttingDown: status.shuttingDown,
  };
  const sections = status.sections as Partial<Pick<GetStatusResponse, "logs" | "tasks" | "backup" | "update">>;
  if (sections.logs) msg.logs = sections.logs;
  if (sections.tasks) msg.tasks = sections.tasks;
  if (sections.backup) msg.backup = sections.backup;
  if (sections.update) msg.update = sections.update;
  return msg;
}

export interface OpsDomain {
  status(): Promise<ServerStatus>;
}

/** Adapts the ops domain to `carapace.ops.v1.OpsService`: status here, logs and doctor from their own files. */
export function opsService(
  domain: OpsDomain,
  logsImpl: Pick<ServiceImpl<typeof OpsService>, "tailLogs" | "followLogs">,
  doctorImpl: Pick<ServiceImpl<typeof OpsService>, "runDoctor" | "createBugreport">,
): ServiceImpl<typeof OpsService> {
  return {
    async getStatus() {
      return statusToProto(await domain.status());
    },
    tailLogs: logsImpl.tailLogs,
    followLogs: logsImpl.followLogs,
    runDoctor: doctorImpl.runDoctor,
    createBugreport: doctorImpl.createBugreport,
  };
}

/** GetStatus as protobuf JSON (what the bug report keeps as status.json). */
export async function statusJson(domain: OpsDomain): Promise<unknown> {
  return toJson(GetStatusResponseSchema, create(GetStatusResponseSchema, statusToProto(await domain.status())));
}
