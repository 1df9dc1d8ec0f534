import type { HealthCheck } from "../../ops/checks.js";
import { MIGRATIONS } from "./migrations.js";
import type { DatabaseProbe } from "./pg-store.js";

/**
 * database: the PostgreSQL task store answers a query; reports its schema version and pool use.
 * Fails when the database cannot be reached (so /health/ready answers 503) and when its schema
 * is behind or ahead of this cara's migrations. The probe's errors carry no password.
 */
export function databaseCheck(probe: () => Promise<DatabaseProbe>): HealthCheck {
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  return {
    name: "database",
    async run() {
      let p: DatabaseProbe;
      try {
        p = await probe();
      } catch (err) {
        return { status: "fail", message: (err as Error).message };
      }
      const pool = `pool ${p.total - p.idle}/${p.max} in use, ${p.idle} idle, ${p.waiting} waiting`;
      if (p.version !== latest) {
        return {
          status: "fail",
          message: `reachable, but the schema is at version ${p.version} and this cara expects ${latest}; run cara db migrate or start the matching cara; ${pool}`,
        };
      }
      if (p.waiting > 0) return { status: "warn", message: `reachable, schema version ${p.version}; ${pool}: raise tasks.postgres.poolSize` };
      return { status: "ok", message: `reachable, schema version ${p.version}; ${pool}` };
    },
  };
}
