/**
 * Ablation servers: connect-node on plain node:http (HTTP/1.1), in its own process, built up
 * from nothing to (almost) what `cara start` runs, so the cost of each layer can be measured:
 *
 *   const   connectNodeAdapter, default options, GetStatus answers a constant message
 *           (the one captured from cara, so the same bytes are serialized): the library alone.
 *   gated   + cara's adapter options: the auth gate (bearer-token auth + failed-auth limiter, here an interceptor),
 *           contextValues (peer address), jsonOptions, readMaxBytes. Still a constant message.
 *   live    + the real GetStatus work from src/: collectStatus (HealthMonitor with the same four
 *           checks, statfs + /proc/self/fd readdir per call) and statusToProto.
 *   cached  live, but with the diagnostics (statfs, open-fd count, RSS) cached for 500 ms next to
 *           the health evaluation: the change proposed in bench/README.md.
 *
 * What cara adds on top of `live` is its listener (HTTP/2-preface sniffing on a net.Server) and
 * the /health route check; compare `live` with cara itself.
 *
 * IPC: receives {type:"config", variant, statusJson, token, stateDir} and answers
 * {type:"listening", port}.
 */
import http from "node:http";
import { mkdirSync } from "node:fs";
import { fromJsonString } from "@bufbuild/protobuf";
import { createContextValues, type ConnectRouterOptions } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { GetStatusResponseSchema, OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { authGate, FailedAuthLimiter, kPeerAddress } from "../../src/server/auth.js";
import { diskFreeBytes, diskFreeCheck, serverSecretCheck, stateDirWritableCheck, storesCheck } from "../../src/ops/checks.js";
import { HealthMonitor } from "../../src/ops/health.js";
import { collectStatus, uptimeSeconds, type ServerIdentity, type ServerStatus } from "../../src/ops/status.js";
import { statusToProto } from "../../src/ops/service.js";
import { readdir } from "node:fs/promises";

export type ConnectVariant = "const" | "gated" | "live" | "cached";

interface Config {
  type: "config";
  variant: ConnectVariant;
  statusJson: string;
  token: string;
  stateDir: string;
}

function build(config: Config) {
  const constant = fromJsonString(GetStatusResponseSchema, config.statusJson);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const monitor = new HealthMonitor();
  monitor.addCheck(stateDirWritableCheck(config.stateDir));
  monitor.addCheck(diskFreeCheck(config.stateDir, 64 * 1024 * 1024));
  monitor.addCheck(storesCheck(() => [{ name: "config", loaded: () => ({ ok: true, message: "loaded" }) }]));
  monitor.addCheck(serverSecretCheck("generated"));
  const identity: ServerIdentity = {
    version: "0.1.0",
    startedAt: new Date(),
    startedMonotonicMs: performance.now(),
    bind: "127.0.0.1",
    port: 0,
    tls: false,
    stateDir: config.stateDir,
    tokenSource: "file",
    secretSource: "generated",
  };

  // The proposed change, reproduced here: diagnostics shared for 500 ms like the health evaluation.
  let diag: { at: number; value: Promise<[number, number, number]> } | undefined;
  const cachedDiagnostics = () => {
    const now = performance.now();
    if (!diag || now - diag.at >= 500) {
      const fds = readdir("/proc/self/fd").then(
        (l) => l.length,
        () => 0,
      );
      diag = { at: now, value: Promise.all([diskFreeBytes(config.stateDir).catch(() => 0), fds, process.memoryUsage.rss()]) };
    }
    return diag.value;
  };
  const cachedStatus = async (): Promise<ServerStatus> => {
    const [evaluation, [free, fds, rss]] = await Promise.all([monitor.evaluate(), cachedDiagnostics()]);
    return {
      version: identity.version,
      startedAt: identity.startedAt,
      uptimeSeconds: uptimeSeconds(identity),
      pid: process.pid,
      nodeVersion: process.version,
      platform: process.platform,
      arch: process.arch,
      bind: identity.bind,
      port: identity.port,
      tls: identity.tls,
      stateDir: identity.stateDir,
      tokenSource: identity.tokenSource,
      secretSource: identity.secretSource,
      overall: evaluation.verdict === "ok" ? "healthy" : evaluation.verdict === "warn" ? "degraded" : "failing",
      checks: evaluation.results,
      diagnostics: { memoryRssBytes: rss, diskFreeBytes: free, openFds: fds },
      shuttingDown: monitor.shuttingDown,
      sections: {},
    };
  };

  const getStatus =
    config.variant === "const" || config.variant === "gated"
      ? () => constant
      : config.variant === "live"
        ? async () => statusToProto(await collectStatus(identity, monitor, new Map()))
        : async () => statusToProto(await cachedStatus());

  const options: ConnectRouterOptions & Parameters<typeof connectNodeAdapter>[0] = {
    routes(router) {
      router.service(OpsService, { getStatus });
    },
  };
  if (config.variant !== "const") {
    // cara runs its gate in its own adapter before the body is read (src/server/rpc-adapter.ts);
    // on plain connect-node the nearest place is an interceptor.
    const gate = authGate(config.token, new FailedAuthLimiter());
    options.interceptors = [
      (next) => async (req) => {
        gate({ service: req.service, method: req.method, requestHeader: req.header, values: req.contextValues });
        return next(req);
      },
    ];
    options.contextValues = (req) => createContextValues().set(kPeerAddress, req.socket.remoteAddress ?? "unknown");
    options.readMaxBytes = 8 * 1024 * 1024;
    options.jsonOptions = { ignoreUnknownFields: false };
  }
  return connectNodeAdapter(options);
}

process.once("message", (config: Config) => {
  const handler = build(config);
  const server = http.createServer(handler);
  server.keepAliveTimeout = 65_000;
  server.listen(0, "127.0.0.1", () => {
    process.send!({ type: "listening", port: (server.address() as { port: number }).port });
  });
});
process.on("disconnect", () => process.exit(0));
