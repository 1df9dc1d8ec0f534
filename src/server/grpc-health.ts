import { Code, type ServiceImpl } from "@connectrpc/connect";
import { rpcError } from "../wire/error-details.js";
import { type Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import type { HealthMonitor } from "../ops/health.js";

/**
 * The standard `grpc.health.v1.Health` service over the server's HealthMonitor. The empty
 * service name means the whole server; each carapace service name answers the same truth.
 * Watch sends the current status, then every change, and ends once shutdown has begun.
 */
export function grpcHealthService(monitor: HealthMonitor, serviceNames: readonly string[], shutdown: AbortSignal): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  const current = async () => ((await monitor.evaluate()).ready ? Serving.SERVING : Serving.NOT_SERVING);
  return {
    async check(req) {
      if (!known.has(req.service)) throw rpcError(`unknown service '${req.service}'`, Code.NotFound, { reason: "SERVICE_NOT_FOUND" });
      return { status: await current() };
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        // Per the protocol: report SERVICE_UNKNOWN and keep the stream open (until shutdown).
        yield { status: Serving.SERVICE_UNKNOWN };
        while (!ctx.signal.aborted && !shutdown.aborted) await monitor.waitForChange(60_000, anySignal(ctx.signal, shutdown));
        return;
      }
      let last: Serving | undefined;
      const stop = anySignal(ctx.signal, shutdown);
      for (;;) {
        const status = await current();
        if (status !== last) {
          yield { status };
          last = status;
        }
        if (monitor.shuttingDown || ctx.signal.aborted) return;
        await monitor.waitForChange(2_000, stop);
      }
    },
  };
}

function anySignal(...signals: AbortSignal[]): AbortSignal {
  return AbortSignal.any(signals);
}
