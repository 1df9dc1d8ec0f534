/**
 * Self-update end to end: real releases built by `npm run release`, signed by a test trust root,
 * served by a local GitHub-compatible release server; a managed install made by `cara install`;
 * the server started through the install's launcher; updates, restart, automatic rollback of a
 * broken version, manual rollback (server up and down), kill -9 during a download, and the
 * offline verification of the reference's real Sigstore bundle.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as tar from "tar";
import { cleanEnv, connectJson, ROOT, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { startReleaseServer, type FakeRelease, type ReleaseServer } from "../helpers/release-server.js";
import { signedRelease, TEST_REPO } from "../update/fixtures.js";
import { createTestTrustRoot, type TestTrustRoot } from "../update/sigstore-kit.js";

let kit: TestTrustRoot;
let work: string;
let releasesDir: string;
let server: ReleaseServer;
let stateDir: string;
let installDir: string;
let launcher: string;
const releases: Record<string, FakeRelease> = {};

function buildRelease(version: string): string {
  const out = join(releasesDir, version);
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", "release.mjs"), "--version", version, "--out", out, "--no-build"], { encoding: "utf8" });
  assert.equal(r.status, 0, `release ${version} failed: ${r.stderr}`);
  return join(out, `carapace-${version}.tar.gz`);
}

/** A validly signed release whose server cannot start (module-level throw). */
async function buildBrokenRelease(version: string): Promise<string> {
  const good = buildRelease(version);
  const dir = join(releasesDir, `broken-${version}`);
  await mkdir(dir, { recursive: true });
  await tar.x({ file: good, cwd: dir });
  await writeFile(join(dir, `carapace-${version}`, "dist", "src", "server", "server.js"), 'throw new Error("this build is broken");\n');
  const out = join(dir, `carapace-${version}.tar.gz`);
  await tar.c({ gzip: true, file: out, cwd: dir, portable: true }, [`carapace-${version}`]);
  return out;
}

function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        const v = await fn();
        if (v !== undefined && v !== false) return resolve(v);
      } catch {
        // not yet
      }
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 50);
    };
    void tick();
  });
}

const listeningPorts = (s: CaraServer) =>
  s.lines.flatMap((l) => {
    try {
      const r = JSON.parse(l) as { msg?: string; port?: number };
      return r.msg?.startsWith("listening on") && r.port ? [r.port] : [];
    } catch {
      return [];
    }
  });

const cli = (s: { port: number }, args: string[], timeoutMs = 60_000) => runCara([...args, "--port", String(s.port), "--state-dir", stateDir], { timeoutMs });
const current = () => readlink(join(installDir, "current"));

async function status(port: number) {
  const r = await connectJson({ baseUrl: `http://127.0.0.1:${port}` }, "carapace.update.v1.UpdateService/GetUpdateStatus", {}, (await readFile(join(stateDir, "auth", "token"), "utf8")).trim());
  return r.json as { currentVersion: string; rollbackMarker?: { state: string; reason?: string; fromVersion: string; toVersion: string }; transaction?: { state: string; phase: string }; previousVersion?: string; installedVersions: string[]; managed: boolean };
}

before(async () => {
  work = await tempDir();
  releasesDir = join(work, "releases");
  kit = await createTestTrustRoot();
  const rootPath = join(work, "trusted_root.json");
  await kit.writeTo(rootPath);
  for (const v of ["0.9.0", "0.9.1"]) releases[v] = await signedRelease(kit, buildRelease(v), v);
  server = await startReleaseServer(Object.values(releases));
  stateDir = join(work, "state");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(
    join(stateDir, "config.json"),
    JSON.stringify({ update: { releasesUrl: server.baseUrl, repository: TEST_REPO, trustedRoot: rootPath, retryDelaysMs: [200, 400, 800] } }),
  );
  installDir = join(work, "opt", "carapace");
  launcher = join(installDir, "bin", "cara");
});
after(async () => server?.close());

describe("self-update end to end", { concurrency: false }, () => {
  let srv: CaraServer;

  test("cara install creates the managed layout from a verified release", async () => {
    const r = await runCara(["install", "--dir", installDir, "--version", "0.9.0", "--state-dir", stateDir], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Installed cara v0\\.9\\.0 into ${installDir}\\.\\n`));
    assert.match(r.stdout, /Signing identity: {2}https:\/\/github\.com\/test\/cara\/\.github\/workflows\/release\.yml@refs\/tags\/v0\.9\.0\n/);
    assert.equal(await current(), "versions/0.9.0");
    const v = spawnSync(process.execPath, [launcher, "version"], { encoding: "utf8", env: cleanEnv() });
    assert.match(v.stdout, /0\.9\.0/);
  });

  test("a git checkout says self-update does not apply, and how to update", async () => {
    const dev = await startCara({ stateDir: join(work, "dev-state") });
    const r = await runCara(["update", "--yes", "--port", String(dev.port), "--state-dir", dev.stateDir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: self-update does not apply to this installation: running from a git checkout \(.*\); update with `git pull && npm ci && npm run build`/);
    await dev.stop();
  });

  test("cara update --check prints the reference lines", async () => {
    srv = await startCara({ stateDir, bin: launcher });
    const r = await cli(srv, ["update", "--check"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `Current version: v0.9.0\nLatest version:  v0.9.1\nUpdate available: v0.9.0 -> v0.9.1\nRun \`cara update\` to install\n`);
    const j = await cli(srv, ["update", "--check", "--json"]);
    const doc = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.deepEqual([doc.currentVersion, doc.latestVersion, doc.updateAvailable, doc.managed, doc.channel], ["0.9.0", "0.9.1", true, true, "stable"]);
  });

  test("a release signed for another identity is refused by the CLI, nothing applied", async () => {
    const evil = await signedRelease(kit, join(releasesDir, "0.9.1", "carapace-0.9.1.tar.gz"), "0.9.1", { identity: "https://github.com/evil/cara/.github/workflows/release.yml@refs/tags/v0.9.1" });
    server.setReleases([releases["0.9.0"]!, evil]);
    const r = await cli(srv, ["update", "--yes"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Update failed \(phase: verified\): bundle verification failed: .*identity/m);
    assert.match(r.stderr, /This failure is non-retryable and nothing was applied/);
    assert.equal(await current(), "versions/0.9.0");
    server.setReleases(Object.values(releases));
  });

  test("cara update --yes --restart applies v0.9.1 and the server comes back on it; the marker clears", async () => {
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Updating from v0\.9\.0 to v0\.9\.1\.\.\.\nUpdate applied successfully\.\n/);
    assert.match(r.stdout, /Sigstore bundle verification: passed\n {2}Checksum verification: passed\n/);
    assert.match(r.stdout, /Pre-update backup: .*pre-update-.*\.tar\.gz\n/);
    assert.match(r.stdout, /The server is restarting on v0\.9\.1\.\n$/);
    assert.equal(await current(), "versions/0.9.1");
    const port = await waitFor("the restarted server", () => listeningPorts(srv)[1]);
    const s = await waitFor("the marker to clear", async () => {
      const st = await status(port);
      return st.rollbackMarker?.state === "ROLLBACK_STATE_CLEARED" ? st : undefined;
    });
    assert.equal(s.currentVersion, "0.9.1");
    assert.equal(s.previousVersion, "0.9.0");
    assert.deepEqual(s.installedVersions, ["0.9.1", "0.9.0"]);
    assert.equal(s.transaction?.state, "UPDATE_TRANSACTION_STATE_APPLIED");
    (srv as { port: number }).port = port;
  });

  test("a broken new version is rolled back by the launcher on the next start", async () => {
    releases["0.9.2"] = await signedRelease(kit, await buildBrokenRelease("0.9.2"), "0.9.2");
    server.setReleases(Object.values(releases));
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await current(), "versions/0.9.2");
    // The restarted child cannot start: the whole process exits non-zero.
    const code = await srv.exited;
    assert.notEqual(code, 0);
    assert.ok(srv.lines.some((l) => l.includes("this build is broken")), srv.lines.join("\n"));
    // Next start (a supervisor would do this): the launcher sees `started` and rolls back.
    srv = await startCara({ stateDir, bin: launcher });
    assert.ok(srv.lines.some((l) => l.includes("cara launcher: v0.9.2 was started at") && l.includes("never became ready; rolled back to v0.9.1")), srv.lines.join("\n"));
    assert.equal(await current(), "versions/0.9.1");
    const st = await status(srv.port);
    assert.equal(st.currentVersion, "0.9.1");
    assert.equal(st.rollbackMarker?.state, "ROLLBACK_STATE_ROLLED_BACK");
    assert.match(st.rollbackMarker?.reason ?? "", /never became ready/);
    const plain = await cli(srv, ["update", "--status"]);
    assert.match(plain.stdout, /Rollback marker: {3}rolled_back \(v0\.9\.1 -> v0\.9\.2/);
    const overall = await cli(srv, ["status", "--json"]);
    const doc = JSON.parse(overall.stdout) as { status: { checks: { name: string; status: string; message: string }[] } };
    const checks = doc.status.checks;
    assert.ok(Array.isArray(checks), overall.stdout);
    const update = checks.find((c) => c.name === "update");
    assert.equal(update?.status, "warn");
    assert.match(update?.message ?? "", /never became ready/);
  });

  test("cara update --rollback switches by hand, through the server and while it is down", async () => {
    const refused = await cli(srv, ["update", "--rollback"]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, "Error: the previous version v0.9.2 was rolled back automatically (it never became ready); name the version to switch to with --version (installed: v0.9.2, v0.9.1, v0.9.0)\n");
    const mismatch = await cli(srv, ["update", "--rollback", "--version", "0.9.0", "--restore-state"]);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /^Error: the recorded pre-update backup was taken when v0\.9\.1 was replaced by v0\.9\.2, not for v0\.9\.1 -> v0\.9\.0/);
    assert.equal(await current(), "versions/0.9.1", "nothing changed");
    const r = await cli(srv, ["update", "--rollback", "--version", "0.9.0", "--reason", "testing"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "Rolled back: current is now v0.9.0 (was v0.9.1).\nRestart cara to run v0.9.0.\n");
    assert.equal(await current(), "versions/0.9.0");
    await srv.stop();
    const down = await runCara(["update", "--rollback", "--version", "0.9.1", "--state-dir", stateDir, "--port", String(srv.port)], { bin: launcher });
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /^The server is not running; rolled back the install in .*: current is now v0\.9\.1 \(was v0\.9\.0\)\.\n/);
    assert.equal(await current(), "versions/0.9.1");
  });

  test("kill -9 in the middle of a download: the next start resumes the update with HTTP Range", async () => {
    await rm(join(stateDir, "updates", "rollback.json"), { force: true });
    const v = "0.9.3";
    releases[v] = await signedRelease(kit, buildRelease(v), v);
    server.setReleases(Object.values(releases));
    const artifactName = `carapace-${v}.tar.gz`;
    const artifact = releases[v]!.assets.find((a) => a.name === artifactName)!.body as Buffer;
    const half = Math.floor(artifact.length / 2);
    server.respond(`/${artifactName}`, (_req, res) => {
      res.writeHead(200, { "content-length": String(artifact.length), "content-type": "application/octet-stream" });
      res.write(artifact.subarray(0, half)); // ...and never finishes
    });
    srv = await startCara({ stateDir, bin: launcher });
    const update = spawn(process.execPath, [join(ROOT, "bin", "cara.js"), "update", "--yes", "--port", String(srv.port), "--state-dir", stateDir], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    update.stdout.on("data", (c: Buffer) => (out += c.toString()));
    update.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const part = join(stateDir, "updates", `${artifactName}.part`);
    await waitFor("part of the artifact on disk", async () => existsSync(part) && (await readFile(part)).length > 0).catch((err: Error) => {
      throw new Error(`${err.message}\ncara update said: ${out}\nserver: ${srv.lines.slice(-5).join("\n")}`);
    });
    // kill -9 the server itself (the launcher supervises it as a child and then exits too).
    const serverPid = (await connectJson(srv, "carapace.ops.v1.OpsService/GetStatus", {}, srv.token)).json.pid as number;
    process.kill(serverPid, "SIGKILL");
    await srv.exited;
    update.kill();
    const partSize = (await readFile(part)).length;
    assert.ok(partSize > 0 && partSize <= half);
    const tx = JSON.parse(await readFile(join(stateDir, "updates", "transaction.json"), "utf8")) as { phase: string; state: string };
    assert.deepEqual([tx.state, tx.phase], ["in_progress", "downloading"]);
    server.clearLog();
    srv = await startCara({ stateDir, bin: launcher });
    await waitFor("the resumed update to apply", async () => ((await current()) === `versions/${v}` ? true : undefined), 30_000);
    const gets = server.requests(`/${artifactName}`);
    assert.equal(gets.length, 1);
    assert.equal(gets[0]!.range, `bytes=${partSize}-`);
    const st = await status(srv.port);
    assert.equal(st.transaction?.state, "UPDATE_TRANSACTION_STATE_APPLIED");
    await srv.stop();
  });

  const crashPoints = [
    ["downloaded", "0.9.4"],
    ["verified", "0.9.5"],
    ["applying", "0.9.6"],
    ["switched", "0.9.7"],
  ] as const;
  for (const [point, v] of crashPoints) {
    test(`kill -9 right after '${point}': the next start completes the update without downloading the artifact again`, async () => {
      releases[v] = await signedRelease(kit, buildRelease(v), v);
      server.setReleases(Object.values(releases));
      srv = await startCara({ stateDir, bin: launcher, env: { CARA_TEST_UPDATE_PAUSE_AFTER: point } });
      const update = spawn(process.execPath, [join(ROOT, "bin", "cara.js"), "update", "--yes", "--version", v, "--port", String(srv.port), "--state-dir", stateDir], { env: cleanEnv(), stdio: "ignore" });
      const txFile = join(stateDir, "updates", "transaction.json");
      await waitFor(`the transaction to reach ${point}`, async () => {
        if (point === "switched") return (await current()) === `versions/${v}` ? true : undefined;
        const tx = JSON.parse(await readFile(txFile, "utf8")) as { phase: string; version: string };
        return tx.version === v && tx.phase === point ? true : undefined;
      });
      const serverPid = (await connectJson(srv, "carapace.ops.v1.OpsService/GetStatus", {}, srv.token)).json.pid as number;
      process.kill(serverPid, "SIGKILL");
      await srv.exited;
      update.kill();
      server.clearLog();
      srv = await startCara({ stateDir, bin: launcher });
      const done = await waitFor("the resumed update to finish", async () => {
        const tx = JSON.parse(await readFile(txFile, "utf8")) as { state: string; version: string };
        return tx.version === v && tx.state === "applied" ? tx : undefined;
      }, 30_000);
      assert.equal(done.state, "applied");
      assert.equal(await current(), `versions/${v}`);
      assert.equal(server.requests(`/carapace-${v}.tar.gz`).length, 0, "the verified artifact is not downloaded again");
      await srv.stop();
    });
  }

  test("a new version that starts but never becomes ready is rolled back after update.readyTimeoutMs", async () => {
    const configFile = join(stateDir, "config.json");
    const config = JSON.parse(await readFile(configFile, "utf8")) as Record<string, Record<string, unknown>>;
    // Not ready: a free-space floor no disk meets fails the disk check (for every version).
    await writeFile(configFile, JSON.stringify({ ...config, update: { ...config.update, readyTimeoutMs: 2000 }, health: { diskFreeFloorBytes: Number.MAX_SAFE_INTEGER } }));
    const v = "0.9.8";
    releases[v] = await signedRelease(kit, buildRelease(v), v);
    server.setReleases(Object.values(releases));
    srv = await startCara({ stateDir, bin: launcher });
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor("the rollback", async () => ((await readFile(join(stateDir, "updates", "rollback.json"), "utf8")).includes('"rolled_back"') ? true : undefined), 30_000);
    assert.equal(await current(), "versions/0.9.7");
    assert.ok(srv.lines.some((l) => l.includes("v0.9.8 did not become ready within 2 s after an update; exiting so the launcher rolls back")), srv.lines.join("\n"));
    const port = await waitFor("the rolled-back server", () => listeningPorts(srv)[2]);
    const st = await status(port);
    assert.equal(st.currentVersion, "0.9.7");
    assert.equal(st.rollbackMarker?.state, "ROLLBACK_STATE_ROLLED_BACK");
    await srv.stop();
    await writeFile(configFile, JSON.stringify(config));
  });

  test("cara update verify: the reference's real bundle verifies offline by digest, any other identity fails", async () => {
    const bundle = join(ROOT, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
    const digest = "sha256:acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
    const issuer = "https://token.actions.githubusercontent.com";
    const ok = await runCara(["update", "verify", digest, "--bundle", bundle, "--certificate-identity", "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.0", "--certificate-oidc-issuer", issuer]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^Verified OK\n {2}Artifact SHA-256: {2}acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163\n/);
    const wrong = await runCara(["update", "verify", digest, "--bundle", bundle, "--certificate-identity", "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.1", "--certificate-oidc-issuer", issuer]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^Verification failed: bundle verification failed: /);
    const substring = await runCara(["update", "verify", digest, "--bundle", bundle, "--certificate-identity-regexp", "puremachinery", "--certificate-oidc-issuer", issuer]);
    assert.equal(substring.code, 1, "an identity regexp is anchored, never a substring match");
    const usage = await runCara(["update", "verify", digest, "--bundle", bundle, "--certificate-oidc-issuer", issuer]);
    assert.equal(usage.code, 2);
  });
});
