/**
 * `cara bugreport`: what an issue needs, packed into one `.tar.gz` (0600) an operator can attach:
 * the doctor report, status, recent log records, the effective config, versions, the update
 * transaction and marker, the queue's counts per state. Every value goes through the same
 * redaction the logs use, plus the exact values of the token, the server secret and the agent
 * API key; task payloads are left out unless asked for (and then redacted too). The report says
 * what it holds and what it left out.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { arch, platform, release } from "node:os";
import { basename, dirname, join } from "node:path";
import { fsyncDir } from "../state/durable.js";
import type { StatePaths } from "../state/paths.js";
import { FileTaskStore } from "../tasks/store.js";
import { loadMarker } from "../update/rollback-marker.js";
import { loadTransaction } from "../update/transaction.js";
import type { DoctorReport } from "./doctor.js";
import { readLogFiles } from "./log-files.js";
import type { NewLogEntry } from "./log-ring.js";
import { redactFields } from "./redact.js";
import { urlPasswords } from "../tasks/postgres/redact.js";

export interface BugreportInput {
  paths: StatePaths;
  env: NodeJS.ProcessEnv;
  output: string;
  doctor: DoctorReport;
  version: string;
  /** GetStatus as JSON, when a server answered. */
  status?: unknown;
  /** The server's recent log records (its ring), when it answered; else the log files are read. */
  ringLogs?: NewLogEntry[];
  logLines?: number;
  includePayloads?: boolean;
  now?: number;
  /** What the caller could not collect, and why (listed under "Left out"). */
  leftOut?: string[];
}

export interface BugreportResult {
  path: string;
  bytes: number;
  contains: { name: string; what: string }[];
  leftOut: string[];
}

/** Values that must never appear, whatever field they hide in: the deployment's own secrets. */
async function knownSecrets(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<string[]> {
  const read = (p: string) =>
    readFile(p, "utf8").then(
      (t) => t.trim(),
      () => "",
    );
  const configured = await readFile(paths.config, "utf8").then(
    (t) => (JSON.parse(t) as { tasks?: { postgres?: { url?: unknown } } }).tasks?.postgres?.url,
    () => undefined,
  );
  const database = [env.CARAPACE_DATABASE_URL, typeof configured === "string" ? configured : undefined].flatMap((u) => (u ? urlPasswords(u) : []));
  return [
    env.CARAPACE_GATEWAY_TOKEN,
    env.CARAPACE_SERVER_SECRET,
    env.CARAPACE_AGENT_API_KEY,
    await read(paths.token),
    await read(paths.serverSecret),
    ...database,
  ].filter((s): s is string => !!s && s.length >= 6);
}

/** Writes the report (temp name beside it, then renamed: never half a file at `output`). */
export async function writeBugreport(input: BugreportInput): Promise<BugreportResult> {
  const secrets = await knownSecrets(input.paths, input.env);
  const tasks = await FileTaskStore.readRecords(input.paths.tasksDir).catch((err: Error) => err);
  // Without --include-payloads, payload text is removed wherever it shows up: the fields known to
  // carry it (below), and any payload string of the queue found verbatim elsewhere.
  const payloadTexts = input.includePayloads || tasks instanceof Error ? [] : tasks.flatMap((t) => payloadStrings(t.payload));
  const clean = <T>(v: T): T => redactFields(v, [...secrets, ...payloadTexts]);
  const contains: BugreportResult["contains"] = [];
  const leftOut: string[] = ["auth/ (token, server secret): never included", "backups/ and the task store files themselves", ...(input.leftOut ?? [])];
  const files = new Map<string, string>();
  const add = (name: string, what: string, value: unknown) => {
    files.set(name, typeof value === "string" ? value : `${JSON.stringify(clean(value), null, 2)}\n`);
    contains.push({ name, what });
  };

  add("doctor.json", "the doctor report (cara doctor --json)", input.doctor);
  if (input.status !== undefined)
    add("status.json", "the server's status (cara status --json)", input.includePayloads ? input.status : withoutEventTexts(input.status));
  else leftOut.push("status.json: no server answered");
  const logs =
    input.ringLogs ??
    (await readLogFiles(input.paths.logsDir, { limit: input.logLines ?? 1_000 }).then(
      (r) => r.entries,
      () => [] as NewLogEntry[],
    ));
  const record = (e: NewLogEntry) => ({
    time: new Date(e.time).toISOString(),
    level: e.level,
    component: e.component,
    msg: e.message,
    ...(input.includePayloads ? e.fields : withoutPayloadFields(e)),
  });
  add(
    "logs.jsonl",
    `the last ${logs.length} log records (${input.ringLogs ? "from the server's ring" : "from the log files"})`,
    logs.map((e) => JSON.stringify(clean(record(e)))).join("\n") + (logs.length > 0 ? "\n" : ""),
  );
  const config = await readFile(input.paths.config, "utf8").then(
    (t) => JSON.parse(t) as unknown,
    () => undefined,
  );
  if (config !== undefined) add("config.json", "config.json, secrets redacted", config);
  else leftOut.push("config.json: none, or not valid JSON (the doctor report says which)");
  add("versions.json", "cara, Node.js, OS and architecture", {
    cara: input.version,
    node: process.version,
    os: `${platform()} ${release()}`,
    arch: arch(),
    env: Object.fromEntries(
      Object.keys(input.env)
        .filter((k) => k.startsWith("CARAPACE_"))
        .sort()
        .map((k) => [k, "(set)"]),
    ),
  });
  add("update.json", "the update transaction and rollback marker", {
    transaction: await loadTransaction(input.paths.updatesDir).catch((err: Error) => ({ error: err.message })),
    marker: await loadMarker(input.paths.updatesDir).catch((err: Error) => ({ error: err.message })),
  });
  if (tasks instanceof Error) leftOut.push(`queue counts: the queue does not load (${tasks.message.split(";")[0]})`);
  else {
    const counts: Record<string, number> = {};
    for (const t of tasks) counts[t.state] = (counts[t.state] ?? 0) + 1;
    add("queue.json", "tasks per state", { total: tasks.length, counts });
    if (input.includePayloads) add("tasks.json", "every task with its payload (--include-payloads), redacted", tasks);
    else leftOut.push("task payloads (pass --include-payloads to include them, redacted)");
  }
  add(
    "README.txt",
    "this list",
    `cara bug report, ${new Date(input.now ?? Date.now()).toISOString()}\n\nContains:\n${contains.map((c) => `  ${c.name}: ${c.what}`).join("\n")}\n  README.txt: this list\n\nLeft out:\n${leftOut.map((l) => `  ${l}`).join("\n")}\n`,
  );
  return { ...(await pack(input.output, files)), contains, leftOut };
}

/** Said instead of payload text. */
const PAYLOAD_LEFT_OUT = "[PAYLOAD LEFT OUT]";

/** The string values of a payload (not its kind) long enough to be told apart from ordinary words. */
function payloadStrings(payload: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown, key: string, depth: number) => {
    if (depth > 16) return;
    if (typeof v === "string") {
      if (key !== "kind" && v.length >= 8) out.push(v);
    } else if (Array.isArray(v)) for (const x of v) walk(x, key, depth + 1);
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k, depth + 1);
  };
  walk(payload, "", 0);
  return out;
}

/** A log record's fields with the ones that carry payload text replaced: the `event` of "system event" records. */
function withoutPayloadFields(e: NewLogEntry): Record<string, unknown> {
  if (e.message !== "system event" || !("event" in e.fields)) return { ...e.fields };
  return { ...e.fields, event: PAYLOAD_LEFT_OUT };
}

/** A status document with the text of its recent system events (payload text) replaced. */
function withoutEventTexts(status: unknown): unknown {
  const tasks = (status as { tasks?: { recentEvents?: unknown } } | null)?.tasks;
  if (!tasks || !Array.isArray(tasks.recentEvents)) return status;
  const recentEvents = tasks.recentEvents.map((e: unknown) => (e && typeof e === "object" ? { ...e, text: PAYLOAD_LEFT_OUT } : e));
  return { ...(status as object), tasks: { ...tasks, recentEvents } };
}

async function pack(output: string, files: Map<string, string>): Promise<{ path: string; bytes: number }> {
  const stage = join(dirname(output), `.${basename(output)}.${randomBytes(4).toString("hex")}.d`);
  const tmp = `${output}.${randomBytes(4).toString("hex")}.partial`;
  await mkdir(stage, { mode: 0o700 });
  try {
    const top = basename(output).replace(/\.tar\.gz$|\.tgz$/, "");
    await mkdir(join(stage, top), { mode: 0o700 });
    for (const [name, text] of files) await writeFile(join(stage, top, name), text, { mode: 0o600 });
    const { create: createTar } = await import("tar");
    await createTar({ gzip: true, cwd: stage, file: tmp, portable: true }, [top]);
    const handle = await open(tmp, constants.O_RDONLY);
    let bytes: number;
    try {
      await handle.chmod(0o600);
      await handle.sync();
      bytes = (await handle.stat()).size;
    } finally {
      await handle.close();
    }
    await rename(tmp, output);
    await fsyncDir(dirname(output));
    return { path: output, bytes };
  } finally {
    await rm(stage, { recursive: true, force: true });
    await rm(tmp, { force: true });
  }
}

/** Log records a bug report holds by default, and at most. */
export const DEFAULT_BUGREPORT_LINES = 1_000;
export const MAX_BUGREPORT_LINES = 5_000;
/** The largest bug report the server streams (a report is small; more means huge log records). */
export const MAX_BUGREPORT_BYTES = 16 * 1024 * 1024;

/** A bug report option out of range (names the option). */
export class BugreportOptionError extends Error {
  constructor(
    readonly option: "lines",
    message: string,
  ) {
    super(message);
    this.name = "BugreportOptionError";
  }
}

/** The report came out larger than the server streams. */
export class BugreportTooLargeError extends Error {
  constructor(readonly bytes: number) {
    super(`the bug report is ${(bytes / 1048576).toFixed(1)} MiB, more than the ${MAX_BUGREPORT_BYTES / 1048576} MiB allowed: ask for fewer log lines`);
    this.name = "BugreportTooLargeError";
  }
}

/** The number of log lines asked for (0 or absent: the default), or a BugreportOptionError. */
export function bugreportLines(value: number | undefined): number {
  if (value === undefined || value === 0) return DEFAULT_BUGREPORT_LINES;
  if (!Number.isInteger(value) || value < 1 || value > MAX_BUGREPORT_LINES)
    throw new BugreportOptionError("lines", `log lines must be from 1 to ${MAX_BUGREPORT_LINES} (got ${value})`);
  return value;
}

/** A file name for a report made at `now`: cara-bugreport-20261205T061500Z.tar.gz. */
export function bugreportFileName(now = Date.now()): string {
  return `cara-bugreport-${new Date(now)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}.tar.gz`;
}
