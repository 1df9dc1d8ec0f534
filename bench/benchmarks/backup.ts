import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { COMPRESSION_LEVEL } from "../../src/backup/archive.js";
import { cleanEnv, spawnTracked } from "../lib/procs.js";
import { makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark } from "../lib/types.js";

const MiB = 1024 * 1024;
const SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

// ---------------------------------------------------------------------------------------------
// The generated state dir

/** mulberry32: a small seeded PRNG, so every run generates the same data. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS =
  "the a to of and in is it you that for on with as was be this are have not but what all were when we there can an your which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know get through back much before go good new write our used me man too any day same right look think also around another came come work three word must because does part even place well such here take why things help put years different away again off went old number great tell men say small every found still between name should home big give air line set own under read last never us left end along while might next sound below saw something thought both few those always looked show large often together asked house world going want school important until form food keep children feet land side without boy once animals life enough took sometimes four head above kind began almost live page got earth need far hand high year mother light parts country father let night following picture being study second eyes soon times story boys since white days ever paper hard near sentence better best across during today others however sure means knew try told young miles sun ways thing whole hear example heard several change answer room sea against top turned learn point city play toward five using himself usually deploy gateway token session memory agent channel webhook retry queue backoff latency prompt model context embedding vector tool invoice calendar reminder summary".split(
    " ",
  );

function wordsLine(rand: () => number, n: number): string {
  let s = WORDS[Math.floor(rand() * WORDS.length)]!;
  for (let i = 1; i < n; i++) s += ` ${WORDS[Math.floor(rand() * WORDS.length)]!}`;
  return s;
}

const hex = (rand: () => number, n: number) => {
  let s = "";
  while (s.length < n)
    s += Math.floor(rand() * 0x100000000)
      .toString(16)
      .padStart(8, "0");
  return s.slice(0, n);
};

/** JSON lines of about `bytes` bytes (a session transcript or a memory store). */
function jsonl(rand: () => number, bytes: number, session: string, t0: number): string {
  const lines: string[] = [];
  let size = 0;
  let t = t0;
  while (size < bytes) {
    t += Math.floor(rand() * 90_000);
    const role = rand() < 0.5 ? "user" : "assistant";
    const line = JSON.stringify({
      ts: new Date(t).toISOString(),
      id: hex(rand, 16),
      session,
      role,
      channel: rand() < 0.3 ? "telegram" : rand() < 0.5 ? "slack" : "web",
      text: wordsLine(rand, 8 + Math.floor(rand() * 48)),
      tokens: { in: Math.floor(rand() * 4000), out: Math.floor(rand() * 1200) },
      ...(rand() < 0.2 ? { tool: { name: wordsLine(rand, 1), args: { q: wordsLine(rand, 4), limit: Math.floor(rand() * 50) } } } : {}),
    });
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

interface Generated {
  dir: string;
  files: number;
  bytes: number;
  sections: string[];
}

/** Writes the state dir: `scale` 1 ≈ 100 MB. */
async function generateState(dir: string, scale: number): Promise<Generated> {
  const rand = prng(0xc0ffee);
  let files = 0;
  let bytes = 0;
  const put = async (rel: string, content: string, mode = 0o600) => {
    const abs = join(dir, rel);
    await mkdir(join(abs, ".."), { recursive: true, mode: 0o700 });
    await writeFile(abs, content, { mode });
    files++;
    bytes += Buffer.byteLength(content);
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const sub of ["auth", "logs", "backups", "updates"]) await mkdir(join(dir, sub), { mode: 0o700 });
  await writeFile(join(dir, "auth", "token"), hex(rand, 64), { mode: 0o600 });
  await put("config.json", `${JSON.stringify({ logLevel: "info", backup: { warnAfterDays: 7 }, logs: { ringCapacity: 5000 } }, null, 2)}\n`);
  const t0 = Date.UTC(2026, 0, 1);
  // Sessions: 3,000 transcripts of 2–30 KB under 8 agents (~48 MB at scale 1).
  const sessions = Math.round(3000 * scale);
  for (let i = 0; i < sessions; i++) {
    const id = `${hex(rand, 8)}-${hex(rand, 4)}-${hex(rand, 4)}`;
    await put(`sessions/agent-${i % 8}/${id}.jsonl`, jsonl(rand, 2048 + Math.floor(rand() * 28 * 1024), id, t0 + i * 60_000));
  }
  // Memory: 1,200 small stores of 1–12 KB (~8 MB).
  const memories = Math.round(1200 * scale);
  for (let i = 0; i < memories; i++)
    await put(`memory/ns-${i % 16}/${hex(rand, 12)}.jsonl`, jsonl(rand, 1024 + Math.floor(rand() * 11 * 1024), `mem-${i}`, t0));
  // A few large files: 3 long histories of ~12 MB (~36 MB).
  for (let i = 0; i < 3; i++) await put(`sessions/archive/history-${i}.jsonl`, jsonl(rand, Math.round(12 * MiB * scale), `archive-${i}`, t0));
  // The task queue: ~2 MB of records.
  const tasks = Array.from({ length: Math.round(6000 * scale) }, (_, i) => ({
    id: `${hex(rand, 8)}-${hex(rand, 4)}-4${hex(rand, 3)}-8${hex(rand, 3)}-${hex(rand, 12)}`,
    state: i % 3 === 0 ? "done" : "queued",
    attempts: i % 3,
    nextRunAtMs: t0 + i * 1000,
    lastError: i % 7 === 0 ? `retry: ${wordsLine(rand, 6)}` : null,
    payload: { kind: "systemEvent", text: wordsLine(rand, 10 + Math.floor(rand() * 20)) },
    createdAtMs: t0 + i,
    updatedAtMs: t0 + i * 2,
  }));
  await put("tasks/queue.json", `${JSON.stringify(tasks, null, 2)}\n`);
  return { dir, files, bytes, sections: ["config.json", "tasks", "sessions", "memory"] };
}

/**
 * Reads every file under `paths` (and so puts it in the page cache) before a timed run: the VM's
 * memory reclaim evicts idle pages, and without this whichever side runs first pays the misses.
 */
async function warmCache(paths: string[]): Promise<void> {
  const walk = async (p: string): Promise<void> => {
    const st = await stat(p);
    if (st.isDirectory()) for (const name of await readdir(p)) await walk(join(p, name));
    else if (st.isFile()) await readFile(p);
  };
  for (const p of paths) await walk(p);
}

/** Relative path → size and SHA-256 of every regular file under `root/rels`. */
async function tree(root: string, rels: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    const abs = join(root, rel);
    const st = await stat(abs);
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) await walk(`${rel}/${name}`);
      return;
    }
    out.set(
      rel,
      `${st.size} ${(st.mode & 0o777).toString(8)} ${createHash("sha256")
        .update(await readFile(abs))
        .digest("hex")}`,
    );
  };
  for (const r of rels) await walk(r);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The child process that runs our side (plain node, production code from dist/)

const CHILD = `
import { createReadStream } from "node:fs";
import { join } from "node:path";
const [op, distBackups, stateDir, archive, secret] = process.argv.slice(1);
const { BackupManager } = await import(distBackups);
const m = new BackupManager({
  stateDir, backupsDir: join(stateDir, "backups"), secret, caraVersion: "bench",
  writers: { holdWrites: (fn) => fn(), pause: async () => {}, resume: async () => {} },
});
const t0 = performance.now();
let extra;
if (op === "backup") {
  const res = await m.backupToDir("bench");
  extra = { path: res.path, bytes: res.bytes };
} else if (op === "restore") {
  const res = await m.restore(createReadStream(archive), { dryRun: false, force: true, allowForeign: false });
  extra = { restored: res.restoredSections, pre: res.preRestoreBackupPath };
} else {
  extra = {};
}
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS, ...extra }) + "\\n");
`;

interface ChildResult {
  ms: number;
  maxRssKiB: number;
  path?: string;
  bytes?: number;
  restored?: string[];
  pre?: string;
}

function run(cmd: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawnTracked(cmd, args, { cwd: options.cwd, env: cleanEnv(options.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout!.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    proc.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10 * 60_000);
    proc.once("error", reject);
    proc.once("exit", (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${cmd} ${args.slice(0, 3).join(" ")}… exited with ${code ?? signal}: ${stderr.slice(0, 500)}`));
      else resolve({ ms, stdout });
    });
  });
}

async function ours(root: string, op: "backup" | "restore" | "noop", stateDir: string, archive = ""): Promise<ChildResult> {
  const dist = pathToFileURL(join(root, "dist", "src", "backup", "backups.js")).href;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", CHILD, op, dist, stateDir, archive, SECRET]);
  return JSON.parse(stdout.trim().split("\n").pop()!) as ChildResult;
}

/**
 * Writes back dirty pages before a timed run (`sync`), so that a run does not pay for the
 * writeback of the previous one (tar leaves ~100 MB dirty; removing a restored tree adds more).
 */
async function settle(): Promise<void> {
  await run("sync", []).catch(() => undefined);
}

/** A writable tmpfs directory for the CPU-bound restore comparison, or undefined. */
async function tmpfsDir(): Promise<string | undefined> {
  try {
    const dir = await mkdtemp(join("/dev/shm", "cara-bench-"));
    return dir;
  } catch {
    return undefined;
  }
}

/** Whether GNU tar with gzip is available (the baselines). */
async function haveTar(): Promise<boolean> {
  try {
    await run("tar", ["--version"]);
    await run("gzip", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

export const backup: Benchmark = {
  name: "backup",
  description: `Backup and restore of a generated ~100 MB state dir (production BackupManager in a child process) vs tar -czf / tar -xzf at gzip level ${COMPRESSION_LEVEL}; peak RSS`,
  async run(opts: BenchOptions): Promise<BenchResult> {
    const scale = opts.quick ? 0.2 : 1;
    const reps = opts.quick ? 2 : opts.reps;
    const base = join(opts.tmp, "backup-bench");
    await rm(base, { recursive: true, force: true });
    const t0 = performance.now();
    const gen = await generateState(join(base, "state"), scale);
    const mb = gen.bytes / 1e6;
    opts.log(`backup: generated ${gen.files} files, ${mb.toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (!(await haveTar())) throw new Error("tar and gzip are needed for the baselines");
    const idle = await ours(opts.root, "noop", gen.dir);

    const backupRate: number[] = [];
    const tarBackupRate: number[] = [];
    const restoreRate: number[] = [];
    const tarRestoreRate: number[] = [];
    const backupRss: number[] = [];
    const restoreRss: number[] = [];
    const shmRestoreRate: number[] = [];
    const shmTarRestoreRate: number[] = [];
    const shm = await tmpfsDir();
    let archiveBytes = 0;
    let tarArchiveBytes = 0;
    let checked = false;
    for (let rep = 0; rep <= reps; rep++) {
      const warm = rep === 0;
      // Backup: ours and tar, alternating which goes first.
      const tarOut = join(base, `tar-${rep}.tar.gz`);
      const sources = gen.sections.map((s) => join(gen.dir, s));
      const runOurs = async () => (await settle(), await warmCache(sources), ours(opts.root, "backup", gen.dir));
      const runTar = async () => (
        await settle(), await warmCache(sources), run("tar", ["-I", `gzip -${COMPRESSION_LEVEL}`, "-cf", tarOut, "-C", gen.dir, ...gen.sections])
      );
      let b: ChildResult;
      let t: { ms: number };
      if (rep % 2 === 0) {
        b = await runOurs();
        t = await runTar();
      } else {
        t = await runTar();
        b = await runOurs();
      }
      const archive = b.path!;
      archiveBytes = b.bytes!;
      tarArchiveBytes = (await stat(tarOut)).size;
      await rm(tarOut, { force: true });

      // Restore: the same archive (ours), into empty dirs.
      const restoreDir = join(base, `restore-${rep}`);
      const tarDir = join(base, `untar-${rep}`);
      await mkdir(join(restoreDir, "backups"), { recursive: true, mode: 0o700 });
      await mkdir(tarDir, { recursive: true, mode: 0o700 });
      const runOursRestore = async () => (await settle(), await warmCache([archive]), ours(opts.root, "restore", restoreDir, archive));
      const runTarRestore = async () => (await settle(), await warmCache([archive]), run("tar", ["-xzf", archive, "-C", tarDir]));
      let r: ChildResult;
      let u: { ms: number };
      if (rep % 2 === 0) {
        r = await runOursRestore();
        u = await runTarRestore();
      } else {
        u = await runTarRestore();
        r = await runOursRestore();
      }
      if (!checked) {
        // The restore is a faithful copy: every file, size, mode and hash.
        const want = await tree(gen.dir, gen.sections);
        const got = await tree(restoreDir, gen.sections);
        if (want.size !== got.size || [...want].some(([k, v]) => got.get(k) !== v)) throw new Error("the restored state differs from the original");
        checked = true;
      }
      await rm(restoreDir, { recursive: true, force: true });
      await rm(tarDir, { recursive: true, force: true });

      // The same restores into tmpfs: no disk I/O (fsync is free), so this compares CPU work.
      let rs: ChildResult | undefined;
      let us: { ms: number } | undefined;
      if (shm) {
        const shmRestore = join(shm, "restore");
        const shmTar = join(shm, "untar");
        await mkdir(join(shmRestore, "backups"), { recursive: true, mode: 0o700 });
        await mkdir(shmTar, { recursive: true, mode: 0o700 });
        const a = async () => (await warmCache([archive]), (rs = await ours(opts.root, "restore", shmRestore, archive)));
        const t2 = async () => (await warmCache([archive]), (us = await run("tar", ["-xzf", archive, "-C", shmTar])));
        for (const step of rep % 2 === 0 ? [a, t2] : [t2, a]) await step();
        await rm(shmRestore, { recursive: true, force: true });
        await rm(shmTar, { recursive: true, force: true });
      }
      await rm(archive, { force: true });

      const rates = { b: mb / (b.ms / 1000), t: mb / (t.ms / 1000), r: mb / (r.ms / 1000), u: mb / (u.ms / 1000) };
      opts.log(
        `backup rep ${rep}${warm ? " (warm-up)" : ""}: backup ${b.ms.toFixed(0)} ms (${rates.b.toFixed(1)} MB/s, RSS ${(b.maxRssKiB / 1024).toFixed(0)} MiB) vs tar -czf ${t.ms.toFixed(0)} ms (${rates.t.toFixed(1)} MB/s); ` +
          `restore ${r.ms.toFixed(0)} ms (${rates.r.toFixed(1)} MB/s, RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB) vs tar -xzf ${u.ms.toFixed(0)} ms (${rates.u.toFixed(1)} MB/s)` +
          (rs && us ? `; into tmpfs ${rs.ms.toFixed(0)} ms vs ${us.ms.toFixed(0)} ms` : ""),
      );
      if (!warm) {
        backupRate.push(rates.b);
        tarBackupRate.push(rates.t);
        restoreRate.push(rates.r);
        tarRestoreRate.push(rates.u);
        backupRss.push(b.maxRssKiB / 1024);
        restoreRss.push(r.maxRssKiB / 1024);
        if (rs && us) {
          shmRestoreRate.push(mb / (rs.ms / 1000));
          shmTarRestoreRate.push(mb / (us.ms / 1000));
        }
      }
    }
    await rm(base, { recursive: true, force: true });
    if (shm) await rm(shm, { recursive: true, force: true });
    const data = `${gen.files} files, ${mb.toFixed(0)} MB`;
    return {
      rows: [
        makeRow({
          group: "backup",
          name: `backup throughput (${data})`,
          unit: "MB/s",
          samples: backupRate,
          baseline: { name: `tar -czf (gzip -${COMPRESSION_LEVEL})`, samples: tarBackupRate },
          goal: { on: "ratio", op: ">=", value: 0.9, label: "≥ 0.9×" },
        }),
        makeRow({
          group: "backup",
          name: `restore throughput (${data})`,
          unit: "MB/s",
          samples: restoreRate,
          baseline: { name: "tar -xzf", samples: tarRestoreRate },
          goal: { on: "ratio", op: ">=", value: 0.8, label: "≥ 0.8×" },
        }),
        ...(shm
          ? [
              makeRow({
                group: "backup",
                name: "restore throughput into tmpfs (CPU only)",
                unit: "MB/s",
                samples: shmRestoreRate,
                baseline: { name: "tar -xzf into tmpfs", samples: shmTarRestoreRate },
                note: "no disk I/O: verification, hashing and staging against tar's extraction",
              }),
            ]
          : []),
        makeRow({
          group: "backup",
          name: "backup peak RSS (child process)",
          unit: "MiB",
          samples: backupRss,
          goal: { on: "value", op: "<=", value: 150, label: "< 150 MiB" },
          note: `node with the modules loaded: ${(idle.maxRssKiB / 1024).toFixed(0)} MiB`,
        }),
        makeRow({
          group: "backup",
          name: "restore peak RSS (child process)",
          unit: "MiB",
          samples: restoreRss,
          goal: { on: "value", op: "<=", value: 150, label: "< 150 MiB" },
        }),
      ],
      details: { files: gen.files, bytes: gen.bytes, archiveBytes, tarArchiveBytes, idleRssKiB: idle.maxRssKiB },
      notes: [
        `backup: ${data} → archive ${(archiveBytes / 1e6).toFixed(1)} MB (tar: ${(tarArchiveBytes / 1e6).toFixed(1)} MB); ours includes the hashing pass, the manifest, fsync of the archive (backup) and of every staged file (restore), the pre-restore backup and the swap; tar does no fsync.`,
      ],
    };
  },
};
