import { constants } from "node:fs";
import { open, statfs, unlink } from "node:fs/promises";
import { join } from "node:path";
import { formatBytes } from "../format-bytes.js";

export type CheckVerdict = "ok" | "warn" | "fail";

export interface CheckResult {
  name: string;
  status: CheckVerdict;
  message: string;
  durationMs: number;
}

/** A named check, evaluated on demand. */
export interface HealthCheck {
  name: string;
  run(): Promise<{ status: CheckVerdict; message: string }> | { status: CheckVerdict; message: string };
}

let probeCounter = 0;

/** state_dir: the state dir accepts a new file (create-exclusive, no-follow, 0600, then removed). */
export function stateDirWritableCheck(stateDir: string): HealthCheck {
  return {
    name: "state_dir",
    async run() {
      const probe = join(stateDir, `.health_probe.${process.pid}.${++probeCounter}`);
      try {
        const handle = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        await handle.close();
        await unlink(probe);
        return { status: "ok", message: `${stateDir} is writable` };
      } catch (err) {
        return {
          status: "fail",
          message: `state dir ${stateDir} is not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix its permissions or free the filesystem`,
        };
      }
    },
  };
}

/** Bytes available to this process on the filesystem that holds `dir`. */
export async function diskFreeBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return Number(st.bavail) * Number(st.bsize);
}

/** disk: free space on the state dir's filesystem is above the floor (warn below twice the floor). */
export function diskFreeCheck(stateDir: string, floorBytes: number): HealthCheck {
  return {
    name: "disk",
    async run() {
      try {
        const free = await diskFreeBytes(stateDir);
        if (free < floorBytes) {
          return {
            status: "fail",
            message: `only ${formatBytes(free)} free on the state dir's filesystem (floor ${formatBytes(floorBytes)}); free some space`,
          };
        }
        if (free < floorBytes * 2) {
          return { status: "warn", message: `${formatBytes(free)} free on the state dir's filesystem, close to the floor of ${formatBytes(floorBytes)}` };
        }
        return { status: "ok", message: `${formatBytes(free)} free` };
      } catch (err) {
        return { status: "fail", message: `cannot read free space of ${stateDir}: ${(err as Error).message}` };
      }
    },
  };
}

/** A durable store that the server loaded at start and can report on. */
export interface StoreHealth {
  name: string;
  loaded(): { ok: boolean; message: string };
}

/** stores: every registered store is loaded and serving. */
export function storesCheck(stores: () => readonly StoreHealth[]): HealthCheck {
  return {
    name: "stores",
    run() {
      const list = stores();
      const broken = list.map((s) => ({ s, r: s.loaded() })).filter(({ r }) => !r.ok);
      if (broken.length > 0) {
        return { status: "fail", message: broken.map(({ s, r }) => `${s.name}: ${r.message}`).join("; ") };
      }
      return { status: "ok", message: list.length === 0 ? "no stores" : `${list.map((s) => s.name).join(", ")} loaded` };
    },
  };
}

/** server_secret: warns when the deployment root secret was generated instead of configured. */
export function serverSecretCheck(source: "env" | "generated"): HealthCheck {
  return {
    name: "server_secret",
    run: () =>
      source === "env"
        ? { status: "ok", message: "from CARAPACE_SERVER_SECRET" }
        : { status: "warn", message: "set CARAPACE_SERVER_SECRET in production (using a generated secret from the state dir)" },
  };
}

/** Runs checks concurrently, timing each; a check that throws counts as failed. */
export async function runChecks(checks: readonly HealthCheck[]): Promise<CheckResult[]> {
  return Promise.all(
    checks.map(async (check) => {
      const started = performance.now();
      let outcome: { status: CheckVerdict; message: string };
      try {
        outcome = await check.run();
      } catch (err) {
        outcome = { status: "fail", message: `check failed: ${(err as Error).message}` };
      }
      return { name: check.name, ...outcome, durationMs: Math.round(performance.now() - started) };
    }),
  );
}

export function worstVerdict(results: readonly CheckResult[]): CheckVerdict {
  if (results.some((r) => r.status === "fail")) return "fail";
  if (results.some((r) => r.status === "warn")) return "warn";
  return "ok";
}
