import { createContextValues, Code, ConnectError } from "@connectrpc/connect";
import type { DestinationStream } from "pino";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { diskFreeCheck, serverSecretCheck, stateDirWritableCheck, storesCheck, type StoreHealth } from "../ops/checks.js";
import { HealthMonitor } from "../ops/health.js";
import { createLogger, type Logger } from "../ops/logger.js";
import { createLogPipeline, type LineSink } from "../ops/log-pipeline.js";
import { logsCheck, logsStatus } from "../ops/logs-status.js";
import { logsService } from "../ops/logs-service.js";
import { join } from "node:path";
import { opsService } from "../ops/service.js";
import { collectStatus, type SectionProvider, type ServerIdentity } from "../ops/status.js";
import { loadConfig } from "../state/config.js";
import { checkStateLoads } from "../state/loadable.js";
import { describeDiskFull, isDiskFull } from "../state/disk-full.js";
import { acquireStateLock, type StateLock } from "../state/lock.js";
import { resolveStateDir } from "../state/paths.js";
import { loadCredentials } from "../state/secrets.js";
import { prepareStateDir } from "../state/state-dir.js";
import { PACKAGE_ROOT, VERSION } from "../package-info.js";
import { authGate, clientAddress, FailedAuthLimiter, kPeerAddress, tokenCheck } from "./auth.js";
import { grpcHealthService } from "./grpc-health.js";
import { healthRoutes } from "./health-routes.js";
import { corsRoutes } from "./cors.js";
import { consoleRoutes, consoleUrl, loadAssetSet } from "./static-assets.js";
import { listen, type Listener } from "./listener.js";
import { errorInfoInterceptor } from "./error-info.js";
import { registerReflection } from "./reflection.js";
import { rpcAdapter } from "./rpc-adapter.js";
import { notFoundJson } from "./unknown-route.js";
import { readTlsFiles, resolveServerOptions, isLoopbackAddress, type ServerOptions, type StartFlags } from "./options.js";
import { BackupManager } from "../backup/backups.js";
import { backupService } from "../backup/service.js";
import { BackupState, backupTaskExecutor } from "../backup/status.js";
import { recoverInterruptedSwap } from "../backup/swap.js";
import { startTasks, type TasksRuntime } from "../tasks/runtime.js";
import { createUpdateRuntime } from "../update/runtime.js";
import { updateService, updateStatusSection } from "../update/service.js";

export interface RunningServer {
  readonly identity: ServerIdentity;
  readonly options: ServerOptions;
  readonly port: number;
  readonly logger: Logger;
  /** Graceful stop: health goes NOT_SERVING, no new connections, in-flight calls finish (bounded). */
  shutdown(reason?: string): Promise<void>;
}

export interface StartDeps {
  env?: NodeJS.ProcessEnv;
  /** Where log lines go (default: stdout). */
  logDestination?: DestinationStream;
  /**
   * Called when an update (or rollback) asks the server to restart on the installed version; the
   * caller shuts the server down and runs `launcher` (`<install>/bin/cara`) with the same args.
   */
  onRestartRequested?: (launcher: string) => void;
}

/** The X-Forwarded-For header as one string (Node joins repeated headers; http2 may give an array). */
function forwardedFor(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(",") : value;
}

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

/** Maximum size of one request message (streams send many). */
const READ_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Starts a cara server: prepares and locks the state dir, loads config and credentials, then
 * serves every API on one port. Throws (with a message for the operator) when it cannot start;
 * nothing is left locked in that case.
 */
export async function startServer(flags: StartFlags, deps: StartDeps = {}): Promise<RunningServer> {
  const env = deps.env ?? process.env;
  const stateDir = resolveStateDir(flags.stateDir, env);
  try {
    const paths = await prepareStateDir(stateDir);
    const lock = await acquireStateLock(stateDir, paths.lock);
    try {
      return await startLocked(flags, env, deps, lock, paths);
    } catch (err) {
      await lock.release();
      throw err;
    }
  } catch (err) {
    if (isDiskFull(err)) throw new Error(describeDiskFull(err, stateDir, "cannot start"));
    throw err;
  }
}

async function startLocked(
  flags: StartFlags,
  env: NodeJS.ProcessEnv,
  deps: StartDeps,
  lock: StateLock,
  paths: Awaited<ReturnType<typeof prepareStateDir>>,
): Promise<RunningServer> {
  const config = await loadConfig(paths.config);
  const options = resolveServerOptions(paths.root, flags, config, env);
  const credentials = await loadCredentials(paths, env);
  const logs = createLogPipeline({
    ringCapacity: config.logs?.ringCapacity ?? 5_000,
    file: config.logs?.file === false ? null : { path: join(paths.logsDir, "cara.log"), maxBytes: config.logs?.fileMaxBytes ?? 10 * 1024 * 1024, maxFiles: config.logs?.fileMaxFiles ?? 5 },
    ...(deps.logDestination ? { stdout: deps.logDestination as unknown as LineSink } : {}),
    knownSecrets: [credentials.token, credentials.secret, ...(env.CARAPACE_AGENT_API_KEY ? [env.CARAPACE_AGENT_API_KEY] : [])],
  });
  const logger = createLogger(options.logLevel, logs.destination);
  const log = logger.child({ component: "server" });
  for (const warning of credentials.warnings) log.warn(warning);

  const swap = await recoverInterruptedSwap(paths.root);
  if (swap !== "none") log.warn({ outcome: swap }, "an interrupted restore was completed or undone at start");
  let tasksRef: TasksRuntime | undefined;
  const backupState = new BackupState(paths.backupsDir, config.backup?.warnAfterDays ?? 7);
  const backups = new BackupManager({
    stateDir: paths.root,
    backupsDir: paths.backupsDir,
    secret: credentials.secret,
    caraVersion: VERSION,
    writers: {
      holdWrites: (fn) => (tasksRef ? tasksRef.store.withWritesHeld(fn) : fn()),
      pause: async () => {
        await tasksRef?.worker.stop(5_000);
        await tasksRef?.store.suspend("a restore is replacing the state; retry in a few seconds");
      },
      resume: async () => {
        await tasksRef?.store.reopen();
        if (!monitor.shuttingDown) tasksRef?.worker.start();
      },
    },
    onBackupWritten: (path) => void backupState.recordWritten(path),
    checkRestored: checkStateLoads,
  });
  let launcher: string | undefined;
  const updates = await createUpdateRuntime({
    updatesDir: paths.updatesDir,
    packageRoot: PACKAGE_ROOT,
    runningVersion: VERSION,
    config,
    backups,
    logger: logger.child({ component: "update" }),
    ...(deps.onRestartRequested ? { requestRestart: () => launcher && deps.onRestartRequested?.(launcher) } : {}),
  });
  launcher = updates.launcher;
  const tasks: TasksRuntime = await startTasks({
    dir: paths.tasksDir,
    config,
    env,
    logger: logger.child({ component: "tasks" }),
    extraExecutors: { backup: backupTaskExecutor(backups), updateCheck: updates.executor },
  });
  tasksRef = tasks;
  const stores: StoreHealth[] = [
    { name: "config", loaded: () => ({ ok: true, message: "loaded" }) },
    { name: "credentials", loaded: () => ({ ok: true, message: "loaded" }) },
    tasks.storeHealth,
  ];
  const monitor = new HealthMonitor();
  monitor.addCheck(stateDirWritableCheck(paths.root));
  monitor.addCheck(diskFreeCheck(paths.root, options.diskFreeFloorBytes));
  monitor.addCheck(storesCheck(() => stores));
  monitor.addCheck(serverSecretCheck(credentials.secretSource));
  monitor.addCheck(tasks.check);
  monitor.addCheck(logsCheck(logs));
  monitor.addCheck(backupState.check());
  monitor.addCheck(updates.check);

  const shutdownController = new AbortController();
  const limiter = new FailedAuthLimiter();
  const trustedProxies = new Set(options.trustedProxies);
  const identity: ServerIdentity = {
    version: VERSION,
    startedAt: new Date(),
    startedMonotonicMs: performance.now(),
    bind: options.bind,
    port: options.port,
    tls: options.tls !== undefined,
    stateDir: paths.root,
    tokenSource: credentials.tokenSource,
    secretSource: credentials.secretSource,
  };
  const sections = new Map<string, SectionProvider>([
    ["tasks", tasks.statusSection],
    ["logs", () => logsStatus(logs)],
    ["backup", () => backupState.section()],
    ["update", () => updateStatusSection(updates.manager)],
  ]);

  // GetStatus answers are shared for 500 ms (like health evaluations): under load a status costs
  // one statfs, one /proc read and one pass over the task store per half second, not per call.
  let cachedStatus: { at: number; shutting: boolean; value: ReturnType<typeof collectStatus> } | undefined;
  const statusCache = () => {
    const now = performance.now();
    if (!cachedStatus || now - cachedStatus.at > 500 || cachedStatus.shutting !== monitor.shuttingDown) {
      const value = collectStatus(identity, monitor, sections);
      value.catch(() => (cachedStatus = undefined));
      cachedStatus = { at: now, shutting: monitor.shuttingDown, value };
    }
    return cachedStatus.value;
  };
  const rpc = rpcAdapter({
    routes(router) {
      router.service(OpsService, opsService({ status: statusCache }, logsService(logs.ring, shutdownController.signal, { ...(config.logs?.maxFollowers !== undefined ? { maxFollowers: config.logs.maxFollowers } : {}) })));
      router.service(TasksService, tasks.service(shutdownController.signal));
      router.service(BackupService, backupService(backups, () => void backupState.recordStreamed()));
      router.service(UpdateService, updateService(updates.manager, shutdownController.signal));
      router.service(
        Health,
        grpcHealthService(monitor, [OpsService.typeName, TasksService.typeName, BackupService.typeName, UpdateService.typeName], shutdownController.signal),
      );
      if (config.server?.reflection !== "off") registerReflection(router);
    },
    interceptors: [errorInfoInterceptor()],
    requestGate: authGate(credentials.token, limiter, (address, reason) =>
      log.warn({ address, reason }, "rejected an RPC: authentication failed"),
    ),
    contextValues: (req) => createContextValues().set(kPeerAddress, clientAddress(req.socket.remoteAddress ?? "unknown", forwardedFor(req.headers["x-forwarded-for"]), trustedProxies)),
    readMaxBytes: READ_MAX_BYTES,
    // Forward compatible: a JSON client one proto version ahead keeps working, as in binary.
    jsonOptions: { ignoreUnknownFields: true, ...strictUtf8 },
    // RPC-shaped requests for no route get UNIMPLEMENTED in their protocol; plain HTTP lands here.
    fallback: notFoundJson,
    onHandlerError: (method, err) => log.error({ rpc: `${method.parent.typeName}/${method.name}`, err: (err as Error)?.message }, "an RPC handler failed after answering began"),
  });
  const checkToken = tokenCheck(credentials.token);
  const health = healthRoutes(identity, monitor, (req) => checkToken(req.headers.authorization) === "ok");
  // The browser console (built into dist/web) and CORS for pages of other origins that use the API.
  const consoleOn = config.server?.console !== false;
  const consoleAssets = consoleOn ? await loadAssetSet(join(PACKAGE_ROOT, "dist", "web")).catch((err: Error) => void log.error({ err: err.message }, "could not load the console")) : undefined;
  if (consoleOn && !consoleAssets) log.warn("the console is not available (no dist/web/index.html: run `npm run build`); the API is unaffected");
  const web = consoleOn ? consoleRoutes(consoleAssets) : () => false;
  const cors = corsRoutes(config.server?.cors?.allowedOrigins ?? []);

  const tls = options.tls ? await readTlsFiles(options.tls) : undefined;
  let listener: Listener;
  try {
    tasks.worker.start();
    listener = await listen(
      (req, res) => {
        if (!web(req, res) && !cors(req, res) && !health(req, res)) rpc(req, res);
      },
      {
        bind: options.bind,
        port: options.port,
        ...(tls ? { tls } : {}),
        limits: options.connectionLimits,
        onEvent: (e) => log.warn({ dropped: e.count, maxConnections: e.max }, `refused ${e.count} connections: ${e.max} are open, the most allowed (server.connections.max); idle ones are cut after their timeout`),
      },
    );
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    await tasks.close(0);
    if (e.code === "EADDRINUSE") throw new Error(`port ${options.port} on ${options.bind} is already in use (another server? pick one with --port)`);
    if (e.code === "EACCES") throw new Error(`not allowed to listen on ${options.bind}:${options.port} (ports below 1024 need privileges; pick another with --port)`);
    if (e.code === "EADDRNOTAVAIL") throw new Error(`cannot listen on ${options.bind}: no such address on this machine (check --bind)`);
    throw err;
  }
  (identity as { port: number }).port = listener.port;
  if (!tls && !isLoopbackAddress(options.bind)) {
    log.warn({ bind: options.bind }, "listening on a non-loopback address WITHOUT TLS (--allow-plaintext): tokens cross the network in plaintext");
  }
  if (credentials.secretSource === "generated") log.warn("set CARAPACE_SERVER_SECRET in production (using a generated secret from the state dir)");
  const consoleAt = consoleAssets ? consoleUrl(options.bind, listener.port, listener.tls) : undefined;
  log.info(
    { bind: options.bind, port: listener.port, tls: listener.tls, stateDir: paths.root, version: VERSION, authMode: credentials.tokenSource, ...(consoleAt ? { console: consoleAt } : {}) },
    `listening on ${listener.tls ? "https" : "http"}://${options.bind.includes(":") ? `[${options.bind}]` : options.bind}:${listener.port}${consoleAt ? `; console at ${consoleAt}` : ""}`,
  );

  // Update protocol after start: once ready, clear the rollback marker (this version is good),
  // then resume an interrupted update if one is pending and still confirmed.
  // A version on probation (marker `started`) that is not ready within update.readyTimeoutMs
  // exits for a restart under the launcher, which then rolls it back.
  void (async () => {
    const onProbation = await updates.manager.onProbation();
    const deadline = Date.now() + (config.update?.readyTimeoutMs ?? 60_000);
    for (let i = 0; !monitor.shuttingDown; i++) {
      const evaluation = await monitor.evaluate();
      if (evaluation.ready) {
        await updates.manager.markHealthy().catch((err: Error) => log.error({ err: err.message }, "could not clear the rollback marker; a restart may roll back"));
        break;
      }
      if (i === 0 && onProbation) log.warn("not ready yet: the rollback marker stays until every check passes");
      if (onProbation && Date.now() >= deadline && launcher && deps.onRestartRequested && env.CARA_LAUNCHER) {
        const failing = evaluation.results.filter((r) => r.status === "fail").map((r) => `${r.name}: ${r.message}`).join("; ");
        log.error({ failing }, `v${VERSION} did not become ready within ${Math.round((config.update?.readyTimeoutMs ?? 60_000) / 1000)} s after an update; exiting so the launcher rolls back`);
        deps.onRestartRequested(launcher);
        return;
      }
      await monitor.waitForChange(Math.max(100, Math.min(5_000, deadline - Date.now())), shutdownController.signal).catch(() => undefined);
    }
    if (!monitor.shuttingDown) await updates.manager.resumeAtStart(shutdownController.signal);
  })();

  let stopping: Promise<void> | undefined;
  return {
    identity,
    options,
    port: listener.port,
    logger,
    shutdown(reason = "requested") {
      stopping ??= (async () => {
        log.info({ reason, inFlight: listener.inFlight }, "shutting down: draining in-flight calls");
        monitor.beginShutdown();
        shutdownController.abort();
        logs.ring.closeAll();
        const [drained] = await Promise.all([listener.drain(options.shutdownTimeoutMs), tasks.close(options.shutdownTimeoutMs)]);
        if (!drained) log.warn({ timeoutMs: options.shutdownTimeoutMs }, "shutdown timeout reached; cut the calls still in flight");
        await lock.release();
        log.info("stopped");
        logs.close();
      })();
      return stopping;
    },
  };
}
