/**
 * The stable launcher `<install>/bin/cara` (src/update/launcher.cjs), run for real against a
 * managed install whose versions are tiny stand-ins: bin/cara.js prints its version and argv,
 * and exits with the code in CARA_FAKE_EXIT (or 75 once, to ask for a restart). Also: what it
 * re-implements (the value options of `cara start`, the marker states, the state-dir rule)
 * agrees with the CLI and the update domain.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Cli } from "clipanion";
import { StartCommand } from "../../src/cli/start.js";
import { resolveStateDir } from "../../src/state/paths.js";
import { ensureLayout, switchCurrent } from "../../src/update/install-layout.js";
import { LAUNCHER_FILE, LAUNCHER_PROTOCOL, launcher, launcherProtocolOf, readLauncherScript } from "../../src/update/launcher.js";
import { loadMarker, MARKER_STATES } from "../../src/update/rollback-marker.js";
import { cleanEnv, tempDir } from "../helpers/cara.js";

async function fakeInstall() {
  const dir = await tempDir();
  const installDir = join(dir, "install");
  const stateDir = join(dir, "state");
  await mkdir(join(stateDir, "updates"), { recursive: true });
  for (const v of ["1.0.0", "1.1.0"]) {
    const root = join(installDir, "versions", v);
    await mkdir(join(root, "bin"), { recursive: true });
    await writeFile(join(root, "package.json"), JSON.stringify({ name: "carapace-cara", version: v, type: "module" }));
    await writeFile(
      join(root, "bin", "cara.js"),
      `import { existsSync, writeFileSync } from "node:fs";
const flag = process.env.CARA_FAKE_RESTART_ONCE;
console.log("ran ${v} " + process.argv.slice(2).join(" ") + (process.env.CARA_LAUNCHER ? " supervised" : ""));
if (flag && !existsSync(flag)) { writeFileSync(flag, ""); process.exit(75); }
process.exit(Number(process.env.CARA_FAKE_EXIT ?? 0));
`,
    );
  }
  await ensureLayout(installDir);
  await switchCurrent(installDir, "1.0.0");
  await switchCurrent(installDir, "1.1.0");
  const markerFile = join(stateDir, "updates", "rollback.json");
  const marker = (state: string, extra: Record<string, unknown> = {}) =>
    writeFile(markerFile, JSON.stringify({ startupState: state, fromVersion: "1.0.0", toVersion: "1.1.0", installDir, appliedAtMs: 1, ...extra }));
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(installDir, "bin", "cara"), ...args, "--state-dir", stateDir], { encoding: "utf8", env: cleanEnv(env) });
  const readMarker = async () => JSON.parse(await readFile(markerFile, "utf8")) as Record<string, unknown>;
  const current = () => readlink(join(installDir, "current"));
  return { installDir, stateDir, marker, run, readMarker, current, dir };
}

test("a new version that exits with an error on its first run is rolled back at once", async () => {
  const f = await fakeInstall();
  await f.marker("pending");
  const first = f.run(["start"], { CARA_FAKE_EXIT: "1" });
  assert.equal(first.status, 1);
  assert.match(first.stdout, /^ran 1\.1\.0 start --state-dir .* supervised\nran 1\.0\.0 start --state-dir .* supervised\n$/);
  assert.match(
    first.stderr,
    /cara launcher: the new version exited with 1 before it became ready\ncara launcher: v1\.1\.0 was started at .* but never became ready; rolled back to v1\.0\.0\n/,
  );
  assert.equal(await f.current(), "versions/1.0.0");
  assert.equal(await readlink(join(f.installDir, "previous")), "versions/1.1.0");
  const m = await f.readMarker();
  assert.equal(m.startupState, "rolled_back");
  assert.equal(typeof m.rolledBackAtMs, "number");
});

test("a marker still `started` at the next start (the version never became ready) is rolled back", async () => {
  const f = await fakeInstall();
  await f.marker("started", { startedAtMs: Date.parse("2026-01-01T00:00:00Z") });
  const r = f.run(["start"]);
  assert.equal(r.status, 0);
  assert.equal(r.stderr, "cara launcher: v1.1.0 was started at 2026-01-01T00:00:00.000Z but never became ready; rolled back to v1.0.0\n");
  assert.match(r.stdout, /^ran 1\.0\.0 start/);
  assert.equal(await f.current(), "versions/1.0.0");
});

test("a version that exits normally on its first run is not rolled back; the marker stays for the server to clear", async () => {
  const f = await fakeInstall();
  await f.marker("pending");
  const r = f.run(["start"]);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.split("\n").filter(Boolean).length, 1);
  assert.equal((await f.readMarker()).startupState, "started");
  assert.equal(await f.current(), "versions/1.1.0");
});

test("`cara` with no verb starts the server and runs the protocol; --help and other commands do not", async () => {
  const f = await fakeInstall();
  await f.marker("pending");
  assert.match(f.run(["start", "--help"]).stdout, /^ran 1\.1\.0 start --help --state-dir/);
  assert.equal((await f.readMarker()).startupState, "pending");
  assert.match(f.run(["status"]).stdout, /^ran 1\.1\.0 status --state-dir .*[^d]\n$/, "other commands run in-process, unsupervised");
  assert.equal((await f.readMarker()).startupState, "pending");
  const optsFirst = spawnSync(process.execPath, [join(f.installDir, "bin", "cara"), "--state-dir", f.stateDir, "status"], {
    encoding: "utf8",
    env: cleanEnv(),
  });
  assert.match(optsFirst.stdout, /^ran 1\.1\.0 --state-dir .* status\n$/, "options before a command do not make it a server start");
  assert.equal((await f.readMarker()).startupState, "pending");
  f.run([]);
  assert.equal((await f.readMarker()).startupState, "started");
});

test("one launcher per state dir: a second one leaves the marker alone", async () => {
  const f = await fakeInstall();
  await f.marker("started", { startedAtMs: 5 });
  await writeFile(join(f.stateDir, "updates", "launcher.lock"), `${process.pid}\n`);
  const r = f.run(["start"]);
  assert.match(r.stderr, /^cara launcher: another launcher supervises .*; not touching the rollback marker\n/);
  assert.equal((await f.readMarker()).startupState, "started");
  assert.equal(await f.current(), "versions/1.1.0");
  // A dead owner's lock is taken over (and removed on exit).
  await writeFile(join(f.stateDir, "updates", "launcher.lock"), "999999999\n");
  f.run(["start"]);
  assert.equal((await f.readMarker()).startupState, "rolled_back");
  await assert.rejects(readFile(join(f.stateDir, "updates", "launcher.lock")), { code: "ENOENT" });
});

test("a restart loop is bounded", async () => {
  const f = await fakeInstall();
  const r = f.run(["start"], { CARA_FAKE_EXIT: "75" });
  assert.equal(r.status, 1);
  assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("ran 1.1.0")).length, 6);
  assert.match(r.stderr, /more than 5 restarts within a minute; giving up/);
});

test("while a live server holds the state lock, the launcher leaves the marker alone", async () => {
  const f = await fakeInstall();
  await f.marker("started", { startedAtMs: 5 });
  await writeFile(join(f.stateDir, "cara.lock"), `${process.pid}\n`);
  f.run(["start"]);
  assert.equal((await f.readMarker()).startupState, "started");
  assert.equal(await f.current(), "versions/1.1.0");
});

test("exit code 75 restarts the then-current version (restart after an update)", async () => {
  const f = await fakeInstall();
  const r = f.run(["start"], { CARA_FAKE_RESTART_ONCE: join(f.dir, "restarted") });
  assert.equal(r.status, 0);
  assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("ran 1.1.0 start")).length, 2);
});

test("markers that do not apply are left alone: another install, current not the new version, a crash after switching back", async () => {
  const f = await fakeInstall();
  await f.marker("started", { installDir: "/elsewhere" });
  f.run(["start"]);
  assert.equal(await f.current(), "versions/1.1.0");
  await f.marker("started", { toVersion: "2.0.0" });
  f.run(["start"]);
  assert.equal(await f.current(), "versions/1.1.0");
  assert.equal((await f.readMarker()).startupState, "started");
  // current already points at fromVersion: the rollback happened, only its record is missing.
  await switchCurrent(f.installDir, "1.0.0");
  await f.marker("started");
  f.run(["start"]);
  assert.equal((await f.readMarker()).startupState, "rolled_back");
  assert.equal(await f.current(), "versions/1.0.0");
});

test("a marker naming an unsafe version or a missing rollback target is reported, and the current version still starts", async () => {
  const f = await fakeInstall();
  await f.marker("started", { fromVersion: "../../etc" });
  const bad = f.run(["start"]);
  assert.match(bad.stderr, /rollback check failed: .*names an invalid version/);
  assert.match(bad.stdout, /^ran 1\.1\.0 start/);
  await f.marker("started", { fromVersion: "0.9.0" });
  const missing = f.run(["start"]);
  assert.match(missing.stderr, /rollback check failed: version 0\.9\.0 is not installed/);
  assert.match(String((await f.readMarker()).reason), /never became ready, but rolling back to v0\.9\.0 failed/);
  assert.equal((await f.readMarker()).startupState, "rollback_failed");
  assert.equal(await f.current(), "versions/1.1.0");
});

test("the installed launcher is launcher.cjs as it is, executable, with its protocol line", async () => {
  const f = await fakeInstall();
  const script = await readLauncherScript();
  assert.equal(await readFile(join(f.installDir, "bin", "cara"), "utf8"), script);
  assert.equal((await stat(join(f.installDir, "bin", "cara"))).mode & 0o777, 0o755);
  assert.ok(script.startsWith("#!/usr/bin/env node\n"));
  assert.equal(launcherProtocolOf(script), LAUNCHER_PROTOCOL);
  assert.equal(LAUNCHER_PROTOCOL, 2);
  assert.ok(LAUNCHER_FILE.endsWith("launcher.cjs"));
  // Only Node's own modules: it runs with plain node, outside any node_modules.
  const required = [...script.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(required)].sort(), ["node:child_process", "node:crypto", "node:fs", "node:os", "node:path", "node:url"]);
});

test("the launcher's value options are exactly the options of `cara start` that take a value", () => {
  const cli = new Cli({ binaryName: "cara" });
  cli.register(StartCommand);
  const [start, ...others] = cli.definitions();
  assert.ok(start && others.length === 0);
  const valueOptions = start.options.flatMap((o) => {
    const [names, value] = o.definition.split(" ");
    return value === undefined ? [] : names!.split(",");
  });
  assert.deepEqual([...launcher.START_VALUE_OPTIONS].sort(), valueOptions.sort());
  // So a value is never taken for the command, and a real command is still seen.
  assert.equal(launcher.startsServer(["--log-level", "status", "--port", "1"]), true);
  assert.equal(launcher.startsServer(["--state-dir", "/x", "status"]), false);
});

test("the marker states the launcher writes are the update domain's (rollback_failed included)", async () => {
  const { pending, started, rolledBack, rollbackFailed } = launcher.MARKER_STATES;
  for (const state of [pending, started, rolledBack, rollbackFailed]) assert.ok((MARKER_STATES as readonly string[]).includes(state), state);
  const dir = await tempDir();
  await writeFile(
    join(dir, "rollback.json"),
    JSON.stringify({ startupState: rollbackFailed, fromVersion: "1.0.0", toVersion: "1.1.0", installDir: "/i", appliedAtMs: 1 }),
  );
  assert.equal((await loadMarker(dir))?.startupState, "rollback_failed");
  assert.equal(launcher.RESTART, 75);
});

test("the launcher finds the state dir as the server does (flag, CARAPACE_STATE_DIR, XDG_CONFIG_HOME, home)", () => {
  const cases: [string[], NodeJS.ProcessEnv, string | undefined][] = [
    [["start", "--state-dir", "rel/dir"], { CARAPACE_STATE_DIR: "/env" }, "rel/dir"],
    [["--state-dir=/flag"], {}, "/flag"],
    [[], { CARAPACE_STATE_DIR: "/env", XDG_CONFIG_HOME: "/xdg" }, undefined],
    [[], { CARAPACE_STATE_DIR: "  ", XDG_CONFIG_HOME: "/xdg" }, undefined],
    [[], { XDG_CONFIG_HOME: "relxdg" }, undefined],
    [[], { HOME: process.env.HOME }, undefined],
  ];
  for (const [argv, env, flag] of cases) assert.equal(launcher.stateDir(argv, env), resolveStateDir(flag, env), JSON.stringify([argv, env]));
});
