/**
 * `cara doctor`: the first-response checklist, in order, as one command that works whether or
 * not the server is up. Each step is ok / warn / fail with one line saying what was found and,
 * unless ok, the one next action. It reads the state dir itself (lock, address, config, stores,
 * update transaction, backups, log files) and asks the server only what only it knows (its
 * health, its in-memory log ring), through probes the caller supplies.
 */
import { X509Certificate } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { lstat, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { readBackupArchive } from "../backup/archive.js";
import { loadConfig, type CaraConfig } from "../state/config.js";
import { lockOwner } from "../state/lock.js";
import type { StatePaths } from "../state/paths.js";
import { liveServerAddress, type ServerAddress } from "../state/server-address.js";
import { ScheduleStore } from "../tasks/schedule-store.js";
import { FileTaskStore } from "../tasks/store.js";
import { loadMarker } from "../update/rollback-marker.js";
import { loadTransaction } from "../update/transaction.js";
import { readLogFiles } from "./log-files.js";
import type { NewLogEntry } from "./log-ring.js";

/** A step's verdict, in the order of the API's DoctorStepStatus. */
export const STEP_STATUSES = ["ok", "warn", "fail", "skip"] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

export interface DoctorStep {
  id: string;
  title: string;
  status: StepStatus;
  /** What was found, one line. */
  summary: string;
  /** The one thing to do next (absent when ok). */
  next?: string;
  /** Extra lines (e.g. the components with errors). */
  details?: string[];
}

export interface DoctorReport {
  stateDir: string;
  server: { running: boolean; pid?: number; url?: string };
  steps: DoctorStep[];
  /** fail when any step failed, warn when any warned, else ok. */
  verdict: "ok" | "warn" | "fail";
  /** The newest archive that verifies, and the command that restores it (when something failed). */
  restore?: { path: string; ageDays: number; command: string };
}

export interface DoctorProbes {
  /** GET /health at the server's URL: the HTTP status, or an error message. */
  health(url: string): Promise<{ status: number } | { error: string }>;
  /** The server's recent log records (its ring), when it is up. */
  recentLogs?(url: string): Promise<NewLogEntry[]>;
}

export interface DoctorOptions {
  paths: StatePaths;
  env: NodeJS.ProcessEnv;
  probes: DoctorProbes;
  now?: number;
  /** Recent log records looked at for the first failing component (default 2,000). */
  logLimit?: number;
}

const DAY = 86_400_000;

/** "a", "a and b", "a, b and c". */
const listed = (items: string[]) => (items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`);

/** Runs the checklist. Never throws for what it finds: every problem is a step. */
export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const now = o.now ?? Date.now();
  const steps: DoctorStep[] = [];
  const { server, step: serverStep } = await checkServer(o);
  steps.push(serverStep, await checkToken(o));
  const configStep = await checkConfig(o);
  steps.push(configStep.step);
  steps.push(await checkLogs(o, server, now));
  const stores = await checkStores(o);
  steps.push(...stores.steps);
  steps.push(await checkAgentProvider(o, configStep.config, stores.agentTurnTasks));
  steps.push(...(await checkTls(o, configStep.config, now)), checkSecret(o), await checkModes(o));
  steps.push(await checkUpdate(o), await checkInterruptedRestore(o));
  const backups = await checkBackups(o, now);
  steps.push(backups.step);
  const verdict = steps.some((s) => s.status === "fail") ? "fail" : steps.some((s) => s.status === "warn") ? "warn" : "ok";
  const report: DoctorReport = { stateDir: o.paths.root, server, steps, verdict };
  if (verdict === "fail" && backups.newest) {
    const command = server.running
      ? `cara restore ${backups.newest.path} --dry-run --state-dir ${o.paths.root}   (then again with --force)`
      : `cara restore ${backups.newest.path} --offline --force --state-dir ${o.paths.root}`;
    report.restore = { path: backups.newest.path, ageDays: backups.newest.ageDays, command };
  }
  return report;
}

async function checkServer(o: DoctorOptions): Promise<{ server: DoctorReport["server"]; step: DoctorStep }> {
  const result = (server: DoctorReport["server"], status: DoctorStep["status"], summary: string, next?: string) => ({
    server,
    step: { id: "server", title: "server", status, summary, ...(next !== undefined ? { next } : {}) },
  });
  const pid = await lockOwner(o.paths.root).catch(() => undefined);
  if (pid === undefined) {
    const configured = await configuredListen(o);
    return result(
      { running: false },
      "warn",
      `no server is running for ${o.paths.root} (no live lock); configured to listen on ${configured}`,
      `start it: cara start --state-dir ${o.paths.root}`,
    );
  }
  const address: ServerAddress | undefined = await liveServerAddress(o.paths.root);
  if (!address) {
    return result(
      { running: true, pid },
      "warn",
      `a server (pid ${pid}) holds the lock but did not record where it listens (still starting, or an older version)`,
      "wait a few seconds and run cara doctor again; check cara logs --file",
    );
  }
  const server = { running: true, pid, url: address.url };
  const health = await o.probes.health(address.url);
  if ("error" in health) {
    return result(
      server,
      "fail",
      `server pid ${pid} listens on ${address.url} but GET /health failed: ${health.error}`,
      `it may be hung: check cara logs --file --since 10m, then restart it (kill -TERM ${pid})`,
    );
  }
  if (health.status !== 200) {
    return result(
      server,
      "fail",
      `server pid ${pid} on ${address.url} answered GET /health with HTTP ${health.status}`,
      `that is not a healthy cara: check what listens on port ${address.port}`,
    );
  }
  const configured = await configuredListen(o);
  const listening = `${address.bind}:${address.port}`;
  if (configured !== listening) {
    return result(
      server,
      "warn",
      `server pid ${pid} is healthy on ${address.url}, but the configuration says ${configured}`,
      `local commands find it anyway; to make it listen where configured, restart it (or fix server.port / server.bind in ${o.paths.config})`,
    );
  }
  return result(server, "ok", `server pid ${pid} is healthy on ${address.url}`);
}

/** bind:port from flags' sources a server would use: env, then config.json, then defaults. */
async function configuredListen(o: DoctorOptions): Promise<string> {
  const config = await loadConfig(o.paths.config).catch(() => ({}) as CaraConfig);
  const port = o.env.CARAPACE_PORT?.trim() || String(config.server?.port ?? 18789);
  const bind = o.env.CARAPACE_BIND?.trim() || config.server?.bind || "127.0.0.1";
  return `${bind}:${port}`;
}

async function checkToken(o: DoctorOptions): Promise<DoctorStep> {
  const title = "token";
  if (o.env.CARAPACE_GATEWAY_TOKEN?.trim()) return { id: "token", title, status: "ok", summary: "CARAPACE_GATEWAY_TOKEN is set" };
  try {
    const text = await readFile(o.paths.token, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
    if (text.trim().length < 32)
      return {
        id: "token",
        title,
        status: "fail",
        summary: `${o.paths.token} is empty or too short`,
        next: "delete it and restart the server to generate a new one (clients then need the new token)",
      };
    return { id: "token", title, status: "ok", summary: `${o.paths.token} is readable` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      return {
        id: "token",
        title,
        status: "warn",
        summary: `no token yet (${o.paths.token} does not exist)`,
        next: "start the server once: it generates the token",
      };
    return {
      id: "token",
      title,
      status: "fail",
      summary: `cannot read ${o.paths.token} (${code})`,
      next: "run cara as the server's user, or set CARAPACE_GATEWAY_TOKEN",
    };
  }
}

async function checkConfig(o: DoctorOptions): Promise<{ step: DoctorStep; config: CaraConfig }> {
  try {
    const config = await loadConfig(o.paths.config);
    const present = await lstat(o.paths.config).then(
      () => true,
      () => false,
    );
    return {
      config,
      step: { id: "config", title: "configuration", status: "ok", summary: present ? `${o.paths.config} is valid` : "no config.json (defaults apply)" },
    };
  } catch (err) {
    return {
      config: {},
      step: {
        id: "config",
        title: "configuration",
        status: "fail",
        summary: (err as Error).message,
        next: `fix the key it names in ${o.paths.config} (or move the file away to start with defaults)`,
      },
    };
  }
}

/** Which part of cara a log record is about (for "the first failing component"). */
export function componentOf(e: Pick<NewLogEntry, "component" | "message" | "fields">): string {
  if (/authentication failed|failed authentication/.test(e.message)) return "auth";
  if (e.component === "tasks" && /LLM|agent|provider/i.test(`${e.message} ${JSON.stringify(e.fields)}`)) return "agent provider";
  if (["server", "tasks", "backup", "update", "logs"].includes(e.component)) return e.component;
  return e.component === "" ? "server" : e.component;
}

async function checkLogs(o: DoctorOptions, server: DoctorReport["server"], now: number): Promise<DoctorStep> {
  const title = "recent logs";
  let entries: NewLogEntry[] = [];
  let source = "";
  let ringProblem: string | undefined;
  const fromFiles = async (why = "") => {
    entries = (await readLogFiles(o.paths.logsDir, { minLevel: "warn", limit: o.logLimit ?? 2_000, sinceMs: now - 7 * DAY })).entries;
    source = `the log files in ${o.paths.logsDir}${why}`;
  };
  try {
    if (server.running && server.url && o.probes.recentLogs) {
      try {
        entries = await o.probes.recentLogs(server.url);
        source = "the server's log ring";
      } catch (err) {
        // The ring is out of reach (e.g. the token was rejected): the files hold the same records.
        ringProblem = `the server's log ring could not be read (${(err as Error).message}); these come from the log files`;
        await fromFiles(` (the server's log ring could not be read: ${(err as Error).message})`);
      }
    } else await fromFiles();
  } catch (err) {
    return {
      id: "logs",
      title,
      status: "warn",
      summary: `could not read the logs: ${(err as Error).message}`,
      next: "check the permissions of the logs directory",
    };
  }
  const problems = entries.filter((e) => e.level === "warn" || e.level === "error" || e.level === "fatal").sort((a, b) => a.time - b.time);
  if (problems.length === 0) return { id: "logs", title, status: "ok", summary: `no warnings or errors in ${source}` };
  const groups = new Map<string, { first: NewLogEntry; count: number; errors: number }>();
  for (const e of problems) {
    const c = componentOf(e);
    const g = groups.get(c);
    if (g) {
      g.count++;
      if (e.level !== "warn") g.errors++;
    } else groups.set(c, { first: e, count: 1, errors: e.level === "warn" ? 0 : 1 });
  }
  const ordered = [...groups.entries()].sort((a, b) => a[1].first.time - b[1].first.time);
  const firstFailing = ordered.find(([, g]) => g.errors > 0) ?? ordered[0]!;
  const [component, g] = firstFailing;
  const details = ordered.map(
    ([c, x]) => `${c}: ${x.count} (${x.errors} error${x.errors === 1 ? "" : "s"}), first at ${new Date(x.first.time).toISOString()}: ${x.first.message}`,
  );
  if (ringProblem) details.push(ringProblem);
  return {
    id: "logs",
    title,
    status: g.errors > 0 ? "fail" : "warn",
    summary: `first ${g.errors > 0 ? "failing" : "warning"} component: ${component}, since ${new Date(g.first.time).toISOString()} (${g.count} record${g.count === 1 ? "" : "s"}): ${g.first.message}`,
    next: `read them: cara logs --grep '${g.first.message.slice(0, 40).replace(/'/g, "")}'${server.running ? "" : " --file"}`,
    details,
  };
}

async function checkStores(o: DoctorOptions): Promise<{ steps: DoctorStep[]; agentTurnTasks: number }> {
  const steps: DoctorStep[] = [];
  let agentTurnTasks = 0;
  try {
    const records = await FileTaskStore.readRecords(o.paths.tasksDir);
    agentTurnTasks = records.filter((t) => (t.payload as { kind?: string }).kind === "agentTurn" && !["done", "failed", "cancelled"].includes(t.state)).length;
    steps.push({ id: "tasks", title: "task queue", status: "ok", summary: records.length === 1 ? "1 task loads" : `${records.length} tasks load` });
  } catch (err) {
    const copies = (await readdir(o.paths.tasksDir).catch(() => [] as string[])).filter((n) => n.includes(".corrupt.")).sort();
    steps.push({
      id: "tasks",
      title: "task queue",
      status: "fail",
      summary: (err as Error).message.split("; refusing")[0]!,
      next: `restore the queue from a backup (below)${copies.length > 0 ? `; the damaged file is kept as ${join(o.paths.tasksDir, copies.at(-1)!)}` : ""}`,
    });
  }
  try {
    const { schedules } = await ScheduleStore.check(o.paths.tasksDir);
    steps.push({ id: "schedules", title: "schedules", status: "ok", summary: schedules === 1 ? "1 schedule loads" : `${schedules} schedules load` });
  } catch (err) {
    steps.push({
      id: "schedules",
      title: "schedules",
      status: "fail",
      summary: (err as Error).message.split("; refusing")[0]!,
      next: "restore the tasks section from a backup (below)",
    });
  }
  return { steps, agentTurnTasks };
}

async function checkAgentProvider(o: DoctorOptions, config: CaraConfig, agentTurnTasks: number): Promise<DoctorStep> {
  const title = "agent provider";
  const missing = [
    !config.agent?.baseUrl && "agent.baseUrl",
    !config.agent?.model && "agent.model",
    !o.env.CARAPACE_AGENT_API_KEY && "CARAPACE_AGENT_API_KEY",
  ].filter((x): x is string => typeof x === "string");
  if (missing.length === 0)
    return { id: "agent", title, status: "ok", summary: `${withoutCredentials(config.agent?.baseUrl ?? "")} with model ${config.agent?.model}` };
  if (agentTurnTasks === 0) return { id: "agent", title, status: "ok", summary: `not configured (${missing.join(", ")} unset); no agentTurn task needs it` };
  return {
    id: "agent",
    title,
    status: "fail",
    summary: `${agentTurnTasks === 1 ? "1 agentTurn task waits" : `${agentTurnTasks} agentTurn tasks wait`} for a provider, but ${listed(missing)} ${missing.length > 1 ? "are" : "is"} not set`,
    next: `set ${missing.filter((m) => m.startsWith("agent.")).join(" and ") || "the API key"}${missing.some((m) => m.startsWith("agent.")) ? ` in ${o.paths.config}` : ""}${missing.includes("CARAPACE_AGENT_API_KEY") ? " (and CARAPACE_AGENT_API_KEY if the endpoint needs one)" : ""}, restart, then cara task resume <id>`,
  };
}

/** A URL as it may be shown: a user name or password in it replaced. */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === "" && u.password === "") return url;
    u.username = "";
    u.password = "";
    return u.toString().replace("//", "//[REDACTED]@");
  } catch {
    return url.replace(/\/\/[^/@\s]*@/, "//[REDACTED]@");
  }
}

async function checkTls(o: DoctorOptions, config: CaraConfig, now: number): Promise<DoctorStep[]> {
  const cert = o.env.CARAPACE_TLS_CERT?.trim() || config.server?.tlsCert;
  const key = o.env.CARAPACE_TLS_KEY?.trim() || config.server?.tlsKey;
  if (!cert && !key) return [{ id: "tls", title: "TLS", status: "ok", summary: "not configured (plaintext; loopback only unless --allow-plaintext)" }];
  const title = "TLS";
  try {
    await readFile(key ?? "");
    const x509 = new X509Certificate(await readFile(cert ?? ""));
    const left = Date.parse(x509.validTo) - now;
    if (left <= 0)
      return [
        {
          id: "tls",
          title,
          status: "fail",
          summary: `the certificate ${cert} expired on ${new Date(Date.parse(x509.validTo)).toISOString()}`,
          next: "renew it and restart the server",
        },
      ];
    if (left < 14 * DAY)
      return [
        {
          id: "tls",
          title,
          status: "warn",
          summary: `the certificate ${cert} expires in ${Math.ceil(left / DAY)} days (${new Date(Date.parse(x509.validTo)).toISOString()})`,
          next: "renew it before then and restart the server",
        },
      ];
    return [{ id: "tls", title, status: "ok", summary: `${cert} is valid until ${new Date(Date.parse(x509.validTo)).toISOString()}` }];
  } catch (err) {
    return [
      {
        id: "tls",
        title,
        status: "fail",
        summary: `cannot read the TLS certificate or key (${(err as Error).message})`,
        next: "fix server.tlsCert / server.tlsKey (or CARAPACE_TLS_CERT / CARAPACE_TLS_KEY)",
      },
    ];
  }
}

function checkSecret(o: DoctorOptions): DoctorStep {
  if (o.env.CARAPACE_SERVER_SECRET) return { id: "secret", title: "server secret", status: "ok", summary: "CARAPACE_SERVER_SECRET is set" };
  return {
    id: "secret",
    title: "server secret",
    status: "warn",
    summary: `a generated secret in ${o.paths.serverSecret} is used`,
    next: "set CARAPACE_SERVER_SECRET in production (openssl rand -base64 48); earlier backups stay verifiable (README: secret rotation)",
  };
}

async function checkModes(o: DoctorOptions): Promise<DoctorStep> {
  const title = "state dir owner and modes";
  const problems: string[] = [];
  const me = process.geteuid?.();
  const look = async (path: string, want: number, dir: boolean) => {
    const st = await stat(path).catch(() => undefined);
    if (!st) return;
    if (me !== undefined && st.uid !== me) problems.push(`${path} is owned by uid ${st.uid}, not ${me}`);
    if ((st.mode & 0o777 & ~want) !== 0) problems.push(`${path} is ${(st.mode & 0o777).toString(8)}, wants ${want.toString(8)}${dir ? "" : " or tighter"}`);
  };
  await look(o.paths.root, 0o700, true);
  for (const d of [o.paths.authDir, o.paths.tasksDir, o.paths.backupsDir, o.paths.logsDir, o.paths.updatesDir]) await look(d, 0o700, true);
  for (const f of [o.paths.token, o.paths.serverSecret, o.paths.config]) await look(f, 0o600, false);
  if (problems.length === 0) return { id: "modes", title, status: "ok", summary: "private to this user (dirs 0700, files 0600)" };
  return {
    id: "modes",
    title,
    status: "warn",
    summary: problems[0]!,
    next: `chmod -R go-rwx ${o.paths.root} (the server tightens them at start)`,
    details: problems,
  };
}

async function checkUpdate(o: DoctorOptions): Promise<DoctorStep> {
  const title = "update";
  try {
    const [tx, marker] = await Promise.all([loadTransaction(o.paths.updatesDir), loadMarker(o.paths.updatesDir)]);
    if (marker?.startupState === "rollback_failed") {
      return {
        id: "update",
        title,
        status: "fail",
        summary: `the launcher could not roll back v${marker.toVersion}: ${marker.reason ?? "no reason recorded"}`,
        next: "cara update --status, then cara update --rollback (or switch current back by hand)",
      };
    }
    if (marker?.startupState === "rolled_back") {
      return {
        id: "update",
        title,
        status: "warn",
        summary: `the launcher rolled back v${marker.toVersion ?? "?"} (it never became ready)`,
        next: "see why in cara logs --grep 'did not become ready'; cara update --status",
      };
    }
    if (!tx) return { id: "update", title, status: "ok", summary: "no update transaction" };
    if (tx.state === "in_progress")
      return {
        id: "update",
        title,
        status: "warn",
        summary: `an update to v${tx.version} is in progress (phase ${tx.phase})`,
        next: "resume it with cara update, or see cara update --status",
      };
    if (tx.state === "failed")
      return {
        id: "update",
        title,
        status: "warn",
        summary: `the last update to v${tx.version} failed${tx.failedPhase ? ` while ${tx.failedPhase}` : ""}: ${tx.lastError ?? "?"}`,
        next: "cara update --status shows it; retry with cara update",
      };
    return { id: "update", title, status: "ok", summary: `last update to v${tx.version} applied` };
  } catch (err) {
    return {
      id: "update",
      title,
      status: "fail",
      summary: (err as Error).message,
      next: `move the damaged file in ${o.paths.updatesDir} aside; cara update --status explains`,
    };
  }
}

async function checkInterruptedRestore(o: DoctorOptions): Promise<DoctorStep> {
  const names = await readdir(o.paths.root).catch(() => [] as string[]);
  const marker = names.includes("restore-swap.json");
  const leftovers = names.filter((n) => n.startsWith(".restore-"));
  if (!marker && leftovers.length === 0) return { id: "restore", title: "interrupted restore", status: "ok", summary: "none" };
  return {
    id: "restore",
    title: "interrupted restore",
    status: "warn",
    summary: marker
      ? "a restore was interrupted during its swap (restore-swap.json is present)"
      : `leftovers of an interrupted restore: ${leftovers.join(", ")}`,
    next: "start the server (or run cara restore --offline): it completes or undoes the swap, then removes the leftovers",
  };
}

async function checkBackups(o: DoctorOptions, now: number): Promise<{ step: DoctorStep; newest?: { path: string; ageDays: number } }> {
  const title = "backups";
  const secret = o.env.CARAPACE_SERVER_SECRET || (await readFile(o.paths.serverSecret, "utf8").catch(() => "")).trim();
  const names = (await readdir(o.paths.backupsDir).catch(() => [] as string[])).filter((n) => n.endsWith(".tar.gz"));
  const candidates = (
    await Promise.all(names.map(async (n) => ({ path: join(o.paths.backupsDir, n), st: await lstat(join(o.paths.backupsDir, n)).catch(() => undefined) })))
  )
    .filter((c) => c.st?.isFile())
    .sort((a, b) => b.st!.mtimeMs - a.st!.mtimeMs);
  if (candidates.length === 0)
    return {
      step: {
        id: "backups",
        title,
        status: "warn",
        summary: `no archive in ${o.paths.backupsDir}`,
        next: 'cara backup -o FILE, or cara schedule create --cron \'0 3 * * *\' --payload \'{"kind":"backup","keep":7}\' --name nightly-backup',
      },
    };
  if (!secret)
    return {
      step: {
        id: "backups",
        title,
        status: "warn",
        summary: `${candidates.length} archives, but no server secret to verify them with`,
        next: "set CARAPACE_SERVER_SECRET (or keep auth/server-secret)",
      },
    };
  let failed = 0;
  for (const c of candidates.slice(0, 5)) {
    const res = await readBackupArchive(createReadStream(c.path), { secret, allowForeign: false }).catch(() => undefined);
    if (!res?.ok || res.foreign) {
      failed++;
      continue;
    }
    const ageDays = Math.floor((now - c.st!.mtimeMs) / DAY);
    const step: DoctorStep = {
      id: "backups",
      title,
      status: ageDays > 7 ? "warn" : "ok",
      summary: `newest verified archive: ${c.path} (${ageDays} days old${failed > 0 ? `; ${failed} newer ones do not verify` : ""})`,
    };
    if (ageDays > 7) step.next = "take a fresh one: cara backup -o FILE (or schedule one)";
    return { step, newest: { path: c.path, ageDays } };
  }
  return {
    step: {
      id: "backups",
      title,
      status: "fail",
      summary: `none of the ${Math.min(5, candidates.length)} newest archives verifies with this deployment's secret`,
      next: "cara backup verify FILE shows why; take a new backup once the server runs",
    },
  };
}
