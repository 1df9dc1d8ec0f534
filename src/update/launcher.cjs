#!/usr/bin/env node
// cara launcher for a managed install. Copied from cara's src/update/launcher.cjs; do not edit (newer versions rewrite it).
// cara-launcher-protocol: 2
// @ts-check
"use strict";
/*
 * The stable launcher `<install>/bin/cara` of a managed install, copied there by `cara install`
 * (install-layout.ts writeLauncher); a version with a newer protocol (the line above) refreshes
 * it once it is ready. It lives outside `versions/`, so it keeps working whatever `current`
 * points to, and it is plain CommonJS that needs only Node (no node_modules): a broken new
 * version cannot break it. Type-checked with the rest of the sources (allowJs + @ts-check).
 *
 * The same logic serves both release forms. In a tarball install `<install>/bin/cara` is this
 * file, run by the host's Node; a version is `versions/<v>/bin/cara.js`, run by that Node. In an
 * executable install `<install>/bin/cara` is a copy of a platform executable, which calls
 * launch() when it finds itself there (executable-launcher.ts); a version is the executable
 * `versions/<v>/cara`, and other commands are handed to it with execve (no Node on the host).
 *
 * When the arguments start the server (`start`, or no command), it supervises the server as a
 * child, holding `<state>/updates/launcher.lock` (one launcher per state dir), and runs the
 * start-time half of the rollback protocol (rollback-marker.ts):
 * - marker `pending` and `current` = toVersion -> `started` (the new version's first start);
 * - marker `started` and `current` = toVersion -> that version never became ready (it crashed, was
 *   stopped, or exceeded update.readyTimeoutMs): switch `current` back to fromVersion, mark
 *   `rolled_back` with the reason, and start that (a failed switch is recorded as
 *   `rollback_failed`, which ends the probation).
 * A child on probation that exits with an error is rolled back at once. Exit code 75 asks for a
 * restart (after an update or rollback); at most 5 restarts a minute. A stop signal is forwarded
 * once and ends supervision. Every other command runs the current version directly: a tarball
 * version is imported in this same process, an executable replaces this process (execve) or,
 * where Node has no execve, runs as a child whose exit code or signal becomes ours.
 *
 * Required as a module (tests, launcher.ts), it runs nothing and exports its constants and pure
 * helpers.
 */
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const crypto = require("node:crypto");
const { pathToFileURL } = require("node:url");

/** Bumped when the launcher's behaviour changes; must equal the `cara-launcher-protocol` line. */
const PROTOCOL = 2;
const RESTART = 75;
const SAFE_VERSION = /^[0-9A-Za-z][0-9A-Za-z.+-]*$/;
/** Options of `cara start` that take a value (so their value is not mistaken for a command). */
const START_VALUE_OPTIONS = ["--port", "-p", "--bind", "--state-dir", "--log-level", "--tls-cert", "--tls-key"];
/** The file name of a version's platform executable: `versions/<v>/cara`. */
const EXECUTABLE = "cara";
/** rollback.json `startupState` values this launcher reads or writes. */
const MARKER_STATES = /** @type {const} */ ({ pending: "pending", started: "started", rolledBack: "rolled_back", rollbackFailed: "rollback_failed" });

/**
 * @typedef {object} Marker rollback.json, as far as the launcher reads and writes it.
 * @property {string} startupState
 * @property {unknown} fromVersion
 * @property {unknown} toVersion
 * @property {unknown} installDir
 * @property {number} [startedAtMs]
 * @property {number} [rolledBackAtMs]
 * @property {string} [reason]
 */

/** @param {unknown} e */
function errnoCode(e) {
  return /** @type {NodeJS.ErrnoException} */ (e).code;
}

/** @param {unknown} e */
function messageOf(e) {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The state directory, as src/state/paths.ts resolveStateDir: --state-dir, else
 * CARAPACE_STATE_DIR, else $XDG_CONFIG_HOME/carapace, else ~/.config/carapace.
 * @param {readonly string[]} argv
 * @param {NodeJS.ProcessEnv} env
 */
function stateDir(argv, env) {
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (argv[i] === "--state-dir" && next) return path.resolve(next);
    const a = /** @type {string} */ (argv[i]);
    if (a.startsWith("--state-dir=") && a.length > 12) return path.resolve(a.slice(12));
  }
  const fromEnv = env.CARAPACE_STATE_DIR;
  if (fromEnv?.trim()) return path.resolve(fromEnv);
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg?.trim()) return path.resolve(xdg, "carapace");
  return path.join(os.homedir(), ".config", "carapace");
}

/**
 * Whether these arguments start the server: `start` or no command, and not --help/--version.
 * @param {readonly string[]} argv
 */
function startsServer(argv) {
  if (argv.some((a) => a === "--help" || a === "-h" || a === "--version" || a === "-v")) return false;
  let command;
  for (let i = 0; i < argv.length; i++) {
    const a = /** @type {string} */ (argv[i]);
    if (a.startsWith("-")) {
      if (START_VALUE_OPTIONS.includes(a)) i++;
      continue;
    }
    command = a;
    break;
  }
  return command === undefined || command === "start";
}

/** @param {string} dir */
function fsyncDir(dir) {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The same durable write as src/state/durable.ts: temp file (O_EXCL, 0600), write, fsync, rename,
 * fsync the directory.
 * @param {string} file
 * @param {string} text
 */
function writeDurable(file, text) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${crypto.randomBytes(6).toString("hex")}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/**
 * The rollback marker, or undefined when there is none; a symlink, a non-file or a file over
 * 64 KiB is refused.
 * @param {string} file
 * @returns {Marker | undefined}
 */
function readMarker(file) {
  let fd;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > 65536) throw new Error(`${file} is not a small regular file`);
    return JSON.parse(fs.readFileSync(fd, "utf8"));
  } finally {
    fs.closeSync(fd);
  }
}

/** @param {string} installDir */
function currentVersion(installDir) {
  try {
    return path.basename(fs.readlinkSync(path.join(installDir, "current")));
  } catch {
    return undefined;
  }
}

/**
 * Points `current` at a version (symlink + rename), recording `previous`, as install-layout.ts
 * switchCurrent does.
 * @param {string} installDir
 * @param {string} version
 */
function switchCurrent(installDir, version) {
  const target = path.join("versions", version);
  if (!isInstalledVersion(path.join(installDir, target))) throw new Error(`version ${version} is not installed in ${path.join(installDir, "versions")}`);
  const old = currentVersion(installDir);
  if (old && old !== version) {
    const ptmp = path.join(installDir, `.previous-${crypto.randomBytes(6).toString("hex")}`);
    fs.symlinkSync(path.join("versions", old), ptmp);
    fs.renameSync(ptmp, path.join(installDir, "previous"));
  }
  const tmp = path.join(installDir, `.current-${crypto.randomBytes(6).toString("hex")}`);
  fs.symlinkSync(target, tmp);
  fs.renameSync(tmp, path.join(installDir, "current"));
  fsyncDir(installDir);
}

/**
 * Whether a version directory holds a release of either form: the platform executable `cara`
 * (executable form) or `bin/cara.js` (tarball form), as install-layout.ts isInstalledVersion.
 * @param {string} dir
 */
function isInstalledVersion(dir) {
  return fs.existsSync(path.join(dir, EXECUTABLE)) || fs.existsSync(path.join(dir, "bin", "cara.js"));
}

/** @param {number | undefined} pid */
function alive(pid) {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) === "EPERM";
  }
}

/** @param {string} file */
function readPid(file) {
  try {
    return Number.parseInt(fs.readFileSync(file, "utf8").trim(), 10);
  } catch {
    return undefined;
  }
}

/**
 * One launcher per state dir: `<state>/updates/launcher.lock` holds our pid while we supervise;
 * a dead owner's lock is taken over. Returns false when another live launcher holds it.
 * @param {string} dir
 */
function takeLauncherLock(dir) {
  const updates = path.join(dir, "updates");
  fs.mkdirSync(updates, { recursive: true, mode: 0o700 });
  const file = path.join(updates, "launcher.lock");
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      try {
        fs.writeFileSync(fd, `${process.pid}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      process.on("exit", () => {
        if (readPid(file) !== process.pid) return;
        try {
          fs.unlinkSync(file);
        } catch {}
      });
      return true;
    } catch (e) {
      if (errnoCode(e) !== "EEXIST") throw e;
    }
    if (alive(readPid(file))) return false;
    try {
      fs.unlinkSync(file);
    } catch {}
  }
  return false;
}

/**
 * Runs the start-time protocol; returns true when the version about to start is on probation.
 * @param {string} installDir
 * @param {string} dir
 */
function startProtocol(installDir, dir) {
  if (alive(readPid(path.join(dir, "cara.lock")))) return false; // a server runs here: not our start
  const file = path.join(dir, "updates", "rollback.json");
  const marker = readMarker(file);
  if (!marker || marker.installDir !== installDir) return false;
  if (!SAFE_VERSION.test(String(marker.toVersion)) || !SAFE_VERSION.test(String(marker.fromVersion))) throw new Error(`${file} names an invalid version`);
  const from = String(marker.fromVersion);
  const to = String(marker.toVersion);
  const cur = currentVersion(installDir);
  const now = Date.now();
  const save = () => writeDurable(file, `${JSON.stringify(marker, null, 2)}\n`);
  if (marker.startupState === MARKER_STATES.started && cur === from) {
    // A crash between switching back and recording it.
    marker.startupState = MARKER_STATES.rolledBack;
    marker.rolledBackAtMs = marker.rolledBackAtMs || now;
    marker.reason = marker.reason || `v${to} never became ready; rolled back to v${from}`;
    save();
    return false;
  }
  if (cur !== to) return false;
  if (marker.startupState === MARKER_STATES.pending) {
    marker.startupState = MARKER_STATES.started;
    marker.startedAtMs = now;
    save();
    return true;
  }
  if (marker.startupState === MARKER_STATES.started) rollBack(installDir, marker, save, now);
  return false;
}

/**
 * Switches back to fromVersion and records it in the marker (or records that the switch failed).
 * @param {string} installDir
 * @param {Marker} marker
 * @param {() => void} save
 * @param {number} now
 */
function rollBack(installDir, marker, save, now) {
  const from = String(marker.fromVersion);
  const to = String(marker.toVersion);
  try {
    switchCurrent(installDir, from);
  } catch (e) {
    marker.startupState = MARKER_STATES.rollbackFailed;
    marker.reason = `v${to} never became ready, but rolling back to v${from} failed: ${messageOf(e)}`;
    save();
    throw e;
  }
  marker.startupState = MARKER_STATES.rolledBack;
  marker.rolledBackAtMs = now;
  marker.reason = `v${to} was started at ${new Date(marker.startedAtMs || now).toISOString()} but never became ready; rolled back to v${from}`;
  save();
  process.stderr.write(`cara launcher: ${marker.reason}\n`);
}

/** @param {string} dir */
function stillOnProbation(dir) {
  try {
    const m = readMarker(path.join(dir, "updates", "rollback.json"));
    return !!m && m.startupState === MARKER_STATES.started;
  } catch {
    return false;
  }
}

/**
 * @typedef {object} Program How to run the current version.
 * @property {string} file what to execute
 * @property {string[]} args its arguments before the command line's
 * @property {string} [script] a tarball version's bin/cara.js (run by this launcher's Node)
 */

/**
 * How to run the current version: its platform executable `versions/<v>/cara`, or its
 * `bin/cara.js` with this launcher's Node. `hasNode` is false in the executable launcher, whose
 * own runtime runs only the code built into it, so a tarball version cannot run there.
 * @param {string} installDir
 * @param {boolean} hasNode
 * @returns {Program}
 */
function program(installDir, hasNode) {
  const link = path.join(installDir, "current");
  let dir;
  try {
    dir = fs.realpathSync(link);
  } catch {
    dir = undefined;
  }
  if (dir !== undefined) {
    const executable = path.join(dir, EXECUTABLE);
    if (fs.existsSync(executable)) return { file: executable, args: [] };
    const script = path.join(dir, "bin", "cara.js");
    if (fs.existsSync(script)) {
      if (hasNode) return { file: process.execPath, args: [...process.execArgv, script], script };
      throw new Error(
        `the current version ${path.basename(dir)} is a tarball release (${script}), which needs Node; this install's launcher is a platform executable and runs only executable releases (cara-<arch>-<os>)`,
      );
    }
  }
  let prev = "";
  try {
    prev = ` (previous: ${path.basename(fs.readlinkSync(path.join(installDir, "previous")))})`;
  } catch {}
  throw new Error(
    `the current version is missing: ${link} does not resolve to an installed version${prev}; switch with \`cara update --rollback --version X\` from an installed version`,
  );
}

/**
 * Runs the server as a child (see the comment at the top) until it stops.
 * @param {string} installDir
 * @param {string[]} argv
 * @param {string} launcherFile this launcher (told to the server in CARA_LAUNCHER)
 * @param {boolean} hasNode
 */
function supervise(installDir, argv, launcherFile, hasNode) {
  const { spawn } = require("node:child_process");
  const dir = stateDir(argv, process.env);
  const owner = takeLauncherLock(dir);
  if (!owner) process.stderr.write(`cara launcher: another launcher supervises ${dir}; not touching the rollback marker\n`);
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let child;
  let stopping = false;
  /** @type {number[]} */
  const restarts = [];
  for (const sig of /** @type {const} */ (["SIGTERM", "SIGINT", "SIGHUP"])) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      if (child) child.kill(sig);
    });
  }
  /** @param {boolean} [rollbackNow] */
  const run = (rollbackNow) => {
    let probation = false;
    try {
      if (owner) probation = startProtocol(installDir, dir);
    } catch (e) {
      process.stderr.write(`cara launcher: rollback check failed: ${messageOf(e)} (starting the current version)\n`);
    }
    const env = { ...process.env, CARA_LAUNCHER: launcherFile, CARA_LAUNCHER_PID: String(process.pid), CARA_LAUNCHER_PROTOCOL: String(PROTOCOL) };
    const prog = program(installDir, hasNode);
    const started = spawn(prog.file, [...prog.args, ...argv], { stdio: "inherit", env, detached: true });
    child = started;
    started.once("error", (e) => {
      // Only a version that cannot be executed at all (a missing or non-executable file).
      process.stderr.write(`cara launcher: cannot run ${prog.file}: ${messageOf(e)}\n`);
      process.exit(1);
    });
    started.once("exit", (code, signal) => {
      if (stopping) return process.exit(code === RESTART || code === null ? 0 : code);
      if (code === RESTART) {
        const now = Date.now();
        restarts.push(now);
        while (restarts.length && now - /** @type {number} */ (restarts[0]) > 60000) restarts.shift();
        if (restarts.length > 5) {
          process.stderr.write("cara launcher: more than 5 restarts within a minute; giving up\n");
          return process.exit(1);
        }
        return run();
      }
      if (probation && owner && !rollbackNow && code !== 0 && stillOnProbation(dir)) {
        // The new version died on its first run: roll back now rather than at the next start.
        process.stderr.write(`cara launcher: the new version exited with ${signal || code} before it became ready\n`);
        return run(true);
      }
      if (signal) {
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
        return;
      }
      process.exit(code === null ? 1 : code);
    });
  };
  run();
}

/**
 * Runs a command that does not start the server on the current version: a tarball version in
 * this process (the launcher's Node already runs), an executable by replacing this process
 * (execve, Node 22.15+), so its exit code and signals are the command's; on a Node without execve
 * it runs as a child with our stdio, receives our stop signals, and its exit becomes ours.
 * @param {string} installDir
 * @param {string[]} argv
 * @param {boolean} hasNode
 */
function runCommand(installDir, argv, hasNode) {
  const prog = program(installDir, hasNode);
  if (prog.script) {
    import(pathToFileURL(prog.script).href).catch((e) => {
      process.stderr.write(`cara launcher: ${e?.stack ? e.stack : e}\n`);
      process.exit(1);
    });
    return;
  }
  const execve = /** @type {{ execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }} */ (/** @type {unknown} */ (process)).execve;
  if (typeof execve === "function") execve.call(process, prog.file, [prog.file, ...prog.args, ...argv], process.env);
  const { spawn } = require("node:child_process");
  const child = spawn(prog.file, [...prog.args, ...argv], { stdio: "inherit" });
  for (const sig of /** @type {const} */ (["SIGTERM", "SIGINT", "SIGHUP"])) process.on(sig, () => child.kill(sig));
  child.once("error", (e) => {
    process.stderr.write(`cara launcher: cannot run ${prog.file}: ${messageOf(e)}\n`);
    process.exit(1);
  });
  child.once("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

/**
 * The launcher's work for one command line: supervise a server start, or run any other command
 * on the current version. A failure before the version runs is one line on stderr and exit 1.
 * @param {string} installDir
 * @param {string[]} argv
 * @param {string} launcherFile
 * @param {boolean} hasNode
 */
function launch(installDir, argv, launcherFile, hasNode) {
  try {
    if (startsServer(argv)) supervise(installDir, argv, launcherFile, hasNode);
    else runCommand(installDir, argv, hasNode);
  } catch (e) {
    process.stderr.write(`cara launcher: ${messageOf(e)}\n`);
    process.exit(1);
  }
}

/** The script launcher's own program: `<install>/bin/cara` is this file, run by the host's Node. */
function main() {
  launch(path.resolve(__dirname, ".."), process.argv.slice(2), __filename, true);
}

if (require.main === module) main();
else module.exports = { PROTOCOL, RESTART, START_VALUE_OPTIONS, MARKER_STATES, EXECUTABLE, stateDir, startsServer, launch };
