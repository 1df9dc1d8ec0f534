/**
 * The platform executables (npm run test:executable; not part of `npm test`, which CI runs on
 * three Node versions: this builds with the pinned Node 24 and runs no Node at all).
 *
 * `npm run release` builds the tarball and both Linux executables once; build-executable.mjs
 * builds cara-x86_64-linux a second time into another directory: the two must be the same bytes.
 * Then the x64 executable is run as an operator would, with no Node on PATH: --help, version,
 * start + status + /health + the console, one task to done, a backup and its verification, and an
 * offline Sigstore verification (the embedded trusted root and the bundled sigstore libraries).
 * With a throwaway PostgreSQL cluster, a task runs in the PostgreSQL store (pg is bundled). The
 * aarch64 executable runs under qemu-user where it is installed (version, start, /health).
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { ROOT, tempDir } from "../helpers/cara.js";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.js";

const VERSION = "9.8.7-exe.1";
const EPOCH = 1767225600; // 2026-01-01T00:00:00Z
const TARBALL = `carapace-${VERSION}.tar.gz`;
const X64 = "cara-x86_64-linux";
const ARM64 = "cara-aarch64-linux";
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
/** The Node 24 the executables embed, as pinned in runtimes/package-lock.json. */
const NODE24 = (JSON.parse(await readFile(join(ROOT, "runtimes", "package-lock.json"), "utf8")) as { packages: Record<string, { version: string }> }).packages[
  "node_modules/node24-linux-x64"
]!.version;
// A real Sigstore bundle of the reference's v0.7.0 SHA256SUMS.txt (also used by test/update/verify.test.ts).
const BUNDLE = join(ROOT, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
const V070_DIGEST = "acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
const V070_IDENTITY = "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.0";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let outA: string;
let outB: string;
let exe: string;
/** A directory with nothing in it: the PATH the executable runs with (no node, no npm). */
let emptyBin: string;
let home: string;

before(async () => {
  outA = await tempDir("cara-exe-a-");
  outB = await tempDir("cara-exe-b-");
  emptyBin = await tempDir("cara-exe-path-");
  home = await tempDir("cara-exe-home-");
  const env = { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) };
  // npm run test:executable has built dist/ already; both builds bundle that same dist/.
  const release = spawnSync(process.execPath, [join(ROOT, "scripts", "release.mjs"), "--version", VERSION, "--out", outA, "--no-build"], {
    cwd: ROOT,
    env,
    encoding: "utf8",
  });
  assert.equal(release.status, 0, release.stderr);
  const again = spawnSync(process.execPath, [join(ROOT, "scripts", "build-executable.mjs"), "--version", VERSION, "--out", outB, "--no-build"], {
    cwd: ROOT,
    env,
    encoding: "utf8",
  });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`^${X64} ${VERSION}: \\d+ modules bundled .* Node ${NODE24} linux-x64, in [\\d.]+ s\\n`));
  exe = join(outA, X64);
});

test("npm run release builds both Linux executables next to the tarball, mode 0755, and lists all three in SHA256SUMS.txt", async () => {
  assert.deepEqual((await readdir(outA)).sort(), ["SHA256SUMS.txt", ARM64, X64, TARBALL]);
  const lines = [];
  for (const name of [ARM64, X64, TARBALL]) lines.push(`${sha256(await readFile(join(outA, name)))}  ${name}\n`);
  assert.equal(await readFile(join(outA, "SHA256SUMS.txt"), "utf8"), lines.join(""));
  for (const name of [ARM64, X64]) {
    const st = await stat(join(outA, name));
    assert.equal(st.mode & 0o777, 0o755, name);
    assert.equal(st.mtimeMs, EPOCH * 1000, name);
  }
});

test("two builds of the same commit are byte-identical", async () => {
  assert.deepEqual(await readdir(outB), [X64]);
  assert.equal(sha256(await readFile(join(outB, X64))), sha256(await readFile(join(outA, X64))));
});

test("each executable is an ELF of its architecture with the SEA blob injected (the fuse flipped)", async () => {
  // e_machine (offset 18, little-endian): 62 = x86-64, 183 = AArch64.
  for (const [name, machine] of [
    [X64, 62],
    [ARM64, 183],
  ] as const) {
    const data = await readFile(join(outA, name));
    assert.deepEqual([...data.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], name);
    assert.equal(data.readUInt16LE(18), machine, name);
    assert.ok(data.includes(`${FUSE}:1`), `${name}: the SEA fuse is not flipped`);
    assert.ok(!data.includes(`${FUSE}:0`), name);
  }
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The executable's environment: no Node anywhere on PATH, a temp HOME, nothing inherited. */
function exeEnv(): NodeJS.ProcessEnv {
  return { PATH: emptyBin, HOME: home, NO_COLOR: "1" };
}

async function run(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(exe, args, { cwd: home, env: { ...exeEnv(), ...extraEnv }, encoding: "utf8", timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : null, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
  }
}

test("the executable needs no Node: --help and version report the release's version and the embedded Node 24", async () => {
  assert.deepEqual(await readdir(emptyBin), []);
  const help = await run(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.ok(help.stdout.startsWith(`cara: the Carapace control plane - ${VERSION}\n`), help.stdout);
  assert.equal(help.stderr, "");
  const version = await run(["version"]);
  assert.deepEqual(version, { code: 0, stdout: `cara ${VERSION} (node v${NODE24}, linux/x64)\n`, stderr: "" });
  const json = await run(["version", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { version: VERSION, node: `v${NODE24}`, platform: "linux", arch: "x64" });
});

const servers: ChildProcess[] = [];
after(() => {
  for (const p of servers) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
});

/** Spawns `command args` (the executable, or qemu running it), which runs `cara start`, and waits for its "listening" log line. */
async function startServer(
  command: string,
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ proc: ChildProcess; port: number; lines: string[]; exited: Promise<number | null> }> {
  const proc = spawn(command, args, { cwd: home, env: { ...exeEnv(), ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
  servers.push(proc);
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; port?: number };
          if (rec.msg?.startsWith("listening on") && typeof rec.port === "number") resolve(rec.port);
        } catch {
          // not a log record
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    void exited.then((code) => reject(new Error(`cara start exited with ${code} before listening:\n${lines.join("\n")}`)));
  });
  return { proc, port, lines, exited };
}

test("the executable serves: start, status, /health, the console, a task to done, a backup and its verification; SIGTERM exits 0", async () => {
  const stateDir = join(home, "state");
  await mkdir(stateDir, { mode: 0o700 });
  const { proc, port, lines, exited } = await startServer(exe, ["start", "--port", "0", "--state-dir", stateDir]);
  const listening = JSON.parse(lines.find((l) => l.includes('"listening on'))!) as Record<string, unknown>;
  assert.equal(listening.version, VERSION);
  assert.equal(listening.console, `http://127.0.0.1:${port}/`, "the embedded console is loaded");
  const at = ["--port", String(port), "--state-dir", stateDir];

  const status = await run(["status", ...at, "--json"]);
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { status: { version: string; nodeVersion: string; tasks: { total: number } } };
  assert.deepEqual([s.status.version, s.status.nodeVersion, s.status.tasks.total], [VERSION, `v${NODE24}`, 0]);

  const base = `http://127.0.0.1:${port}`;
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200);
  const h = (await health.json()) as { status: string; uptimeSeconds: number; version: string };
  assert.deepEqual({ ...h, uptimeSeconds: 0 }, { status: "ok", uptimeSeconds: 0, version: VERSION });

  // The console: the page names its content-hashed script, served byte for byte as dist/web has it.
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await page.text();
  assert.equal(html, await readFile(join(ROOT, "dist", "web", "index.html"), "utf8"));
  const script = /src="(\/assets\/app-[A-Z0-9]{8}\.js)"/.exec(html)?.[1];
  assert.ok(script, html);
  const js = await fetch(`${base}${script}`, { headers: { "accept-encoding": "identity" } });
  assert.equal(js.status, 200);
  assert.deepEqual(Buffer.from(await js.arrayBuffer()), await readFile(join(ROOT, "dist", "web", script.slice(1))));

  const created = await run(["task", "create", ...at, "--payload", '{"kind":"systemEvent","text":"smoke"}', "--json"]);
  assert.equal(created.code, 0, created.stderr);
  const task = (JSON.parse(created.stdout) as { created: boolean; task: { id: string; state: string } }).task;
  const watched = await run(["task", "watch", task.id, ...at, "--json"]);
  assert.equal(watched.code, 0, watched.stderr);
  const last = JSON.parse(watched.stdout.trim().split("\n").at(-1)!) as { task: { id: string; state: string; attempts: number } };
  assert.deepEqual([last.task.id, last.task.state, last.task.attempts], [task.id, "done", 1]);

  const archive = join(home, "backup.tar.gz");
  const backup = await run(["backup", ...at, "-o", archive]);
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(backup.stdout.startsWith(`Backup created successfully\n  Path:     ${archive}\n`), backup.stdout);
  const verify = await run(["backup", "verify", archive, "--state-dir", stateDir, "--json"]);
  assert.equal(verify.code, 0, verify.stderr);
  const v = JSON.parse(verify.stdout) as {
    ok: boolean;
    authenticityChecked: boolean;
    manifest: { caraVersion: string; sections: { name: string }[]; archiveSha256: string };
    problems: unknown[];
  };
  assert.deepEqual(
    [v.ok, v.authenticityChecked, v.manifest.caraVersion, v.manifest.sections.map((x) => x.name), v.manifest.archiveSha256, v.problems],
    [true, true, VERSION, ["tasks"], sha256(await readFile(archive)), []],
  );

  proc.kill("SIGTERM");
  assert.equal(await exited, 0, lines.join("\n"));
});

test("the executable verifies a Sigstore bundle offline against its embedded trusted root", async () => {
  const r = await run([
    "update",
    "verify",
    `sha256:${V070_DIGEST}`,
    "--bundle",
    BUNDLE,
    "--certificate-identity",
    V070_IDENTITY,
    "--certificate-oidc-issuer",
    "https://token.actions.githubusercontent.com",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { verified: boolean; digest: string; trustedRoot: string };
  assert.deepEqual([doc.verified, doc.digest, doc.trustedRoot], [true, V070_DIGEST, `${exe} (embedded assets/sigstore/trusted_root.json)`]);
});

const pgMissing = postgresUnavailable();

test("the executable keeps tasks in PostgreSQL (pg, loaded only for that store, is in the bundle)", {
  skip: pgMissing === undefined ? false : `SKIPPED: ${pgMissing}`,
}, async () => {
  const cluster = await startPostgres();
  try {
    const url = await cluster.createDatabase();
    const stateDir = join(home, "state-pg");
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(join(stateDir, "config.json"), JSON.stringify({ tasks: { store: "postgres" } }));
    const env = { CARAPACE_DATABASE_URL: url };
    const { proc, port, lines, exited } = await startServer(exe, ["start", "--port", "0", "--state-dir", stateDir], env);
    assert.ok(
      lines.some((l) => l.includes("tasks are stored in PostgreSQL")),
      lines.join("\n"),
    );
    const at = ["--port", String(port), "--state-dir", stateDir];
    const created = await run(["task", "create", ...at, "--payload", '{"kind":"systemEvent","text":"in postgres"}', "--json"], env);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as { task: { id: string } }).task.id;
    const watched = await run(["task", "watch", id, ...at, "--json"], env);
    assert.equal(watched.code, 0, watched.stderr);
    assert.equal((JSON.parse(watched.stdout.trim().split("\n").at(-1)!) as { task: { state: string } }).task.state, "done");
    proc.kill("SIGTERM");
    assert.equal(await exited, 0, lines.join("\n"));
  } finally {
    await cluster.stop();
  }
});

// The aarch64 executable cannot run natively here; qemu-user runs it when installed (.ci/run
// installs qemu-user and the arm64 C/C++ runtime libraries that Node links against).
const QEMU = "/usr/bin/qemu-aarch64";
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";
// CARA_REQUIRE_QEMU=1 (.ci/run, which installs them) runs the test even when they are missing: it fails, not skips.
const canEmulate = process.env.CARA_REQUIRE_QEMU === "1" || (existsSync(QEMU) && existsSync(join(ARM64_SYSROOT, "lib", "ld-linux-aarch64.so.1")));

test("the aarch64 executable runs (under qemu-user): version, start, /health and the console, SIGTERM exits 0", {
  skip: canEmulate ? false : `SKIPPED: ${QEMU} or ${ARM64_SYSROOT} is missing (apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross)`,
}, async () => {
  const arm = join(outA, ARM64);
  const version = spawnSync(QEMU, ["-L", ARM64_SYSROOT, arm, "version"], { cwd: home, env: exeEnv(), encoding: "utf8" });
  assert.deepEqual([version.status, version.stdout, version.stderr], [0, `cara ${VERSION} (node v${NODE24}, linux/arm64)\n`, ""]);
  const stateDir = join(home, "state-arm64");
  await mkdir(stateDir, { mode: 0o700 });
  const { proc, port, lines, exited } = await startServer(QEMU, ["-L", ARM64_SYSROOT, arm, "start", "--port", "0", "--state-dir", stateDir]);
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  const h = (await health.json()) as { status: string; uptimeSeconds: number; version: string };
  assert.deepEqual([health.status, h.status, h.version], [200, "ok", VERSION]);
  const page = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.equal(await page.text(), await readFile(join(ROOT, "dist", "web", "index.html"), "utf8"));
  proc.kill("SIGTERM");
  assert.equal(await exited, 0, lines.join("\n"));
});
