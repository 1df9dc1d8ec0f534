import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import type { ConnectionLimits } from "./listener.js";
import type { CaraConfig, LogLevelName } from "../state/config.js";
import { LOG_LEVELS } from "../state/config.js";

export const DEFAULT_PORT = 18789;
export const DEFAULT_BIND = "127.0.0.1";
export const DEFAULT_DISK_FLOOR_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/** What `cara start` was given on its command line (undefined = not given). */
export interface StartFlags {
  stateDir?: string;
  port?: number;
  bind?: string;
  tlsCert?: string;
  tlsKey?: string;
  allowPlaintext?: boolean;
  logLevel?: string;
}

export interface ServerOptions {
  stateDir: string;
  port: number;
  bind: string;
  tls?: { certFile: string; keyFile: string };
  allowPlaintext: boolean;
  logLevel: LogLevelName;
  shutdownTimeoutMs: number;
  diskFreeFloorBytes: number;
  /** Bounds on every connection (defaults in listener.ts). */
  connectionLimits: Partial<ConnectionLimits>;
  /** Proxies whose X-Forwarded-For names the client (normalized IPs). */
  trustedProxies: string[];
}

export class OptionsError extends Error {}

function parsePort(value: string, source: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new OptionsError(`${source} must be a port number 0..65535 (got '${value}')`);
  return port;
}

function parseLevel(value: string, source: string): LogLevelName {
  const level = value.trim().toLowerCase() === "warning" ? "warn" : value.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new OptionsError(`${source} must be one of ${LOG_LEVELS.join(", ")} (got '${value}')`);
  }
  return level as LogLevelName;
}

const nonEmpty = (v: string | undefined) => (v !== undefined && v.trim() !== "" ? v : undefined);

/** One spelling per address: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes the IPv4 address, lower case. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  return a.startsWith("::ffff:") && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** Whether an address only accepts connections from this machine. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || h === "::ffff:127.0.0.1";
}

/** Precedence: flag > environment > config.json > default. */
export function resolveServerOptions(stateDir: string, flags: StartFlags, config: CaraConfig, env: NodeJS.ProcessEnv = process.env): ServerOptions {
  const server = config.server ?? {};
  const envPort = nonEmpty(env.CARAPACE_PORT);
  const port = flags.port ?? (envPort !== undefined ? parsePort(envPort, "CARAPACE_PORT") : undefined) ?? server.port ?? DEFAULT_PORT;
  const bind = nonEmpty(flags.bind) ?? nonEmpty(env.CARAPACE_BIND) ?? nonEmpty(server.bind) ?? DEFAULT_BIND;
  const certFile = nonEmpty(flags.tlsCert) ?? nonEmpty(env.CARAPACE_TLS_CERT) ?? nonEmpty(server.tlsCert);
  const keyFile = nonEmpty(flags.tlsKey) ?? nonEmpty(env.CARAPACE_TLS_KEY) ?? nonEmpty(server.tlsKey);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new OptionsError("TLS needs both a certificate and a key: pass --tls-cert and --tls-key together");
  }
  const envLevel = nonEmpty(env.CARAPACE_LOG_LEVEL);
  const logLevel =
    flags.logLevel !== undefined
      ? parseLevel(flags.logLevel, "--log-level")
      : envLevel !== undefined
        ? parseLevel(envLevel, "CARAPACE_LOG_LEVEL")
        : (config.logLevel ?? "info");
  const allowPlaintext = flags.allowPlaintext ?? server.allowPlaintext ?? false;
  const options: ServerOptions = {
    stateDir,
    port,
    bind,
    allowPlaintext,
    logLevel,
    shutdownTimeoutMs: server.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
    diskFreeFloorBytes: config.health?.diskFreeFloorBytes ?? DEFAULT_DISK_FLOOR_BYTES,
    connectionLimits: {
      ...(server.connections?.firstByteMs !== undefined ? { firstByteMs: server.connections.firstByteMs } : {}),
      ...(server.connections?.headersMs !== undefined ? { headersMs: server.connections.headersMs } : {}),
      ...(server.connections?.idleMs !== undefined ? { idleMs: server.connections.idleMs } : {}),
      ...(server.connections?.requestMs !== undefined ? { requestMs: server.connections.requestMs } : {}),
      ...(server.connections?.max !== undefined ? { maxConnections: server.connections.max } : {}),
    },
    trustedProxies: (server.trustedProxies ?? []).map((p) => {
      if (isIP(p.trim()) === 0) throw new OptionsError(`server.trustedProxies: '${p}' is not an IP address`);
      return normalizeAddress(p.trim());
    }),
  };
  if (certFile !== undefined && keyFile !== undefined) options.tls = { certFile, keyFile };
  if (!options.tls && !isLoopbackAddress(bind) && !allowPlaintext) {
    throw new OptionsError(
      `refusing to listen on ${bind} without TLS: the bearer token would cross the network in plaintext. ` +
        `Pass --tls-cert and --tls-key, or --allow-plaintext if a trusted proxy terminates TLS`,
    );
  }
  return options;
}

export async function readTlsFiles(tls: { certFile: string; keyFile: string }): Promise<{ cert: Buffer; key: Buffer }> {
  try {
    const [cert, key] = await Promise.all([readFile(tls.certFile), readFile(tls.keyFile)]);
    return { cert, key };
  } catch (err) {
    throw new OptionsError(`cannot read TLS certificate or key: ${(err as Error).message}`);
  }
}
