#!/usr/bin/env node
// node scripts/build-executable.mjs --version V --out DIR [--platform linux-x64|linux-arm64] [--no-build]
//
// Builds one platform executable of cara: a Node single-executable application (SEA) that needs
// no Node on the host.
//
//   DIR/cara-x86_64-linux    (--platform linux-x64, the default)
//   DIR/cara-aarch64-linux   (--platform linux-arm64)
//
// How:
// 1. `npm run build` (skipped with --no-build: dist/ must then be up to date).
// 2. esbuild bundles scripts/executable-entry.mjs (what bin/cara.js runs: dist/src/cli/main.js)
//    with every module it imports, dynamic imports included (the lazily loaded pg and sigstore
//    libraries), into one CommonJS file: the format a SEA's main script has. pg's optional native
//    binding (pg-native) is left out: cara never asks for it.
// 3. The files the code reads at run time (src/package-files.ts) are embedded as SEA assets under
//    their package-relative paths: package.json (name and version V: what `cara version` reports,
//    as the tarball's package.json does), assets/sigstore/trusted_root.json, dist/web/** (the
//    console) and dist/src/update/launcher.cjs.
// 4. The pinned Node 24 LTS (runtimes/package-lock.json, installed by scripts/install-runtimes.mjs
//    when missing) writes the SEA blob (--experimental-sea-config) without a code cache or a
//    snapshot: both are V8-version and CPU specific, and leaving them out makes the blob the same
//    bytes for every architecture and every build.
// 5. postject injects the blob into a copy of the pinned Node 24 binary of the platform (section
//    NODE_SEA_BLOB, the SEA fuse flipped) and the result is renamed into DIR, mode 0755.
//
// Deterministic: the same commit and V give byte-identical executables (nothing in the bundle,
// blob or injection depends on time or paths; the file's mtime is SOURCE_DATE_EPOCH, else the last
// commit's time, as scripts/release.mjs does). test/executable/executable.test.ts checks it.
//
// darwin (cara-x86_64-darwin, cara-aarch64-darwin) is not built here. Injecting into the Mach-O
// node of the npm registry's node-darwin-* packages works from Linux (postject handles Mach-O),
// but it invalidates the binary's code signature, and macOS refuses to run a binary whose
// signature does not match (on Apple Silicon every binary must carry a valid one). Node's
// procedure is `codesign --remove-signature` before injecting and `codesign --sign -` (ad hoc)
// after. What is missing here is a Mach-O signer: codesign exists only on macOS, and the Linux
// ones (rcodesign from apple-codesign, ldid) are neither in Debian 12 nor on npm. On a macOS
// runner: the same bundle and blob, `postject ... --macho-segment-name NODE_SEA`, then codesign.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import semver from "semver";
import { installRuntimes, runtimeBinary } from "./install-runtimes.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** postject's default sentinel is not Node's: Node checks this fuse to know it carries a blob. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
/** --platform -> the runtimes/ alias of its pinned Node 24 and the release asset name. */
export const PLATFORMS = {
  "linux-x64": { runtime: "node24-linux-x64", asset: "cara-x86_64-linux" },
  "linux-arm64": { runtime: "node24-linux-arm64", asset: "cara-aarch64-linux" },
};

export class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { version: undefined, out: undefined, platform: "linux-x64", build: true };
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
      case "--platform":
        opts.platform = take();
        break;
      case "--no-build":
        opts.build = false;
        break;
      case "-h":
      case "--help":
        process.stdout.write(`Usage: node scripts/build-executable.mjs --version V --out DIR [--platform ${Object.keys(PLATFORMS).join("|")}] [--no-build]\n`);
        process.exit(0);
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  if (opts.version === undefined) throw new UsageError("--version is required");
  if (opts.out === undefined) throw new UsageError("--out is required");
  return opts;
}

/** The executable's mtime: SOURCE_DATE_EPOCH, else the last commit's time, else the epoch (as release.mjs). */
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

/** Every regular file under dir, as package-relative paths, sorted. */
function filesUnder(rel) {
  const out = [];
  const walk = (r) => {
    for (const entry of readdirSync(join(ROOT, r), { withFileTypes: true })) {
      const p = `${r}/${entry.name}`;
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.push(p);
    }
  };
  walk(rel);
  return out.sort();
}

/** The one CommonJS file of the CLI and server. */
async function bundle() {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [join(ROOT, "scripts", "executable-entry.mjs")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node24",
    write: false,
    outfile: "cara.cjs",
    // pg requires pg-native only when `pg.native` is used, which cara never does.
    external: ["pg-native"],
    // import.meta is empty in CommonJS: the few modules that use import.meta.url get the
    // executable's own file URL. The ones that locate cara's files with it (package-info,
    // sigstore-bundle, launcher) ask runningAsExecutable() first and read embedded assets instead.
    define: { "import.meta.url": "__cara_import_meta_url" },
    banner: { js: 'var __cara_import_meta_url = require("node:url").pathToFileURL(process.execPath).href;' },
    // Whitespace and syntax only: identifiers stay readable in stack traces, and keepNames keeps
    // class and function .name (the bundle renames colliding top-level names).
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: true,
    legalComments: "eof",
    charset: "utf8",
    sourcemap: false,
    logLevel: "warning",
    metafile: true,
  });
  if (result.outputFiles.length !== 1) throw new Error(`esbuild produced ${result.outputFiles.length} files, expected one`);
  return { code: Buffer.from(result.outputFiles[0].contents), modules: Object.keys(result.metafile.inputs).length };
}

function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Builds DIR/<asset> for one platform; returns { path, asset, bytes, sha256, seconds }.
 * `build: false` uses the existing dist/ (release.mjs builds once and then calls this per platform).
 */
export async function buildExecutable({ version, out, platform = "linux-x64", build: runBuild = true, log = (line) => process.stdout.write(`${line}\n`) }) {
  const started = Date.now();
  if (semver.valid(version) !== version) throw new UsageError(`version ${JSON.stringify(version)} is not a valid semver version (e.g. 1.2.3, no leading v)`);
  const target = PLATFORMS[platform];
  if (!target) throw new UsageError(`unknown platform ${JSON.stringify(platform)} (one of ${Object.keys(PLATFORMS).join(", ")})`);
  if (runBuild) {
    const b = spawnSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
    if (b.status !== 0) throw new Error(`npm run build failed (exit ${b.status ?? b.signal})`);
  }
  for (const needed of ["dist/src/cli/main.js", "dist/src/update/launcher.cjs", "dist/web/index.html"]) {
    if (!existsSync(join(ROOT, needed))) throw new Error(`${needed} is missing; the build is out of date (run npm run build)`);
  }
  installRuntimes();
  const builder = runtimeBinary("node24-linux-x64");
  const base = runtimeBinary(target.runtime);

  const work = await mkdtemp(join(tmpdir(), "cara-sea-"));
  try {
    const { code, modules } = await bundle();
    await writeFile(join(work, "cara.cjs"), code);

    // The embedded files, by package-relative key (src/package-files.ts reads them by that key).
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    await writeFile(join(work, "package.json"), `${JSON.stringify({ name: pkg.name, version }, null, 2)}\n`);
    const assets = { "package.json": join(work, "package.json") };
    for (const rel of ["assets/sigstore/trusted_root.json", "dist/src/update/launcher.cjs", ...filesUnder("dist/web")]) assets[rel] = join(ROOT, rel);
    const sorted = Object.fromEntries(Object.entries(assets).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

    // Node writes the main script's path as given into the blob: a relative one (resolved against
    // the work directory, the cwd below) keeps the temp directory's random name out of it.
    const config = {
      main: "cara.cjs",
      output: "sea-prep.blob",
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
      assets: sorted,
    };
    await writeFile(join(work, "sea-config.json"), JSON.stringify(config, null, 2));
    const blobRun = spawnSync(builder, ["--experimental-sea-config", join(work, "sea-config.json")], { cwd: work, encoding: "utf8" });
    if (blobRun.status !== 0) throw new Error(`node --experimental-sea-config failed (exit ${blobRun.status ?? blobRun.signal}): ${blobRun.stderr.trim()}`);
    const blob = await readFile(join(work, config.output));

    // postject rewrites the file in place: inject into a copy, then rename the finished file into DIR.
    const outDir = resolve(process.cwd(), out);
    await mkdir(outDir, { recursive: true });
    const dest = join(outDir, target.asset);
    const tmp = `${dest}.tmp-${process.pid}`;
    await copyFile(base, tmp);
    await chmod(tmp, 0o755);
    try {
      // postject's ELF library (LIEF) prints "warning: Can't find string offset for section name
      // '.note.100'" lines on stderr for Node's binary: known and harmless (nodejs/postject#83).
      const { inject } = createRequire(import.meta.url)("postject");
      await inject(tmp, "NODE_SEA_BLOB", blob, { sentinelFuse: SEA_FUSE });
      const mtime = sourceDate();
      await utimes(tmp, mtime, mtime);
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    const bytes = readFileSync(dest);
    const result = { path: dest, asset: target.asset, bytes: bytes.length, sha256: sha256(bytes), seconds: (Date.now() - started) / 1000 };
    const shown = relative(process.cwd(), dest).startsWith("..") ? dest : relative(process.cwd(), dest);
    log(
      `${target.asset} ${version}: ${modules} modules bundled (${(code.length / 1024 / 1024).toFixed(1)} MiB), ${Object.keys(sorted).length} embedded files, ` +
        `Node ${JSON.parse(readFileSync(join(dirname(dirname(base)), "package.json"), "utf8")).version} ${platform}, in ${result.seconds.toFixed(1)} s\n` +
        `  ${shown}  ${result.bytes} bytes  sha256 ${result.sha256}`,
    );
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await buildExecutable(parseArgs(process.argv.slice(2)));
  } catch (err) {
    process.stderr.write(`build-executable: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  }
}
