#!/usr/bin/env node
// npm run release [-- --version X] [-- --out DIR] [-- --no-build] [-- --no-executables]
//
// Builds cara (npm run build) and packs the release assets: one platform-independent,
// self-contained tarball for hosts that bring their own Node, and the platform executables:
//
//   DIR/carapace-<version>.tar.gz   carapace-<version>/{package.json, bin/cara.js, dist/{src,gen,web},
//                                   assets/ (if any), README.md, LICENSE* (if any), node_modules/
//                                   (production dependencies only, copied from ./node_modules as
//                                   listed in package-lock.json)}
//   DIR/cara-x86_64-linux           Node single-executable applications of the same version, built
//   DIR/cara-aarch64-linux          by scripts/build-executable.mjs (no Node needed on the host;
//                                   darwin is not built here: that script's header says why)
//   DIR/SHA256SUMS.txt              "<sha256 hex>  <file name>" lines (GNU format), sorted
//
// --no-executables packs the tarball only (tests that need a release to install and update
// from, and hosts without the pinned runtimes; the executables take about half a minute each).
//
// The archive is deterministic: entries sorted, mtime fixed (SOURCE_DATE_EPOCH, else the time of
// the last commit), uid/gid 0, no user or group names, modes normalized (0755 directories and files
// inside a bin/ directory, 0644 other files), gzip level 6 without a name or timestamp. Two runs
// over the same tree produce the same bytes.
//
// --version X sets the version written into the packaged package.json (the running cara reports
// that version: src/package-info.ts reads the nearest package.json named carapace-cara); it defaults to
// the version in ./package.json. --no-build packs the existing dist/ (which must be up to date).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import semver from "semver";
import { Header, Pax } from "tar";
import { buildExecutable, PLATFORMS, UsageError as ExecutableUsageError } from "./build-executable.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BLOCK = 512;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { version: undefined, out: "release", build: true, executables: true };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (value !== undefined) return value;
      const next = argv[++i];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${arg} needs a value`);
      return next;
    };
    switch (arg) {
      case "--version":
        opts.version = take();
        break;
      case "--out":
        opts.out = take();
        break;
      case "--no-build":
        opts.build = false;
        break;
      case "--no-executables":
        opts.executables = false;
        break;
      case "-h":
      case "--help":
        process.stdout.write("Usage: npm run release [-- --version X] [-- --out DIR] [-- --no-build] [-- --no-executables]\n");
        process.exit(0);
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return opts;
}

function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** The archive's fixed mtime: SOURCE_DATE_EPOCH, else the last commit's time, else the epoch. */
function sourceDate() {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined && env !== "") {
    if (!/^\d+$/.test(env)) throw new UsageError(`SOURCE_DATE_EPOCH must be a number of seconds, got ${JSON.stringify(env)}`);
    return new Date(Number(env) * 1000);
  }
  const git = spawnSync("git", ["log", "-1", "--format=%ct"], { cwd: ROOT, encoding: "utf8" });
  const secs = git.status === 0 ? git.stdout.trim() : "";
  return new Date(/^\d+$/.test(secs) ? Number(secs) * 1000 : 0);
}

/** Directory entries, sorted by name (byte order) so that the walk is deterministic. */
function sortedDir(dir) {
  return readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The archive's members: archive path -> { source file | data buffer | directory }. Directories
 * are added for every parent path.
 */
class Members {
  map = new Map();
  addDir(path) {
    for (let p = path; p !== "." && p !== "" && !this.map.has(p); p = dirname(p)) this.map.set(p, { dir: true });
  }
  addData(path, data) {
    this.addDir(dirname(path));
    this.map.set(path, { data });
  }
  addFile(path, source) {
    const st = lstatSync(source);
    if (st.isSymbolicLink()) throw new Error(`refusing to package a symlink: ${relative(ROOT, source)}`);
    if (!st.isFile()) throw new Error(`not a regular file: ${relative(ROOT, source)}`);
    this.addDir(dirname(path));
    this.map.set(path, { source });
  }
  /** A whole tree; `skip(name, isDir)` leaves entries out. */
  addTree(path, source, skip = () => false) {
    this.addDir(path);
    for (const entry of sortedDir(source)) {
      if (skip(entry.name, entry.isDirectory())) continue;
      const src = join(source, entry.name);
      const dst = `${path}/${entry.name}`;
      if (entry.isDirectory()) this.addTree(dst, src, skip);
      else this.addFile(dst, src);
    }
  }
}

/**
 * Production packages from package-lock.json (lockfile v2/v3 "packages"): every entry not marked
 * dev. Each must be installed in ./node_modules at the locked version; a missing optional one is
 * skipped.
 */
function productionPackages(pkg) {
  const lockPath = join(ROOT, "package-lock.json");
  if (!existsSync(lockPath)) throw new Error("package-lock.json is missing");
  const lock = readJson(lockPath);
  if (!lock.packages || typeof lock.packages !== "object") throw new Error('package-lock.json has no "packages" map (lockfile v2 or newer needed)');
  const lockedDeps = JSON.stringify(lock.packages[""]?.dependencies ?? {});
  if (lockedDeps !== JSON.stringify(pkg.dependencies ?? {})) {
    throw new Error("package-lock.json does not match package.json dependencies; run npm install first");
  }
  const out = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === "" || entry.dev) continue;
    if (!path.startsWith("node_modules/") || path.split("/").includes("..")) throw new Error(`unexpected package path in package-lock.json: ${path}`);
    if (entry.link) throw new Error(`linked package ${path} cannot be packaged`);
    const dir = join(ROOT, path);
    const manifest = join(dir, "package.json");
    if (!existsSync(manifest)) {
      if (entry.optional || entry.devOptional) continue;
      throw new Error(`${path} is not installed; run npm ci first`);
    }
    const installed = readJson(manifest).version;
    if (entry.version !== undefined && installed !== entry.version) {
      throw new Error(`${path} is ${installed} but package-lock.json says ${entry.version}; run npm ci first`);
    }
    out.push(path);
  }
  return out.sort();
}

/** Every compiled file under dist/<area> whose TypeScript (or checked .cjs) source still exists in <area> (`skip`: subdirectories tsc does not compile). */
function addCompiled(members, top, area, skip = []) {
  const walk = (rel) => {
    const srcDir = join(ROOT, area, rel);
    if (!existsSync(srcDir)) return;
    for (const entry of sortedDir(srcDir)) {
      const relPath = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        if (skip.includes(relPath)) continue;
        walk(relPath);
      } else if ((entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) || entry.name.endsWith(".cjs")) {
        // TypeScript compiles to .js; checked CommonJS sources (the launcher) are emitted as they are named.
        const js = relPath.replace(/\.ts$/, ".js");
        const compiled = join(ROOT, "dist", area, js);
        if (!existsSync(compiled)) throw new Error(`dist/${area}/${js} is missing; the build is out of date (run npm run build)`);
        members.addFile(`${top}/dist/${area}/${js}`, compiled);
      }
    }
  };
  walk("");
}

function modeOf(path, isDir) {
  if (isDir) return 0o755;
  return basename(dirname(path)) === "bin" ? 0o755 : 0o644;
}

/** The tar stream (ustar + pax for long names) of the members, sorted. */
function packTar(members, mtime) {
  const chunks = [];
  const paths = [...members.map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const path of paths) {
    const m = members.map.get(path);
    const name = m.dir ? `${path}/` : path;
    const body = m.dir ? undefined : (m.data ?? readFileSync(m.source));
    const size = body ? body.length : 0;
    const header = new Header({
      path: name,
      mode: modeOf(path, !!m.dir),
      uid: 0,
      gid: 0,
      size,
      mtime,
      type: m.dir ? "Directory" : "File",
      uname: "",
      gname: "",
      linkpath: "",
      devmaj: 0,
      devmin: 0,
    });
    const block = Buffer.alloc(BLOCK);
    header.encode(block, 0);
    if (header.needPax) chunks.push(new Pax({ path: name, mtime, uid: 0, gid: 0 }).encode());
    chunks.push(block);
    if (body && size > 0) {
      chunks.push(body);
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad) chunks.push(Buffer.alloc(pad));
    }
  }
  chunks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(chunks);
}

/** Writes a file atomically (temp + rename) with mode 0644. */
async function writeAtomic(path, data) {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, "w", 0o644);
  try {
    await fh.writeFile(data);
    await fh.chmod(0o644);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path).catch(async (err) => {
    await rm(tmp, { force: true });
    throw err;
  });
}

function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

async function main() {
  const started = Date.now();
  const opts = parseArgs(process.argv.slice(2));
  const pkg = readJson(join(ROOT, "package.json"));
  const version = opts.version ?? pkg.version;
  if (semver.valid(version) !== version) {
    throw new UsageError(`version ${JSON.stringify(version)} is not a valid semver version (e.g. 1.2.3 or 1.3.0-beta.1, no leading v)`);
  }

  if (opts.build) {
    const build = spawnSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
    if (build.status !== 0) throw new Error(`npm run build failed (exit ${build.status ?? build.signal})`);
  }

  const top = `carapace-${version}`;
  const members = new Members();

  // package.json: what the installed package needs at run time, with the release's version.
  const manifest = {
    name: pkg.name,
    version,
    description: pkg.description,
    type: pkg.type,
    license: pkg.license,
    engines: pkg.engines,
    bin: pkg.bin,
    dependencies: pkg.dependencies,
  };
  for (const k of Object.keys(manifest)) if (manifest[k] === undefined) delete manifest[k];
  members.addData(`${top}/package.json`, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));

  members.addFile(`${top}/bin/cara.js`, join(ROOT, "bin", "cara.js"));
  // src/web is the browser console: esbuild bundles it into dist/web (scripts/build-web.mjs).
  addCompiled(members, top, "src", ["web"]);
  addCompiled(members, top, "gen");
  if (!existsSync(join(ROOT, "dist", "web", "index.html"))) throw new Error("dist/web/index.html is missing; the console is not built (run npm run build)");
  members.addTree(`${top}/dist/web`, join(ROOT, "dist", "web"));
  if (existsSync(join(ROOT, "assets"))) members.addTree(`${top}/assets`, join(ROOT, "assets"));
  members.addFile(`${top}/README.md`, join(ROOT, "README.md"));
  for (const entry of sortedDir(ROOT)) {
    if (entry.isFile() && /^(LICENSE|LICENCE|NOTICE)(\..*)?$/i.test(entry.name)) members.addFile(`${top}/${entry.name}`, join(ROOT, entry.name));
  }

  // Production dependencies; nested node_modules are lockfile entries of their own.
  const packages = productionPackages(pkg);
  for (const path of packages) {
    members.addTree(`${top}/${path}`, join(ROOT, path), (name, isDir) => isDir && name === "node_modules");
  }

  const mtime = sourceDate();
  const tarball = packTar(members, mtime);
  // Node's gzip writes no file name and a zero timestamp: the output depends only on the input.
  // Level 6 (zlib's default): on this ~30 MB tar, 0.6% larger than level 9 in 40% of its time
  // (0.8 s against 2.0 s; the update tests pack a dozen releases).
  const gz = gzipSync(tarball, { level: 6 });

  const outDir = resolve(process.cwd(), opts.out);
  await mkdir(outDir, { recursive: true });
  const assetName = `${top}.tar.gz`;
  const assetPath = join(outDir, assetName);
  await writeAtomic(assetPath, gz);
  const digest = sha256(gz);
  const files = members.map.size;
  process.stdout.write(
    `Release ${version} (${packages.length} production packages, ${files} archive entries, mtime ${mtime.toISOString()})\n` +
      `  ${assetPath}  ${gz.length} bytes  sha256 ${digest}\n`,
  );
  const digests = new Map([[assetName, digest]]);
  if (opts.executables) {
    // dist/ is built (or checked) above; each executable bundles that same dist/.
    for (const platform of Object.keys(PLATFORMS)) {
      const exe = await buildExecutable({ version, out: outDir, platform, build: false, log: (line) => process.stdout.write(`${line}\n`) });
      digests.set(exe.asset, exe.sha256);
    }
  }
  const sums = [...digests]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, hex]) => `${hex}  ${name}\n`)
    .join("");
  const sumsPath = join(outDir, "SHA256SUMS.txt");
  await writeAtomic(sumsPath, sums);
  process.stdout.write(
    `  ${sumsPath}  ${Buffer.byteLength(sums)} bytes  sha256 ${sha256(sums)}\nRelease ${version} done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`release: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof UsageError || err instanceof ExecutableUsageError ? 2 : 1);
});
