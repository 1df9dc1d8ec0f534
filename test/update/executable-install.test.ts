/**
 * The executable form of a managed install (issue 18), with stand-ins for the platform
 * executables (shell scripts: the real ones are built and exercised in
 * test/e2e/update-executable.test.ts): the layout (`versions/<v>/cara`, 0755, stamped), the
 * launcher's executable mode (the same supervision and rollback as the script launcher, other
 * commands handed to the current executable), how `cara install` and the updater pick and stage
 * the executable asset, and the refresh of the launcher copy.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { executableAssetName } from "../../src/executable-form.js";
import { launcherInstallDir } from "../../src/update/executable-launcher.js";
import { installRelease } from "../../src/update/install-release.js";
import {
  ensureExecutableLayout,
  executableLauncherInfo,
  installedVersions,
  installForm,
  stageExecutable,
  switchCurrent,
  unpackRelease,
  unpackedFrom,
} from "../../src/update/install-layout.js";
import { LAUNCHER_FILE, LAUNCHER_PROTOCOL } from "../../src/update/launcher.js";
import { UpdateManager } from "../../src/update/manager.js";
import { loadMarker, writeMarker } from "../../src/update/rollback-marker.js";
import { resolveUpdateSettings } from "../../src/update/settings.js";
import { runCli } from "../helpers/cli.js";
import { cleanEnv, tempDir } from "../helpers/cara.js";
import { startReleaseServer, type ReleaseServer } from "../helpers/release-server.js";
import { buildFakeArtifact, identityFor, sha256, signedRelease, TEST_REPO } from "./fixtures.js";
import { createTestTrustRoot, type TestTrustRoot } from "./sigstore-kit.js";

/** This host's executable asset (the tests run on a platform cara builds for). */
const ASSET = executableAssetName()!;

/**
 * A stand-in platform executable of `version`: prints its version, argv and whether a launcher
 * supervises it, then exits with CARA_FAKE_EXIT (or kills itself with CARA_FAKE_SIGNAL).
 */
async function fakeExecutable(dir: string, version: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `cara-${version}`);
  await writeFile(
    path,
    `#!/bin/sh
if [ "$*" = "version --json" ]; then echo '{"version":"${version}"}'; exit 0; fi
echo "ran ${version} $*\${CARA_LAUNCHER:+ supervised}"
if [ -n "$CARA_FAKE_SIGNAL" ]; then kill -s "$CARA_FAKE_SIGNAL" $$; fi
exit \${CARA_FAKE_EXIT:-0}
`,
  );
  await chmod(path, 0o755);
  return path;
}

async function installFake(installDir: string, work: string, version: string): Promise<string> {
  const exe = await fakeExecutable(join(work, "exe"), version);
  await stageExecutable(exe, installDir, version, sha256(await readFile(exe)));
  await ensureExecutableLayout(installDir, version, { replaceUnknown: true });
  await switchCurrent(installDir, version);
  return exe;
}

describe("executable-form layout", () => {
  test("a verified executable becomes versions/<v>/cara (0755, stamped); a changed file is refused and leaves nothing", async () => {
    const work = await tempDir();
    const installDir = join(work, "install");
    const exe = await fakeExecutable(work, "1.0.0");
    const digest = sha256(await readFile(exe));
    const staged = await stageExecutable(exe, installDir, "1.0.0", digest);
    assert.deepEqual(staged, { path: join(installDir, "versions", "1.0.0"), reused: false });
    assert.deepEqual(await readFile(join(staged.path, "cara")), await readFile(exe));
    assert.equal((await stat(join(staged.path, "cara"))).mode & 0o777, 0o755);
    assert.equal(await unpackedFrom(installDir, "1.0.0"), digest);
    assert.deepEqual(await stageExecutable(exe, installDir, "1.0.0", digest), { path: staged.path, reused: true });

    await assert.rejects(stageExecutable(exe, installDir, "1.1.0", "0".repeat(64)), {
      message: `staged artifact changed between verify and apply (sha256 ${digest}, verified ${"0".repeat(64)})`,
    });
    assert.deepEqual((await readdir(join(installDir, "versions"))).sort(), ["1.0.0"], "no staging dir is left");
    assert.deepEqual(await installedVersions(installDir), ["1.0.0"]);
  });

  test("an executable that reports another version than the release's is refused (no downgrade under a newer tag) and leaves nothing", async () => {
    const work = await tempDir();
    const installDir = join(work, "install");
    const old = await fakeExecutable(work, "0.9.0");
    await assert.rejects(stageExecutable(old, installDir, "1.0.0", sha256(await readFile(old))), {
      message: "the executable published as v1.0.0 reports v0.9.0; refusing it (a release must carry its own version's executable)",
    });
    const broken = join(work, "broken");
    await writeFile(broken, "#!/bin/sh\necho not json\n");
    await chmod(broken, 0o755);
    await assert.rejects(stageExecutable(broken, installDir, "1.0.0", sha256(await readFile(broken))), {
      message: "the executable published as v1.0.0 reports no version; refusing it (a release must carry its own version's executable)",
    });
    assert.deepEqual(await readdir(join(installDir, "versions")), [], "no staging dir is left");
  });

  test("current, previous and the form of an install; a tarball version next to it is still a version", async () => {
    const work = await tempDir();
    const installDir = join(work, "install");
    assert.equal(await installForm(installDir), undefined);
    await installFake(installDir, work, "1.0.0");
    await installFake(installDir, work, "1.1.0");
    assert.equal(await readlink(join(installDir, "current")), "versions/1.1.0");
    assert.equal(await readlink(join(installDir, "previous")), "versions/1.0.0");
    assert.equal(await installForm(installDir), "executable");
    assert.deepEqual(await installedVersions(installDir), ["1.1.0", "1.0.0"]);

    const tarballInstall = join(work, "tarball");
    const artifact = await buildFakeArtifact(work, "2.0.0");
    await unpackRelease(artifact, tarballInstall, "2.0.0", sha256(await readFile(artifact)));
    await switchCurrent(tarballInstall, "2.0.0");
    assert.equal(await installForm(tarballInstall), "tarball");
  });

  test("the launcher is a copy of the installed executable with an unknown protocol; an update never replaces a launcher, an install replaces only an unknown one", async () => {
    const work = await tempDir();
    const installDir = join(work, "install");
    const v1 = await installFake(installDir, work, "1.0.0");
    const launcherPath = join(installDir, "bin", "cara");
    assert.deepEqual(await readFile(launcherPath), await readFile(v1));
    assert.equal((await stat(launcherPath)).mode & 0o777, 0o755);
    assert.deepEqual(await executableLauncherInfo(installDir), { protocol: 0, version: "1.0.0" });

    const v2 = await fakeExecutable(join(work, "exe"), "1.1.0");
    await stageExecutable(v2, installDir, "1.1.0", sha256(await readFile(v2)));
    await ensureExecutableLayout(installDir, "1.1.0", { replaceUnknown: false });
    assert.deepEqual(await readFile(launcherPath), await readFile(v1), "an update keeps the launcher");
    await ensureExecutableLayout(installDir, "1.1.0", { replaceUnknown: true });
    assert.deepEqual(await readFile(launcherPath), await readFile(v2), "an install replaces a launcher of unknown protocol");

    await writeFile(join(installDir, "bin", ".cara-launcher.json"), JSON.stringify({ protocol: LAUNCHER_PROTOCOL, version: "1.1.0" }));
    await ensureExecutableLayout(installDir, "1.0.0", { replaceUnknown: true });
    assert.deepEqual(await readFile(launcherPath), await readFile(v2), "a launcher of known protocol is kept");
  });
});

describe("the launcher's executable mode", () => {
  async function fakeInstall() {
    const work = await tempDir();
    const installDir = join(work, "install");
    const stateDir = join(work, "state");
    await mkdir(join(stateDir, "updates"), { recursive: true });
    await installFake(installDir, work, "1.0.0");
    await installFake(installDir, work, "1.1.0");
    const markerFile = join(stateDir, "updates", "rollback.json");
    const marker = (state: string) =>
      writeFile(markerFile, JSON.stringify({ startupState: state, fromVersion: "1.0.0", toVersion: "1.1.0", installDir, appliedAtMs: 1 }));
    // What `<install>/bin/cara` does when it is an executable: launcher.cjs's launch() without Node
    // for the versions (the real executable runs it through executable-launcher.ts).
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(
        process.execPath,
        [
          "-e",
          `require(${JSON.stringify(LAUNCHER_FILE)}).launch(${JSON.stringify(installDir)}, process.argv.slice(1), ${JSON.stringify(join(installDir, "bin", "cara"))}, false)`,
          ...args,
          "--state-dir",
          stateDir,
        ],
        { encoding: "utf8", env: cleanEnv(env) },
      );
    return { work, installDir, stateDir, marker, run, current: () => readlink(join(installDir, "current")) };
  }

  test("a start supervises versions/<v>/cara; a new version that dies before it is ready is rolled back to the previous executable", async () => {
    const f = await fakeInstall();
    await f.marker("pending");
    const r = f.run(["start"], { CARA_FAKE_EXIT: "1" });
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^ran 1\.1\.0 start --state-dir \S+ supervised\nran 1\.0\.0 start --state-dir \S+ supervised\n$/);
    assert.match(r.stderr, /cara launcher: v1\.1\.0 was started at .* but never became ready; rolled back to v1\.0\.0\n$/);
    assert.equal(await f.current(), "versions/1.0.0");
    assert.equal((await loadMarker(join(f.stateDir, "updates")))?.startupState, "rolled_back");
  });

  test("other commands run the current executable unsupervised, with its exit code and its signal", async () => {
    const f = await fakeInstall();
    await f.marker("pending");
    const r = f.run(["status", "--json"], { CARA_FAKE_EXIT: "3" });
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^ran 1\.1\.0 status --json --state-dir \S+\n$/);
    assert.equal(r.stderr, "");
    assert.equal((await loadMarker(join(f.stateDir, "updates")))?.startupState, "pending", "a command is not a start");
    const killed = f.run(["status"], { CARA_FAKE_SIGNAL: "TERM" });
    assert.equal(killed.signal, "SIGTERM");
  });

  test("a tarball version cannot run under the executable launcher, and a missing current is named", async () => {
    const f = await fakeInstall();
    const artifact = await buildFakeArtifact(f.work, "2.0.0");
    await unpackRelease(artifact, f.installDir, "2.0.0", sha256(await readFile(artifact)));
    await switchCurrent(f.installDir, "2.0.0");
    const r = f.run(["version"]);
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      `cara launcher: the current version 2.0.0 is a tarball release (${join(f.installDir, "versions", "2.0.0", "bin", "cara.js")}), which needs Node; this install's launcher is a platform executable and runs only executable releases (cara-<arch>-<os>)\n`,
    );
    await symlink("versions/9.9.9", join(f.installDir, "current-new"));
    const { rename } = await import("node:fs/promises");
    await rename(join(f.installDir, "current-new"), join(f.installDir, "current"));
    const missing = f.run(["start"]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cara launcher: the current version is missing: \S+current does not resolve to an installed version \(previous: 1\.1\.0\)/);
  });

  test("an executable is the launcher only as <install>/bin/cara of a managed install (also through a symlink)", async () => {
    const f = await fakeInstall();
    const bin = join(f.installDir, "bin", "cara");
    assert.equal(launcherInstallDir(bin), f.installDir);
    await symlink(bin, join(f.work, "cara"));
    assert.equal(launcherInstallDir(join(f.work, "cara")), f.installDir);
    assert.equal(launcherInstallDir(join(f.installDir, "versions", "1.1.0", "cara")), undefined);
    assert.equal(launcherInstallDir(join(f.work, "exe", "cara-1.0.0")), undefined);
    await mkdir(join(f.work, "loose", "bin"), { recursive: true });
    await writeFile(join(f.work, "loose", "bin", "cara"), "");
    assert.equal(launcherInstallDir(join(f.work, "loose", "bin", "cara")), undefined, "a bin/cara outside an install");
  });
});

describe("installing and updating the executable form (real release server, test trust root)", () => {
  let kit: TestTrustRoot;
  let work: string;
  let server: ReleaseServer;
  let settings: ReturnType<typeof resolveUpdateSettings>;
  const exes: Record<string, string> = {};
  const tarballs: Record<string, string> = {};

  before(async () => {
    kit = await createTestTrustRoot();
    work = await tempDir();
    const rootPath = join(work, "trusted_root.json");
    await kit.writeTo(rootPath);
    for (const v of ["0.9.0", "0.9.1"]) {
      exes[v] = await fakeExecutable(join(work, "exe"), v);
      tarballs[v] = await buildFakeArtifact(work, v);
    }
    server = await startReleaseServer();
    settings = resolveUpdateSettings({ update: { releasesUrl: server.baseUrl, repository: TEST_REPO, trustedRoot: rootPath, retryDelaysMs: [20] } });
  });
  after(async () => server?.close());

  /** A release with both forms, as `npm run release` publishes it. */
  const bothForms = (v: string) => signedRelease(kit, exes[v]!, v, { assetName: ASSET, more: [{ name: `carapace-${v}.tar.gz`, path: tarballs[v]! }] });

  test("cara install --form executable installs this host's executable, verified, with the launcher beside it", async () => {
    server.setReleases([await bothForms("0.9.0")]);
    server.clearLog();
    const installDir = join(work, "install-1");
    const r = await installRelease({ installDir, version: "0.9.0", settings, form: "executable", userAgent: "test" });
    assert.equal(r.form, "executable");
    assert.equal(r.asset, ASSET);
    assert.equal(r.installPath, join(installDir, "versions", "0.9.0"));
    assert.equal(r.sha256, sha256(await readFile(exes["0.9.0"]!)));
    assert.equal(r.signingIdentity, identityFor("0.9.0"));
    assert.deepEqual(await readFile(join(installDir, "versions", "0.9.0", "cara")), await readFile(exes["0.9.0"]!));
    assert.deepEqual(await readFile(join(installDir, "bin", "cara")), await readFile(exes["0.9.0"]!));
    assert.equal(await readlink(join(installDir, "current")), "versions/0.9.0");
    assert.deepEqual(
      server
        .requests()
        .map((q) => q.path)
        .filter((p) => !p.includes("/releases"))
        .map((p) => p.slice(p.lastIndexOf("/") + 1)),
      [ASSET, `${ASSET}.bundle`, "SHA256SUMS.txt", "SHA256SUMS.txt.bundle"],
      "the tarball is not downloaded",
    );
    assert.equal(existsSync(join(installDir, ".downloads")), false);

    const mixed = installRelease({ installDir, version: "0.9.0", settings, form: "tarball", userAgent: "test" });
    await assert.rejects(mixed, {
      message: `${installDir} is an install of the executable form, and this would add the tarball form; install into another directory (or pass --form executable)`,
    });
  });

  test("a release without this host's executable is refused before anything is downloaded, naming the asset and the release", async () => {
    server.setReleases([await signedRelease(kit, tarballs["0.9.0"]!, "0.9.0")]);
    server.clearLog();
    const installDir = join(work, "install-2");
    await assert.rejects(installRelease({ installDir, version: "0.9.0", settings, form: "executable", userAgent: "test" }), {
      message: `release v0.9.0 has no asset '${ASSET}', the platform executable for this host (available: carapace-0.9.0.tar.gz, carapace-0.9.0.tar.gz.bundle, SHA256SUMS.txt, SHA256SUMS.txt.bundle); nothing was installed`,
    });
    assert.deepEqual(
      server.requests().filter((q) => !q.path.includes("/releases")),
      [],
    );
    assert.equal(existsSync(join(installDir, "versions")), false);
  });

  test("an executable signed for another identity is refused; nothing is installed", async () => {
    server.setReleases([
      await signedRelease(kit, exes["0.9.0"]!, "0.9.0", {
        assetName: ASSET,
        identity: "https://github.com/evil/cara/.github/workflows/release.yml@refs/tags/v0.9.0",
      }),
    ]);
    const installDir = join(work, "install-3");
    await assert.rejects(installRelease({ installDir, version: "0.9.0", settings, form: "executable", userAgent: "test" }), {
      message: /^bundle verification failed: .*identity.*; nothing was installed$/,
    });
    assert.equal(existsSync(join(installDir, "versions", "0.9.0")), false);
  });

  async function managedExecutableInstall(name: string) {
    server.setReleases([await bothForms("0.9.0"), await bothForms("0.9.1")]);
    const installDir = join(work, name);
    const updatesDir = join(work, `${name}-state`, "updates");
    await mkdir(updatesDir, { recursive: true, mode: 0o700 });
    await installRelease({ installDir, version: "0.9.0", settings, form: "executable", userAgent: "test" });
    // The running executable (what markHealthy copies as the launcher): 0.9.1's, once it runs.
    const manager = (running: string) =>
      new UpdateManager({
        updatesDir,
        settings,
        runningVersion: running,
        install: { managed: true, installDir, runningVersion: running },
        logger: pino({ level: "silent" }),
        form: "executable",
        executablePath: join(installDir, "versions", running, "cara"),
      });
    return { installDir, updatesDir, manager };
  }

  test("the updater of an executable install downloads this host's executable, stages it as versions/<v>/cara and switches; the launcher is refreshed once the new version is ready", async () => {
    const env = await managedExecutableInstall("update-1");
    server.clearLog();
    const out = await env.manager("0.9.0").start({ yes: true });
    assert.equal(out.outcome, "applied", out.error?.message);
    assert.equal(out.toVersion, "0.9.1");
    assert.equal(out.sha256, sha256(await readFile(exes["0.9.1"]!)));
    assert.equal(out.signingIdentity, identityFor("0.9.1"));
    assert.equal(out.installPath, join(env.installDir, "versions", "0.9.1"));
    assert.deepEqual(await readFile(join(env.installDir, "versions", "0.9.1", "cara")), await readFile(exes["0.9.1"]!));
    assert.equal((await stat(join(env.installDir, "versions", "0.9.1", "cara"))).mode & 0o777, 0o755);
    assert.equal(await readlink(join(env.installDir, "current")), "versions/0.9.1");
    assert.equal(await readlink(join(env.installDir, "previous")), "versions/0.9.0");
    assert.deepEqual(
      server
        .requests()
        .map((q) => q.path)
        .filter((p) => !p.includes("/releases"))
        .map((p) => p.slice(p.lastIndexOf("/") + 1))
        .sort(),
      ["SHA256SUMS.txt", "SHA256SUMS.txt.bundle", ASSET, `${ASSET}.bundle`],
    );
    const marker = await loadMarker(env.updatesDir);
    assert.deepEqual([marker?.startupState, marker?.fromVersion, marker?.toVersion], ["pending", "0.9.0", "0.9.1"]);
    assert.deepEqual(await readFile(join(env.installDir, "bin", "cara")), await readFile(exes["0.9.0"]!), "not replaced before 0.9.1 is ready");

    // The launcher's first start of 0.9.1, then 0.9.1 is ready.
    await writeMarker(env.updatesDir, { ...marker!, startupState: "started", startedAtMs: 1 });
    await env.manager("0.9.1").markHealthy();
    assert.equal((await loadMarker(env.updatesDir))?.startupState, "cleared");
    assert.deepEqual(await readFile(join(env.installDir, "bin", "cara")), await readFile(exes["0.9.1"]!));
    assert.deepEqual(await executableLauncherInfo(env.installDir), { protocol: LAUNCHER_PROTOCOL, version: "0.9.1" });
    // A rolled-back older version with the same protocol leaves it alone.
    await env.manager("0.9.0").markHealthy();
    assert.deepEqual(await readFile(join(env.installDir, "bin", "cara")), await readFile(exes["0.9.1"]!));
  });

  test("a release without this host's executable: the update names the asset and the release, downloads and applies nothing", async () => {
    const env = await managedExecutableInstall("update-2");
    server.setReleases([await bothForms("0.9.0"), await signedRelease(kit, tarballs["0.9.1"]!, "0.9.1")]);
    server.clearLog();
    await assert.rejects(env.manager("0.9.0").start({ yes: true }), {
      kind: "not_found",
      message: `release v0.9.1 has no asset '${ASSET}', the platform executable this install runs on (available: carapace-0.9.1.tar.gz, carapace-0.9.1.tar.gz.bundle, SHA256SUMS.txt, SHA256SUMS.txt.bundle); nothing was downloaded or applied`,
    });
    assert.deepEqual(
      server.requests().filter((q) => !q.path.includes("/releases")),
      [],
    );
    assert.equal(await readlink(join(env.installDir, "current")), "versions/0.9.0");
    assert.equal(existsSync(join(env.installDir, "versions", "0.9.1")), false);
  });

  test("cara install: --form is checked, and the tarball form is the default under node", async () => {
    const bad = await runCli(["install", "--dir", join(work, "x"), "--form", "zip"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--form must be one of executable, tarball \(got 'zip'\)/);
    server.setReleases([await bothForms("0.9.0")]);
    const state = join(work, "cli-state");
    await mkdir(state, { recursive: true, mode: 0o700 });
    await writeFile(
      join(state, "config.json"),
      JSON.stringify({ update: { releasesUrl: server.baseUrl, repository: TEST_REPO, trustedRoot: settings.trustedRootPath } }),
    );
    const r = await runCli(["install", "--dir", join(work, "cli-install"), "--version", "0.9.0", "--state-dir", state, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { form: string; asset: string };
    assert.deepEqual([doc.form, doc.asset], ["tarball", "carapace-0.9.0.tar.gz"]);
  });
});
