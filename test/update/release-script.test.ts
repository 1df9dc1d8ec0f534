import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import * as tar from "tar";
import { ROOT, tempDir } from "../helpers/cara.js";

const VERSION = "9.9.9-test.1";
const TOP = `carapace-${VERSION}`;
const ASSET = `${TOP}.tar.gz`;
const EPOCH = 1767225600; // 2026-01-01T00:00:00Z
const SCRIPT = join(ROOT, "scripts", "release.mjs");

interface Entry {
  path: string;
  type: string;
  mode: number;
  uid: number | undefined;
  gid: number | undefined;
  uname: string | undefined;
  gname: string | undefined;
  mtime: number | undefined;
  size: number;
}

/** The tarball path of release.mjs (the executables have their own test: npm run test:executable). */
function release(args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, ...args, "--no-executables"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) },
  });
}

async function listing(file: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  await tar.t({
    file,
    onReadEntry: (e) =>
      entries.push({
        path: e.path,
        type: e.type,
        mode: e.mode ?? -1,
        uid: e.uid,
        gid: e.gid,
        uname: e.uname,
        gname: e.gname,
        mtime: e.mtime?.getTime(),
        size: e.size ?? 0,
      }),
  });
  return entries;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let out1: string;
let out2: string;
let built: ReturnType<typeof release>;

before(async () => {
  out1 = await tempDir("cara-release-");
  out2 = await tempDir("cara-release-");
  // The first build runs `npm run build`, the second packs the same dist/ again.
  built = release(["--version", VERSION, "--out", out1]);
  assert.equal(built.status, 0, built.stderr);
  const again = release(["--version", VERSION, "--out", out2, "--no-build"]);
  assert.equal(again.status, 0, again.stderr);
});

test("npm run release writes the tarball and SHA256SUMS.txt and says what it produced", async () => {
  assert.deepEqual((await readdir(out1)).sort(), ["SHA256SUMS.txt", ASSET]);
  const data = await readFile(join(out1, ASSET));
  const sums = await readFile(join(out1, "SHA256SUMS.txt"), "utf8");
  assert.equal(sums, `${sha256(data)}  ${ASSET}\n`);
  assert.match(sums, /^[0-9a-f]{64} {2}\S+\n$/);
  assert.ok(built.stdout.includes(`${join(out1, ASSET)}  ${data.length} bytes  sha256 ${sha256(data)}`), built.stdout);
  assert.ok(built.stdout.includes(join(out1, "SHA256SUMS.txt")), built.stdout);
});

test("two builds of the same tree are byte-identical", async () => {
  const a = await readFile(join(out1, ASSET));
  const b = await readFile(join(out2, ASSET));
  assert.equal(sha256(a), sha256(b));
  assert.equal(await readFile(join(out1, "SHA256SUMS.txt"), "utf8"), await readFile(join(out2, "SHA256SUMS.txt"), "utf8"));
});

test("the archive: one top directory, production files only, normalized metadata, sorted", async () => {
  const entries = await listing(join(out1, ASSET));
  const paths = entries.map((e) => e.path);
  for (const p of paths) assert.ok(p === `${TOP}/` || p.startsWith(`${TOP}/`), p);
  // Sorted by member path (byte order, directories without their trailing slash).
  const keys = paths.map((p) => p.replace(/\/$/, ""));
  assert.deepEqual(
    keys,
    [...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
  );
  const has = (p: string) => paths.includes(`${TOP}/${p}`);
  for (const p of [
    "package.json",
    "README.md",
    "bin/cara.js",
    "dist/src/cli/main.js",
    "dist/src/package-info.js",
    "dist/src/update/releases.js",
    "dist/src/update/download.js",
    "dist/src/update/launcher.cjs",
    "dist/gen/carapace/ops/v1/ops_pb.js",
    "dist/web/index.html",
    "dist/web/index.html.gz",
    "dist/web/index.html.br",
    "node_modules/semver/package.json",
    "node_modules/tar/package.json",
    "node_modules/@sigstore/verify/package.json",
    "node_modules/@sigstore/verify/node_modules/@sigstore/core/package.json",
    "node_modules/@connectrpc/connect-node/package.json",
    "node_modules/clipanion/package.json",
  ]) {
    assert.ok(has(p), `missing ${p}`);
  }
  // The built console ships whole: its content-hashed bundle and stylesheet, each precompressed.
  for (const ext of ["js", "css"]) {
    for (const suffix of ["", ".gz", ".br"]) {
      const re = new RegExp(`^${TOP}/dist/web/assets/app-[A-Z0-9]{8}\\.${ext}${suffix.replace(".", "\\.")}$`);
      assert.equal(paths.filter((p) => re.test(p)).length, 1, `one dist/web/assets/app-<hash>.${ext}${suffix}`);
    }
  }
  // Dev dependencies (and what only they pull in), sources and tests stay out.
  for (const p of paths) {
    const rel = p.slice(TOP.length + 1);
    assert.doesNotMatch(
      rel,
      /^node_modules\/(typescript|tsx|esbuild|@esbuild|@types|@bufbuild\/buf|@bufbuild\/protoc-gen-es|@peculiar|@connectrpc\/connect-web|\.bin)(\/|$)/,
      p,
    );
    assert.doesNotMatch(rel, /^(src|test|bench|proto|scripts|gen)\//, p);
    assert.doesNotMatch(rel, /^dist\/(test|bench|scripts)\//, p);
    if (!rel.startsWith("node_modules/")) assert.ok(!rel.endsWith(".ts") && !rel.endsWith(".map"), p);
  }
  for (const e of entries) {
    assert.equal(e.uid, 0, e.path);
    assert.equal(e.gid, 0, e.path);
    assert.ok(!e.uname, e.path);
    assert.ok(!e.gname, e.path);
    assert.equal(e.mtime, EPOCH * 1000, e.path);
    const expected = e.type === "Directory" ? 0o755 : /\/bin\/[^/]+$/.test(e.path) ? 0o755 : 0o644;
    assert.equal(e.mode, expected, `${e.path} mode ${e.mode.toString(8)}`);
    assert.ok(e.type === "File" || e.type === "Directory", `${e.path} is a ${e.type}`);
  }
  assert.equal(entries.find((e) => e.path === `${TOP}/bin/cara.js`)?.mode, 0o755);
});

test("the packaged package.json carries the release version and no dev-only fields", async () => {
  const dir = await tempDir("cara-release-x-");
  await tar.x({ file: join(out1, ASSET), cwd: dir });
  const pkg = JSON.parse(await readFile(join(dir, TOP, "package.json"), "utf8")) as Record<string, unknown>;
  const repo = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as Record<string, unknown>;
  assert.equal(pkg.name, "carapace-cara");
  assert.equal(pkg.version, VERSION);
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.dependencies, repo.dependencies);
  assert.equal(pkg.devDependencies, undefined);
  assert.equal(pkg.scripts, undefined);
});

test("the extracted artifact runs on its own, outside the repository, and reports its version", async () => {
  const dir = await tempDir("cara-release-run-");
  assert.ok(!dir.startsWith(ROOT), `${dir} is inside the repository`);
  await tar.x({ file: join(out1, ASSET), cwd: dir });
  // A clean environment: no NODE_PATH, no NODE_OPTIONS (tsx), HOME in the temp dir.
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, NO_COLOR: "1" };
  const human = spawnSync(process.execPath, [join(TOP, "bin", "cara.js"), "version"], { cwd: dir, env, encoding: "utf8" });
  assert.equal(human.status, 0, human.stderr);
  assert.equal(human.stdout, `cara ${VERSION} (node ${process.version}, ${process.platform}/${process.arch})\n`);
  const json = spawnSync(process.execPath, [join(TOP, "bin", "cara.js"), "version", "--json"], { cwd: dir, env, encoding: "utf8" });
  assert.equal(json.status, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { version: string }).version, VERSION);
  // The production dependency tree is complete (npm checks every dependency is present).
  const ls = spawnSync("npm", ["ls", "--omit=dev", "--all"], { cwd: join(dir, TOP), env: { ...env, npm_config_cache: join(dir, ".npm") }, encoding: "utf8" });
  assert.equal(ls.status, 0, ls.stdout + ls.stderr);
});

test("a version that is not semver is a usage error", () => {
  for (const bad of ["1.2", "v1.2.3", "latest", ""]) {
    const r = release(["--version", bad, "--out", join(tmpdir(), "never"), "--no-build"]);
    assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
    assert.equal(r.stderr, `release: version ${JSON.stringify(bad)} is not a valid semver version (e.g. 1.2.3 or 1.3.0-beta.1, no leading v)\n`);
  }
  const r = release(["--bogus"]);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, "release: unknown argument --bogus\n");
});
