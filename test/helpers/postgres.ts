/**
 * A throwaway PostgreSQL cluster for tests: initdb into a temp dir, pg_ctl start on a free port
 * (Unix socket in that dir, TCP on 127.0.0.1 only), password auth, one database per caller, and
 * pg_ctl stop + removal at the end. PostgreSQL refuses to run as root: as root, the cluster runs
 * as the `postgres` user. Returns undefined with the reason when the binaries are missing.
 *
 * The binaries: $PG_BIN if set, else the newest /usr/lib/postgresql/<n>/bin, else pg_ctl and
 * initdb on PATH.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const PASSWORD = "cara-test-pw-4f9c";

export interface TestPostgres {
  /** A new empty database; its URL carries the password. */
  createDatabase(name?: string): Promise<string>;
  /** The URL of database `name` with another password (for refusals). */
  urlWithPassword(name: string, password: string): string;
  readonly password: string;
  /** The directory of the PostgreSQL binaries (pgbench, psql) and the TCP port on 127.0.0.1. */
  readonly bin: string;
  readonly port: number;
  stop(): Promise<void>;
}

function findBin(): string | undefined {
  const has = (dir: string) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"));
  if (process.env.PG_BIN) return has(process.env.PG_BIN) ? process.env.PG_BIN : undefined;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) if (has(join(base, v, "bin"))) return join(base, v, "bin");
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) if (dir && has(dir)) return dir;
  return undefined;
}

/** The uid/gid of `postgres` from /etc/passwd (only needed as root). */
function postgresUser(): { uid: number; gid: number } | undefined {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function whyUnavailable(): string | undefined {
  if (!findBin()) return "PostgreSQL binaries (initdb, pg_ctl) not found: install the postgresql package or set PG_BIN";
  if (process.getuid?.() === 0 && !postgresUser()) return "running as root and there is no postgres user to run PostgreSQL as";
  return undefined;
}

/**
 * Why PostgreSQL tests cannot run here, or undefined when they can. With
 * CARA_REQUIRE_POSTGRES=1 (set by .ci/run, which installs PostgreSQL) it is always undefined:
 * the tests run and fail in startPostgres, naming what is missing, instead of skipping.
 */
export function postgresUnavailable(): string | undefined {
  return process.env.CARA_REQUIRE_POSTGRES === "1" ? undefined : whyUnavailable();
}

/**
 * `durable`: fsync on (PostgreSQL's default), for benchmarks of durable writes; tests run with
 * fsync off.
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = findBin();
  if (!bin) throw new Error(whyUnavailable());
  const asUser = process.getuid?.() === 0 ? postgresUser() : undefined;
  const dir = await mkdtemp(join(tmpdir(), "cara-pg-"));
  const data = join(dir, "data");
  const pwfile = join(dir, "pw");
  await writeFile(pwfile, `${PASSWORD}\n`);
  if (asUser) {
    await chown(dir, asUser.uid, asUser.gid);
    await chown(pwfile, asUser.uid, asUser.gid);
  }
  await chmod(dir, 0o700);
  const opts = asUser ? { uid: asUser.uid, gid: asUser.gid, env: { PATH: process.env.PATH ?? "", LANG: "C" } } : { env: { ...process.env, LANG: "C" } };
  await run(
    join(bin, "initdb"),
    ["-D", data, "-U", "cara", "--auth=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--no-sync", "--no-instructions"],
    opts,
  );
  const port = await freePort();
  // fsync off: this cluster is thrown away; the tests check the store's transactions, not the disk.
  const server = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=${options.durable ? "on" : "off"} -c max_connections=200`;
  await run(join(bin, "pg_ctl"), ["-D", data, "-o", server, "-l", join(dir, "log"), "-w", "-t", "60", "start"], opts);
  const url = (db: string, password = PASSWORD) => `postgres://cara:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`;
  let n = 0;
  return {
    password: PASSWORD,
    bin,
    port,
    urlWithPassword: url,
    async createDatabase(name = `t${process.pid}_${++n}`) {
      const admin = new pg.Client({ connectionString: url("postgres") });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return url(name);
    },
    async stop() {
      await run(join(bin, "pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"], opts).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Makes the COMMIT of a transaction that inserted a task with text "fail-at-commit" fail (a
 * deferred constraint trigger raises at COMMIT): a COMMIT failure on a real cluster.
 */
export async function failAtCommit(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.record->'payload'->>'text' = 'fail-at-commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
        RETURN NULL;
      END $$`);
    await client.query(
      "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON cara_tasks DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()",
    );
  } finally {
    await client.end();
  }
}
