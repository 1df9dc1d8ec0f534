/**
 * The server of a local state dir, as `cara doctor` and `cara bugreport` reach it: at the address
 * it recorded beside its lock (whatever port it was started on), with the state dir's token. Over
 * TLS the server's own certificate (config.json server.tlsCert, or CARAPACE_TLS_CERT) is trusted
 * unless --tls-ca names a CA, so a self-signed local server needs no flag.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { GetStatusResponseSchema, LogLevel, OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import type { DoctorProbes } from "../ops/doctor.js";
import type { LogLevel as DomainLevel, NewLogEntry } from "../ops/log-ring.js";
import { loadConfig } from "../state/config.js";
import type { StatePaths } from "../state/paths.js";
import { readLocalToken } from "../state/secrets.js";
import { logLevelNames } from "../wire/ops.js";
import { httpGet } from "./http-probe.js";
import { messageToCliJson } from "./json.js";
import { describeError, rpcClient } from "./rpc.js";
import type { Target } from "./target.js";

export interface LocalServerOptions {
  paths: StatePaths;
  env: NodeJS.ProcessEnv;
  /** Per-request timeout. */
  timeoutMs: number;
  /** PEM of a CA to trust (--tls-ca); else the configured certificate. */
  ca?: Buffer;
}

/** A Target for a recorded server URL (http://127.0.0.1:18789, https://[::1]:8443). */
async function targetFor(url: string, o: LocalServerOptions): Promise<Target> {
  const u = new URL(url);
  const tls = u.protocol === "https:";
  const target: Target = { host: u.hostname, port: Number(u.port || (tls ? 443 : 80)), tls, baseUrl: `${u.protocol}//${u.host}`, display: u.host };
  const token = await readLocalToken(o.paths, o.env).catch(() => undefined);
  if (token !== undefined) target.token = token;
  if (o.ca) target.ca = o.ca;
  else if (tls) Object.assign(target, await configuredTrust(o));
  return target;
}

/**
 * How to trust the configured certificate when reaching it on a loopback address: a self-signed
 * one is its own CA; either way the name checked is one the certificate carries (a server for
 * ops.example.com is still reached at 127.0.0.1).
 */
async function configuredTrust(o: LocalServerOptions): Promise<{ ca?: Buffer; servername?: string }> {
  const config = await loadConfig(o.paths.config).catch(() => undefined);
  const file = o.env.CARAPACE_TLS_CERT?.trim() || config?.server?.tlsCert;
  const pem = file ? await readFile(file).catch(() => undefined) : undefined;
  if (!pem) return {};
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return {};
  }
  const dns = (cert.subjectAltName ?? "")
    .split(", ")
    .find((n) => n.startsWith("DNS:") && !n.includes("*"))
    ?.slice(4);
  const selfSigned = cert.checkIssued(cert);
  return { ...(selfSigned ? { ca: pem } : {}), ...(dns ? { servername: dns } : {}) };
}

function fromWire(e: { time?: Parameters<typeof timestampMs>[0]; level: LogLevel; component: string; message: string; fields?: unknown }): NewLogEntry {
  return {
    time: e.time ? timestampMs(e.time) : 0,
    level: (logLevelNames.name(e.level) ?? "info") as DomainLevel,
    component: e.component,
    message: e.message,
    fields: (e.fields ?? {}) as Record<string, unknown>,
  };
}

/** The doctor's probes against a live local server: GET /health, and the warnings and errors of its log ring. */
export function localProbes(o: LocalServerOptions): DoctorProbes {
  return {
    async health(url) {
      const target = await targetFor(url, o);
      try {
        return { status: (await httpGet(target, "/health", o.timeoutMs)).status };
      } catch (err) {
        return { error: describeError(err, target, o.timeoutMs) };
      }
    },
    async recentLogs(url) {
      const target = await targetFor(url, o);
      try {
        const client = await rpcClient(OpsService, target, o.timeoutMs);
        const res = await client.tailLogs({ limit: 2_000, filter: { minLevel: LogLevel.WARN } });
        return res.entries.map(fromWire);
      } catch (err) {
        throw new Error(describeError(err, target, o.timeoutMs));
      }
    },
  };
}

/** What the bug report asks a live server: its status (as `cara status --json` prints it) and its last log records. */
export async function serverSnapshot(
  url: string,
  lines: number,
  o: LocalServerOptions,
): Promise<{ status?: unknown; ringLogs?: NewLogEntry[]; problem?: string }> {
  const target = await targetFor(url, o);
  try {
    const client = await rpcClient(OpsService, target, o.timeoutMs);
    const [status, logs] = await Promise.all([client.getStatus({}), client.tailLogs({ limit: lines, maxBytes: 1_048_576 })]);
    return { status: messageToCliJson(GetStatusResponseSchema, status), ringLogs: logs.entries.map(fromWire) };
  } catch (err) {
    return { problem: describeError(err, target, o.timeoutMs) };
  }
}
