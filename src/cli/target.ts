import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { resolveStateDir, statePaths } from "../state/paths.js";
import { readLocalToken } from "../state/secrets.js";
import { liveServerAddress, localHostFor } from "../state/server-address.js";
import type { JsonErrorFacts } from "./json-error.js";

export const DEFAULT_PORT = 18789;
export const DEFAULT_HOST = "127.0.0.1";

/** Where and how the CLI reaches a server. */
export interface Target {
  host: string;
  port: number;
  tls: boolean;
  /** Extra CA certificate (PEM) to trust for TLS. */
  ca?: Buffer;
  token?: string;
  baseUrl: string;
  /** host:port as shown to people (brackets for IPv6). */
  display: string;
  /** TLS: the name the certificate must carry, when not `host` (a local server reached on loopback). */
  servername?: string;
}

export class CliUsageError extends Error {}
/** A failure told to the user as one line; `facts` are its code and details for `--json` (default: code "failed"). */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly facts?: JsonErrorFacts,
  ) {
    super(message);
  }
}

export interface ConnectionFlags {
  host?: string;
  port?: string;
  tls?: boolean;
  tlsCa?: string;
  allowPlaintext?: boolean;
  stateDir?: string;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export function parsePortFlag(value: string, name = "--port"): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
    throw new CliUsageError(`${name} must be a port number 1..65535 (got '${value}')`);
  }
  return Number(value);
}

/** The port a local server is configured with (config.json server.port), if readable. */
function configuredPort(stateDir: string): number | undefined {
  try {
    const config = JSON.parse(readFileSync(statePaths(stateDir).config, "utf8")) as { server?: { port?: unknown } };
    const port = config.server?.port;
    return typeof port === "number" && Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Resolves host, port, TLS and token. Port: --port > CARAPACE_PORT > the address the live server
 * of the local state dir recorded beside its lock (it may run on another port than configured) >
 * the local config's server.port > 18789. Token: CARAPACE_GATEWAY_TOKEN > the local state dir's
 * auth/token. A token is never sent in plaintext to a host that is not loopback unless
 * --allow-plaintext.
 */
export async function resolveTarget(flags: ConnectionFlags, stderr: NodeJS.WritableStream, env: NodeJS.ProcessEnv, cwd = process.cwd()): Promise<Target> {
  let host = flags.host ?? DEFAULT_HOST;
  if (host.trim() === "" || /[\s/@?#]/.test(host)) throw new CliUsageError(`--host must be a host name or address (got '${host}')`);
  const stateDir = resolveStateDir(flags.stateDir, env);
  const explicitPort = flags.port !== undefined || !!env.CARAPACE_PORT;
  const live = !explicitPort && isLoopbackHost(host) ? await liveServerAddress(stateDir) : undefined;
  if (live && flags.host === undefined) host = localHostFor(live.bind);
  const port =
    flags.port !== undefined
      ? parsePortFlag(flags.port)
      : env.CARAPACE_PORT
        ? parsePortFlag(env.CARAPACE_PORT, "CARAPACE_PORT")
        : (live?.port ?? configuredPort(stateDir) ?? DEFAULT_PORT);
  const tls = flags.tls === true || flags.tlsCa !== undefined || live?.tls === true;
  if (!tls && !isLoopbackHost(host)) {
    if (!flags.allowPlaintext) {
      throw new CliUsageError(
        `refusing to send the token in plaintext to ${host}: use --tls (the server needs --tls-cert/--tls-key), or pass --allow-plaintext`,
      );
    }
    stderr.write(`Warning: using plaintext HTTP to remote host ${host}; the token is sent unencrypted.\n`);
  }
  let ca: Buffer | undefined;
  if (flags.tlsCa !== undefined) {
    try {
      ca = readFileSync(resolve(cwd, flags.tlsCa));
    } catch (err) {
      throw new CliUsageError(`cannot read --tls-ca ${flags.tlsCa}: ${(err as Error).message}`);
    }
  }
  const token = await readLocalToken(statePaths(stateDir), env);
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const target: Target = {
    host,
    port,
    tls,
    baseUrl: `${tls ? "https" : "http"}://${bracketed}:${port}`,
    display: `${bracketed}:${port}`,
  };
  if (ca) target.ca = ca;
  if (token !== undefined) target.token = token;
  return target;
}

/** Parses "5s", "500ms", "2m", "24h" or a bare number of seconds (at most 7 days). */
export function parseTimeout(value: string, name = "--timeout"): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new CliUsageError(`${name} must be a duration like 5s, 500ms, 2m or 24h (got '${value}')`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"]!;
  const ms = n * unit;
  if (ms <= 0 || ms > 7 * 86_400_000) throw new CliUsageError(`${name} must be between 1ms and 7 days (got '${value}')`);
  return Math.round(ms);
}
