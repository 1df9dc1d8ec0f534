import type { DestinationStream } from "pino";
import { diskFreeCheck, serverSecretCheck, stateDirWritableCheck, storesCheck, type StoreHealth } from "../ops/checks.js";
import { HealthMonitor } from "../ops/health.js";
import { createLogger, type Logger } from "../ops/logger.js";
import { createLogPipeline, type LineSink } from "../ops/log-pipeline.js";
import { logsCheck, logsStatus } from "../ops/logs-status.js";
import { join } from "node:path";
import { collectStatus, type SectionProvider, type ServerIdentity } from "../ops/status.js";
import { loadConfig, type CaraConfig } from "../state/config.js";
import { checkStateLoads } from "../state/loadable.js";
import { clearServerAddress, localHostFor, recordServerAddress } from "../state/server-address.js";
import { describeDiskFull, isDiskFull } from "../state/disk-full.js";
import { acquireStateLock, type StateLock } from "../state/lock.js";
import { resolveStateDir, type StatePaths } from "../state/paths.js";
import { loadCredentials, type Credentials } from "../state/secrets.js";
import { recordServerSecret } from "../backup/previous-secrets.js";
import { manifestKey, type VerificationKey } from "../backup/manifest.js";
import { prepareStateDir } from "../state/state-dir.js";
import { runningAsExecutable } from "../executable-form.js";
import { embeddedDirectory } from "../package-files.js";
import { PACKAGE_ROOT, VERSION } from "../package-info.js";
import { tokenCheck } from "./auth.js";
import { healthRoutes } from "./health-routes.js";
import { corsRoutes } from "./cors.js";
import { consoleRoutes, consoleUrl, loadAssetSet } from "./static-assets.js";
import { listen, type Listener, type RequestHandler } from "./listener.js";
import { describeListenError } from "./listen-errors.js";
import { rpcRoutes } from "./rpc-routes.js";
import { metricsRoute } from "./metrics-route.js";
import { ServerMetrics, type MetricSources } from "../ops/metrics.js";
import type { LogRing } from "../ops/log-ring.js";
import { queueStatsValue } from "../tasks/service.js";
import { summarizeSchedule } from "../tasks/schedule.js";
import { sharedFor } from "./status-cache.js";
import { watchUpdateProbation } from "./update-probation.js";
import { readTlsFiles, resolveServerOptions, isLoopbackAddress, type ServerOptions, type StartFlags } from "./options.js";
import { BackupManager } from "../backup/backups.js";
import { BackupState, backupTaskExecutor } from "../backup/status.js";
import { recoverInterruptedSwap } from "../backup/swap.js";
import { startTasks, type TasksRuntime } from "../tasks/runtime.js";
import { createUpdateRuntime } from "../update/runtime.js";
import { updateStatusSection } from "../update/service.js";

export interface RunningServer {
  readonly identity: ServerIdentity;
  readonly options: ServerOptions;
  readonly port: number;
  /** Where local clients reach it, e.g. http://127.0.0.1:18789. */
  readonly url: string;
  /** The browser console's address, when the console is built. */
  readonly consoleUrl?: string;
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

async function startLocked(flags: StartFlags, env: NodeJS.ProcessEnv, deps: StartDeps, lock: StateLock, paths: StatePaths): Promise<RunningServer> {
  const config = await loadConfig(paths.config);
  const options = resolveServerOptions(paths.root, flags, config, env);
  const credentials = await loadCredentials(paths, env);
  const logs = openLogs(
    config,
    paths,
    [credentials.token, credentials.secret, ...(env.CARAPACE_AGENT_API_KEY ? [env.CARAPACE_AGENT_API_KEY] : [])],
    deps.logDestination,
  );
  const logger = createLogger(options.logLevel, logs.destination);
  const log = logger.child({ component: "server" });
  for (const warning of credentials.warnings) log.warn(warning);
  const secretHistory = await recordServerSecret(paths, credentials.secret);
  if (secretHistory.replaced !== undefined) {
    log.warn(
      `the server secret changed (key id ${manifestKey(credentials.secret).keyId} replaces ${secretHistory.replaced}); backups signed with earlier secrets stay verifiable through ${paths.previousSecrets}`,
    );
  }
  const swap = await recoverInterruptedSwap(paths.root);
  if (swap !== "none") log.warn({ outcome: swap }, "an interrupted restore was completed or undone at start");

  const monitor = new HealthMonitor();
  let domainsRef: Domains | undefined;
  const metrics = new ServerMetrics(metricSources(() => domainsRef, monitor, logs.ring));
  const domains = await startDomains({ paths, config, env, credentials, previousKeys: secretHistory.previousKeys, logger, monitor, deps, metrics });
  domainsRef = domains;
  addServerChecks(monitor, { paths, options, credentials, logs, domains });
  const shutdownController = new AbortController();
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
  const { tasks, backups, backupState, updates } = domains;
  const sections = statusSections(domains, logs);
  const rpc = rpcRoutes({
    token: credentials.token,
    trustedProxies: options.trustedProxies,
    reflection: config.server?.reflection ?? "token",
    ...(config.logs?.maxFollowers !== undefined ? { maxFollowers: config.logs.maxFollowers } : {}),
    log,
    shutdown: shutdownController.signal,
    status: sharedFor(
      500,
      () => collectStatus(identity, monitor, sections),
      // A newer health verdict (or the start of shutdown) makes the shared answer stale.
      () => monitor.generation,
    ),
    paths,
    env,
    version: VERSION,
    ring: logs.ring,
    tasks,
    backups,
    onBackupStreamed: (bytes) => void backupState.recordStreamed(bytes),
    updates: updates.manager,
    monitor,
    metrics,
  });
  const { handler, consoleLoaded } = await plainRoutes({ config, log, identity, monitor, token: credentials.token, rpc, metrics });

  const tls = options.tls ? await readTlsFiles(options.tls) : undefined;
  let listener: Listener;
  try {
    tasks.start();
    listener = await listen(handler, {
      bind: options.bind,
      port: options.port,
      ...(tls ? { tls } : {}),
      limits: options.connectionLimits,
      onEvent: (e) =>
        log.warn(
          { dropped: e.count, maxConnections: e.max },
          `refused ${e.count} connections: ${e.max} are open, the most allowed (server.connections.max); idle ones are cut after their timeout`,
        ),
    });
  } catch (err) {
    await tasks.close(0);
    throw describeListenError(err, options.bind, options.port);
  }
  (identity as { port: number }).port = listener.port;
  // After the worker started: the first evaluation must not see it stopped (it is shared for 500 ms).
  metrics.start();
  // Beside the lock: where this server listens, for local commands (a port other than configured).
  const host = localHostFor(options.bind);
  const url = `${listener.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${listener.port}`;
  await recordServerAddress(paths.root, {
    pid: process.pid,
    url,
    bind: options.bind,
    port: listener.port,
    tls: listener.tls,
    startedAt: identity.startedAt.toISOString(),
  }).catch((err: Error) => log.warn({ err: err.message }, "could not record the listening address beside the lock; local commands use the configured port"));
  const consoleAt = consoleLoaded ? consoleUrl(options.bind, listener.port, listener.tls) : undefined;
  logStarted(log, { options, credentials, listener, stateDir: paths.root, ...(consoleAt ? { consoleAt } : {}) });

  const launcher = updates.launcher;
  const exitForRollback = launcher && deps.onRestartRequested && env.CARA_LAUNCHER ? () => deps.onRestartRequested?.(launcher) : undefined;
  void watchUpdateProbation({
    monitor,
    manager: updates.manager,
    log,
    version: VERSION,
    readyTimeoutMs: config.update?.readyTimeoutMs ?? 60_000,
    shutdown: shutdownController.signal,
    ...(exitForRollback ? { exitForRollback } : {}),
  });

  let stopping: Promise<void> | undefined;
  // Health goes NOT_SERVING, streams end, in-flight calls and running tasks drain (bounded).
  const stop = async (reason: string) => {
    log.info({ reason, inFlight: listener.inFlight }, "shutting down: draining in-flight calls");
    monitor.beginShutdown();
    metrics.stop();
    shutdownController.abort();
    logs.ring.closeAll();
    const [drained] = await Promise.all([listener.drain(options.shutdownTimeoutMs), tasks.close(options.shutdownTimeoutMs)]);
    if (!drained) log.warn({ timeoutMs: options.shutdownTimeoutMs }, "shutdown timeout reached; cut the calls still in flight");
    await clearServerAddress(paths.root);
    await lock.release();
    log.info("stopped");
    logs.close();
  };
  return {
    identity,
    options,
    port: listener.port,
    url,
    ...(consoleAt ? { consoleUrl: consoleAt } : {}),
    logger,
    shutdown: (reason = "requested") => (stopping ??= stop(reason)),
  };
}

/**
 * Plain HTTP before the RPCs: the browser console (built into dist/web) and its assets, CORS
 * preflights for pages of other allowed origins, and the health probes.
 */
async function plainRoutes(d: {
  config: CaraConfig;
  log: Logger;
  identity: ServerIdentity;
  monitor: HealthMonitor;
  token: string;
  rpc: RequestHandler;
  metrics: ServerMetrics;
}): Promise<{ handler: RequestHandler; consoleLoaded: boolean }> {
  const checkToken = tokenCheck(d.token);
  const authorized = (req: Parameters<RequestHandler>[0]) => checkToken(req.headers.authorization) === "ok";
  const health = healthRoutes(d.identity, d.monitor, authorized);
  const scrape = metricsRoute(d.metrics, d.config.server?.metrics ?? "token", authorized);
  const consoleOn = d.config.server?.console !== false;
  const consoleAssets = consoleOn
    ? await loadAssetSet(runningAsExecutable() ? embeddedDirectory("dist/web") : join(PACKAGE_ROOT, "dist", "web")).catch(
        (err: Error) => void d.log.error({ err: err.message }, "could not load the console"),
      )
    : undefined;
  if (consoleOn && !consoleAssets) d.log.warn("the console is not available (no dist/web/index.html: run `npm run build`); the API is unaffected");
  const web = consoleOn ? consoleRoutes(consoleAssets) : () => false;
  const cors = corsRoutes(d.config.server?.cors?.allowedOrigins ?? []);
  const rpc = d.rpc;
  return {
    handler: (req, res) => void (web(req, res) || cors(req, res) || health(req, res) || scrape(req, res) || rpc(req, res)),
    consoleLoaded: consoleAssets !== undefined,
  };
}

/** The "listening" line (the test harness and the launcher read its `port`), and the warnings that go with it. */
function logStarted(log: Logger, d: { options: ServerOptions; credentials: Credentials; listener: Listener; stateDir: string; consoleAt?: string }): void {
  const { options, credentials, listener, consoleAt } = d;
  if (!listener.tls && !isLoopbackAddress(options.bind)) {
    log.warn({ bind: options.bind }, "listening on a non-loopback address WITHOUT TLS (--allow-plaintext): tokens cross the network in plaintext");
  }
  if (credentials.secretSource === "generated") log.warn("set CARAPACE_SERVER_SECRET in production (using a generated secret from the state dir)");
  log.info(
    {
      bind: options.bind,
      port: listener.port,
      tls: listener.tls,
      stateDir: d.stateDir,
      version: VERSION,
      authMode: credentials.tokenSource,
      ...(consoleAt ? { console: consoleAt } : {}),
    },
    `listening on ${listener.tls ? "https" : "http"}://${options.bind.includes(":") ? `[${options.bind}]` : options.bind}:${listener.port}${consoleAt ? `; console at ${consoleAt}` : ""}`,
  );
}

interface Domains {
  tasks: TasksRuntime;
  backups: BackupManager;
  backupState: BackupState;
  updates: Awaited<ReturnType<typeof createUpdateRuntime>>;
}

/**
 * The stores and their workers: backups (which pause the task store around a restore), updates
 * (which take a backup first) and tasks (whose executors back up and check for updates).
 */
async function startDomains(d: {
  paths: StatePaths;
  config: CaraConfig;
  env: NodeJS.ProcessEnv;
  credentials: Credentials;
  previousKeys: readonly VerificationKey[];
  logger: Logger;
  monitor: HealthMonitor;
  deps: StartDeps;
  metrics: ServerMetrics;
}): Promise<Domains> {
  const { paths, config, logger } = d;
  let tasksRef: TasksRuntime | undefined;
  const openDatabase = () => {
    if (!tasksRef?.database) throw new Error("the task database is not open yet; retry in a few seconds");
    return tasksRef.database;
  };
  const backupState = new BackupState(paths.backupsDir, config.backup?.warnAfterDays ?? 7);
  const backups = new BackupManager({
    stateDir: paths.root,
    backupsDir: paths.backupsDir,
    secret: d.credentials.secret,
    previousKeys: d.previousKeys,
    caraVersion: VERSION,
    writers: {
      holdWrites: (fn) => (tasksRef ? tasksRef.store.withWritesHeld(fn) : fn()),
      pause: async () => tasksRef?.pause("a restore is replacing the state; retry in a few seconds"),
      resume: async () => tasksRef?.resume(!d.monitor.shuttingDown),
    },
    onBackupWritten: (path) => void backupState.recordWritten(path),
    checkRestored: checkStateLoads,
    // With the PostgreSQL store the tasks section is the database's (read once the store is open).
    ...(config.tasks?.store === "postgres"
      ? {
          tasksDatabase: {
            snapshot: () => openDatabase().snapshot(),
            replaceAll: (records) => openDatabase().replaceAll(records),
          },
        }
      : {}),
    onOperation: (op, ok, ms) => d.metrics.backupOperation(op, ok, ms),
  });
  let launcher: string | undefined;
  const updates = await createUpdateRuntime({
    updatesDir: paths.updatesDir,
    packageRoot: PACKAGE_ROOT,
    runningVersion: VERSION,
    config,
    backups,
    logger: logger.child({ component: "update" }),
    ...(d.deps.onRestartRequested ? { requestRestart: () => launcher && d.deps.onRestartRequested?.(launcher) } : {}),
  });
  launcher = updates.launcher;
  tasksRef = await startTasks({
    dir: paths.tasksDir,
    config,
    env: d.env,
    logger: logger.child({ component: "tasks" }),
    extraExecutors: { backup: backupTaskExecutor(backups), updateCheck: updates.executor },
    onAttempt: (kind, outcome, ms) => d.metrics.taskAttempt(kind, outcome, ms),
    onSync: (ms) => d.metrics.journalSynced(ms),
  });
  return { tasks: tasksRef, backups, backupState, updates };
}

/** The log pipeline: redacted stdout (or `destination`), the rotating file under logs/, the ring. */
function openLogs(config: CaraConfig, paths: StatePaths, knownSecrets: string[], destination?: DestinationStream): ReturnType<typeof createLogPipeline> {
  return createLogPipeline({
    ringCapacity: config.logs?.ringCapacity ?? 5_000,
    file:
      config.logs?.file === false
        ? null
        : { path: join(paths.logsDir, "cara.log"), maxBytes: config.logs?.fileMaxBytes ?? 10 * 1024 * 1024, maxFiles: config.logs?.fileMaxFiles ?? 5 },
    ...(destination ? { stdout: destination as unknown as LineSink } : {}),
    knownSecrets,
  });
}

/**
 * Where /metrics reads what status also shows: the same store, backup record, update state and
 * health evaluation (one source for both).
 */
function metricSources(domains: () => Domains | undefined, monitor: HealthMonitor, ring: LogRing): MetricSources {
  const need = () => {
    const d = domains();
    if (!d) throw new Error("the server is still starting");
    return d;
  };
  return {
    version: VERSION,
    taskKinds: ["systemEvent", "agentTurn", "backup", "updateCheck", "unknown"],
    tasks() {
      const d = need();
      const v = queueStatsValue(d.tasks.store, d.tasks.worker, Date.now());
      return {
        counts: v.counts,
        oldestQueuedAgeMs: v.oldestQueuedAgeMs,
        leasesRescued: v.leasesRescued,
        workerBusy: v.workerSlotsBusy,
        workerSlots: v.workerSlotsTotal,
        storeBytes: d.tasks.store.diskBytes,
      };
    },
    lastBackup: () => need().backupState.lastBackup(),
    async update() {
      const manager = need().updates.manager;
      const s = await manager.status();
      const tx = s.transaction;
      const state = s.transactionError ? "corrupt" : !tx ? "none" : tx.state;
      return {
        state,
        phase: tx?.phase ?? "",
        ...(tx?.updatedAtMs !== undefined ? { updatedAtMs: tx.updatedAtMs } : {}),
        ...(s.marker?.rolledBackAtMs !== undefined ? { rolledBackAtMs: s.marker.rolledBackAtMs } : {}),
        ...(manager.lastCheckAtMs !== undefined ? { lastCheckAtMs: manager.lastCheckAtMs } : {}),
      };
    },
    checks: async () => (await monitor.evaluate()).results.map((r) => ({ name: r.name, status: r.status })),
    schedules() {
      const t = need().tasks;
      return t.schedules.list().map((sc) => summarizeSchedule(sc, (id) => t.store.get(id)?.state, Date.now()));
    },
    logs() {
      const st = ring.stats();
      return { byLevel: st.appendedByLevel, followers: st.subscribers, dropped: st.droppedForFollowers };
    },
  };
}

/** GetStatus's sections, one per domain. */
function statusSections(d: Domains, logs: ReturnType<typeof createLogPipeline>): Map<string, SectionProvider> {
  return new Map<string, SectionProvider>([
    ["tasks", d.tasks.statusSection],
    ["logs", () => logsStatus(logs)],
    ["backup", () => d.backupState.section()],
    ["update", () => updateStatusSection(d.updates.manager)],
  ]);
}

/** The checks behind /health/ready, grpc.health.v1 and GetStatus. */
function addServerChecks(
  monitor: HealthMonitor,
  d: { paths: StatePaths; options: ServerOptions; credentials: Credentials; logs: ReturnType<typeof createLogPipeline>; domains: Domains },
): void {
  const stores: StoreHealth[] = [
    { name: "config", loaded: () => ({ ok: true, message: "loaded" }) },
    { name: "credentials", loaded: () => ({ ok: true, message: "loaded" }) },
    d.domains.tasks.storeHealth,
  ];
  monitor.addCheck(stateDirWritableCheck(d.paths.root));
  monitor.addCheck(diskFreeCheck(d.paths.root, d.options.diskFreeFloorBytes));
  monitor.addCheck(storesCheck(() => stores));
  monitor.addCheck(serverSecretCheck(d.credentials.secretSource));
  monitor.addCheck(d.domains.tasks.check);
  if (d.domains.tasks.databaseCheck) monitor.addCheck(d.domains.tasks.databaseCheck);
  monitor.addCheck(logsCheck(d.logs));
  monitor.addCheck(d.domains.backupState.check());
  monitor.addCheck(d.domains.updates.check);
}
