/**
 * RunDoctor and CreateBugreport: the doctor's checklist and the bug report, run by the server on
 * its own state dir (what the browser console offers, since a browser cannot read the state dir).
 * The probes answer in-process: the health a GET /health would see, and the log ring.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import type { OpsService, RunDoctorResponseSchema } from "../../gen/carapace/ops/v1/ops_pb.js";
import type { StatePaths } from "../state/paths.js";
import { errorTable, on, type ErrorTable } from "../wire/error-table.js";
import { doctorStepStatusNames } from "../wire/ops.js";
// The checklist and the bug report (with tar) are imported on first use: the server loads them
// only when someone asks (about 1 MiB of heap otherwise held from the start, issue 17).
import type { DoctorProbes, DoctorReport } from "./doctor.js";
import type { LogRing } from "./log-ring.js";

/** Another bug report is being packed. */
class BugreportBusyError extends Error {
  constructor() {
    super("another bug report is being made right now; try again in a few seconds");
    this.name = "BugreportBusyError";
  }
}

/** Bytes per chunk of the bug report stream. */
const CHUNK_BYTES = 64 * 1024;

export interface DoctorServiceDeps {
  paths: StatePaths;
  /** The server's environment (secrets to redact, the agent provider's key, the port it was given). */
  env: NodeJS.ProcessEnv;
  version: string;
  ring: LogRing;
  /** False once shutdown began (GET /health then answers 503). */
  serving: () => boolean;
  /** GetStatus as protobuf JSON, for the bug report. */
  statusJson: () => Promise<unknown>;
}

type BugreportModule = typeof import("./bugreport.js");

let errorsTable: ErrorTable | undefined;
/** The RPC errors of CreateBugreport (built once the bug report module is loaded). */
function errorsOf(b: BugreportModule): ErrorTable {
  errorsTable ??= errorTable([
    on(b.BugreportOptionError, { code: Code.InvalidArgument, reason: "BUGREPORT_INVALID", field: "log_lines" }),
    on(b.BugreportTooLargeError, { code: Code.ResourceExhausted, reason: "BUGREPORT_TOO_LARGE" }),
    on(BugreportBusyError, { code: Code.ResourceExhausted, reason: "BUGREPORT_BUSY", retryAfterMs: 5_000 }),
  ]);
  return errorsTable;
}

/** The report as the wire message. */
export function doctorReportToProto(r: DoctorReport): MessageInitShape<typeof RunDoctorResponseSchema> {
  return {
    stateDir: r.stateDir,
    serverRunning: r.server.running,
    serverPid: r.server.pid ?? 0,
    serverUrl: r.server.url ?? "",
    steps: r.steps.map((s) => ({
      id: s.id,
      title: s.title,
      status: doctorStepStatusNames.toWire(s.status),
      summary: s.summary,
      next: s.next ?? "",
      details: s.details ?? [],
    })),
    verdict: doctorStepStatusNames.toWire(r.verdict),
    ...(r.restore ? { restore: { path: r.restore.path, ageDays: r.restore.ageDays, command: r.restore.command } } : {}),
  };
}

export function doctorService(d: DoctorServiceDeps): Pick<ServiceImpl<typeof OpsService>, "runDoctor" | "createBugreport"> {
  const probes: DoctorProbes = {
    health: async () => ({ status: d.serving() ? 200 : 503 }),
    recentLogs: async () => d.ring.tail({ limit: 2_000, minLevel: "warn" }).entries,
  };
  // The checklist reads stores and verifies a backup archive: callers that come while it runs
  // share that run, and one bug report is packed at a time.
  let running: Promise<DoctorReport> | undefined;
  const doctor = () =>
    (running ??= import("./doctor.js")
      .then(({ runDoctor }) => runDoctor({ paths: d.paths, env: d.env, probes }))
      .finally(() => {
        running = undefined;
      }));
  let packing: object | undefined;
  return {
    async runDoctor() {
      return doctorReportToProto(await doctor());
    },
    async *createBugreport(req, ctx) {
      const bugreport = await import("./bugreport.js");
      const { bugreportFileName, bugreportLines, BugreportTooLargeError, MAX_BUGREPORT_BYTES, writeBugreport } = bugreport;
      const errors = errorsOf(bugreport);
      let lines: number;
      try {
        lines = bugreportLines(req.logLines);
      } catch (err) {
        throw errors.map(err);
      }
      if (packing) throw errors.map(new BugreportBusyError());
      const mine = {};
      packing = mine;
      const dir = await mkdtemp(join(tmpdir(), "cara-bugreport-")).catch((err: unknown) => {
        packing = undefined;
        throw err;
      });
      // Freed when the stream ends or its caller goes away, whichever is first (a generator
      // parked at a yield for a caller that left may never resume).
      const release = () => {
        if (packing === mine) packing = undefined;
        return rm(dir, { recursive: true, force: true });
      };
      const onAbort = () => void release();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        const fileName = bugreportFileName();
        const [report, status] = await Promise.all([doctor(), d.statusJson()]);
        const result = await writeBugreport({
          paths: d.paths,
          env: d.env,
          output: join(dir, fileName),
          doctor: report,
          version: d.version,
          status,
          ringLogs: d.ring.tail({ limit: lines, maxBytes: 8 * 1024 * 1024 }).entries,
          logLines: lines,
          includePayloads: req.includePayloads,
        });
        if (result.bytes > MAX_BUGREPORT_BYTES) throw errors.map(new BugreportTooLargeError(result.bytes));
        yield { event: { case: "summary" as const, value: { fileName, sizeBytes: BigInt(result.bytes), contains: result.contains, leftOut: result.leftOut } } };
        for await (const chunk of createReadStream(result.path, { highWaterMark: CHUNK_BYTES })) {
          yield { event: { case: "chunk" as const, value: chunk as Buffer } };
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        await release();
      }
    },
  };
}
