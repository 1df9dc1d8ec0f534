import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import * as t from "typanion";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

const isPort = t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(0, 65535)]);
const isPositiveInt = t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(1)]);
const isNonNegativeInt = t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(0)]);
/** An exact browser origin as the Origin header carries it ("https://ops.example.com:8443": no path, no slash). */
const isOrigin = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    let origin: string | undefined;
    try {
      origin = typeof value === "string" && /^https?:\/\//i.test(value) ? new URL(value).origin : undefined;
    } catch {
      origin = undefined;
    }
    if (origin !== undefined && origin === value) return true;
    const hint = origin ? `; write it as ${origin}` : " like https://ops.example.com";
    state?.errors?.push(`${state.p ?? "."}: Expected an exact origin${hint} (got ${JSON.stringify(value)})`);
    return false;
  },
});

/** The schema of `<state>/config.json`. Unknown keys are refused so that typos surface at start. */
const isConfig = t.isObject({
  server: t.isOptional(
    t.isObject({
      bind: t.isOptional(t.isString()),
      port: t.isOptional(isPort),
      tlsCert: t.isOptional(t.isString()),
      tlsKey: t.isOptional(t.isString()),
      allowPlaintext: t.isOptional(t.isBoolean()),
      shutdownTimeoutMs: t.isOptional(isPositiveInt),
      /** Bounds on every connection (see src/server/listener.ts). */
      connections: t.isOptional(
        t.isObject({
          firstByteMs: t.isOptional(isPositiveInt),
          headersMs: t.isOptional(isPositiveInt),
          idleMs: t.isOptional(isPositiveInt),
          requestMs: t.isOptional(isPositiveInt),
          max: t.isOptional(isPositiveInt),
        }),
      ),
      /**
       * Addresses of reverse proxies whose X-Forwarded-For is trusted for the client address
       * (failed-auth limits). Exact IPs; default none.
       */
      trustedProxies: t.isOptional(t.isArray(t.isString())),
      /** GET /metrics: "token" (default: the bearer token required), "open" or "off". */
      metrics: t.isOptional(t.isEnum(["token", "open", "off"] as const)),
      /** gRPC server reflection: "token" (default: served, behind the bearer token) or "off". */
      reflection: t.isOptional(t.isEnum(["token", "off"] as const)),
      /** Serve the browser console at / (default true). */
      console: t.isOptional(t.isBoolean()),
      /** Origins (besides the console's own) whose pages may call the API. */
      cors: t.isOptional(t.isObject({ allowedOrigins: t.isOptional(t.isArray(isOrigin)) })),
    }),
  ),
  logLevel: t.isOptional(t.isEnum(LOG_LEVELS)),
  tasks: t.isOptional(
    t.isObject({
      concurrency: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 64)])),
      capacity: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 1_000_000)])),
      retentionDays: t.isOptional(t.cascade(t.isNumber(), [t.isAtLeast(0)])),
      leaseGraceMs: t.isOptional(isPositiveInt),
      /** Where tasks live: "file" (default: <state>/tasks) or "postgres" (a database several servers can share). */
      store: t.isOptional(t.isEnum(["file", "postgres"] as const)),
      postgres: t.isOptional(
        t.isObject({
          /** postgres://user:password@host:port/database; CARAPACE_DATABASE_URL, when set, is used instead. */
          url: t.isOptional(t.isString()),
          /** Connections in the pool (default 10). */
          poolSize: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 100)])),
        }),
      ),
      backoff: t.isOptional(
        t.isObject({
          baseMs: t.isOptional(isPositiveInt),
          factor: t.isOptional(t.cascade(t.isNumber(), [t.isAtLeast(1)])),
          capMs: t.isOptional(isPositiveInt),
        }),
      ),
    }),
  ),
  agent: t.isOptional(
    t.isObject({
      baseUrl: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^https?:\/\/[^\s]+$/)])),
      model: t.isOptional(t.isString()),
    }),
  ),
  logs: t.isOptional(
    t.isObject({
      ringCapacity: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(100, 50_000)])),
      file: t.isOptional(t.isBoolean()),
      fileMaxBytes: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(65_536)])),
      fileMaxFiles: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 100)])),
      /** FollowLogs streams open at once (default 64); more are refused with RESOURCE_EXHAUSTED. */
      maxFollowers: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 10_000)])),
    }),
  ),
  backup: t.isOptional(
    t.isObject({
      warnAfterDays: t.isOptional(t.cascade(t.isNumber(), [t.isAtLeast(0)])),
    }),
  ),
  health: t.isOptional(
    t.isObject({
      diskFreeFloorBytes: t.isOptional(isNonNegativeInt),
    }),
  ),
  update: t.isOptional(
    t.isObject({
      /** GitHub-compatible releases API base, e.g. https://api.github.com/repos/OWNER/REPO. */
      releasesUrl: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^https?:\/\/[^\s]+$/)])),
      /** OWNER/REPO: derives the default releasesUrl and certificate identity. */
      repository: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/)])),
      /** Exact certificate identity; "{version}" is replaced by the target version. */
      identity: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^\S+$/)])),
      issuer: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^https:\/\/\S+$/)])),
      /** A Sigstore trusted_root.json (default: the pinned public-good root shipped with cara). */
      trustedRoot: t.isOptional(t.isString()),
      /** Refresh the trusted root through TUF before verifying an update (default true; unused with trustedRoot). */
      trustRefresh: t.isOptional(t.isBoolean()),
      /** TUF repository for that refresh (default https://tuf-repo-cdn.sigstore.dev). */
      tufMirror: t.isOptional(t.cascade(t.isString(), [t.matchesRegExp(/^https?:\/\/[^\s]+$/)])),
      /** The initial root.json of a tufMirror other than the default one. */
      tufRoot: t.isOptional(t.isString()),
      channel: t.isOptional(t.isEnum(["stable", "beta"] as const)),
      /** Restart on the new version after applying (like --restart). */
      restart: t.isOptional(t.isBoolean()),
      /** Resume an interrupted update at start (within the confirmation window). */
      autoResume: t.isOptional(t.isBoolean()),
      /** Backoff before retries 1, 2, 3... (default 5000, 15000, 45000; ±20 % jitter). */
      retryDelaysMs: t.isOptional(t.cascade(t.isArray(isPositiveInt), [t.hasMinLength(1), t.hasMaxLength(10)])),
      maxAttempts: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 10)])),
      /** How long a freshly updated version may take to become ready before it is rolled back. */
      readyTimeoutMs: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1_000, 3_600_000)])),
    }),
  ),
});

export type CaraConfig = t.InferType<typeof isConfig>;

export class ConfigError extends Error {}

/** Validates parsed JSON against the config schema; the error names every offending key path. */
export function validateConfig(value: unknown, file: string): CaraConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`invalid config ${file}: the top level must be a JSON object`);
  }
  const errors: string[] = [];
  if (!isConfig(value, { errors })) {
    const detail = errors.map((e) => e.replace(/^\./, "").replace(": Extraneous property", ": unknown key")).join("; ");
    throw new ConfigError(`invalid config ${file}: ${detail}`);
  }
  return value;
}

/** Loads `config.json` if present (it is optional). Refuses symlinks, oversized files and bad JSON. */
export async function loadConfig(file: string): Promise<CaraConfig> {
  let text: string;
  try {
    text = await readFile(file, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return {};
    if (code === "ELOOP") throw new ConfigError(`refusing to read config ${file}: it is a symbolic link`);
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  if (text.length > 1024 * 1024) throw new ConfigError(`config ${file} is larger than 1 MiB`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  return validateConfig(parsed, file);
}
