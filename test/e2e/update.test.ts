/**
 * Self-update end to end: real releases built by `npm run release`, signed by a test trust root,
 * served by a local GitHub-compatible release server; a managed install made by `cara install`;
 * the server started through the install's launcher; updates, restart, automatic rollback of a
 * broken version, manual rollback (server up and down), and the offline verification of the
 * reference's real Sigstore bundle. Crash tests are in update-crash.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { cleanEnv, connectJson, ROOT, runCara, serveCara, startCara, type CaraServer } from "../helpers/cara.js";
import { runCli, startCli } from "../helpers/cli.js";
import { signedRelease, TEST_REPO } from "../update/fixtures.js";
import { startTufRepo } from "../update/tuf-kit.js";
import {
  buildBrokenRelease,
  cli,
  current,
  installDir,
  kit,
  launcher,
  listeningPorts,
  releases,
  releasesDir,
  server,
  stateDir,
  status,
  useUpdateWorld,
  waitFor,
  work,
} from "./update-world.js";

useUpdateWorld();

describe("self-update end to end", { concurrency: false }, () => {
  let srv: CaraServer;

  test("cara install creates the managed layout from a verified release", async () => {
    const r = await runCara(["install", "--dir", installDir, "--version", "0.9.0", "--state-dir", stateDir], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Installed cara v0\\.9\\.0 into ${installDir}\\.\\n`));
    assert.match(
      r.stdout,
      /Signing identity: {2}https:\/\/github\.com\/test\/cara\/\.github\/workflows\/release\.yml@refs\/tags\/v0\.9\.0\n {2}Trusted root: {6}configured\n/,
    );
    assert.equal(await current(), "versions/0.9.0");
    const v = spawnSync(process.execPath, [launcher, "version"], { encoding: "utf8", env: cleanEnv() });
    assert.match(v.stdout, /0\.9\.0/);
  });

  test("cara install with no configured root verifies with the root refreshed through TUF; with the mirror down the pinned root refuses the test CA", async () => {
    const tuf = await startTufRepo();
    try {
      tuf.publish(`${JSON.stringify(kit.trustedRootJson)}\n`);
      const state = join(work, "tuf-state");
      await mkdir(state, { recursive: true, mode: 0o700 });
      const update = { releasesUrl: server.baseUrl, repository: TEST_REPO, tufMirror: tuf.url, tufRoot: tuf.initialRootPath };
      await writeFile(join(state, "config.json"), JSON.stringify({ update }));
      const dir = join(work, "tuf-install");
      const r = await runCli(["install", "--dir", dir, "--version", "0.9.0", "--state-dir", state]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\n {2}Trusted root: {6}refreshed\n/);
      assert.ok(tuf.requests.includes("/targets/trusted_root.json"), tuf.requests.join(" "));

      await writeFile(join(state, "config.json"), JSON.stringify({ update: { ...update, tufMirror: "http://127.0.0.1:9" } }));
      const offline = await runCli(["install", "--dir", join(work, "tuf-install-2"), "--version", "0.9.0", "--state-dir", state]);
      assert.equal(offline.code, 1);
      assert.match(
        offline.stderr,
        /^Error: install failed: bundle verification failed: .* \(verified against the pinned trusted root; the TUF refresh before it failed: .*ECONNREFUSED.*\); nothing was installed\n$/,
      );
    } finally {
      await tuf.close();
    }
  });

  test("a git checkout says self-update does not apply, and how to update", async () => {
    const dev = await serveCara({ stateDir: join(work, "dev-state") });
    const r = await runCli(["update", "--yes", "--port", String(dev.port), "--state-dir", dev.stateDir]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^Error: self-update does not apply to this installation: running from a git checkout \(.*\); update with `git pull && npm ci && npm run build`/,
    );
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
    server.fail("/releases", [503]);
    const down = await cli(srv, ["update", "--check"]);
    assert.equal(down.code, 1);
    assert.equal(
      down.stderr,
      "Failed to check for updates: release source returned HTTP 503 (unexpected response)\nThis may be a temporary issue; retry in a moment.\n",
    );
  });

  test("a release signed for another identity is refused by the CLI, nothing applied", async () => {
    const evil = await signedRelease(kit, join(releasesDir, "0.9.1", "carapace-0.9.1.tar.gz"), "0.9.1", {
      identity: "https://github.com/evil/cara/.github/workflows/release.yml@refs/tags/v0.9.1",
    });
    server.setReleases([releases["0.9.0"]!, evil]);
    const r = await cli(srv, ["update", "--yes"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Update failed while verifying: bundle verification failed: .*identity/m);
    assert.match(r.stderr, /^Nothing was applied; resolve the cause, then run `cara update` again \(it starts a fresh transaction\)\.$/m);
    assert.equal(await current(), "versions/0.9.0");
    server.setReleases(Object.values(releases));
  });

  test("a slow release source is named after a second; Ctrl-C during a download says the transaction stays resumable", async () => {
    server.respond("/releases", (_req, res) => {
      setTimeout(() => {
        res.writeHead(503, { "content-type": "application/json" });
        res.end("{}");
      }, 1_500);
    });
    const slow = await cli(srv, ["update", "--check"]);
    assert.equal(slow.code, 1);
    assert.equal(
      slow.stderr,
      `checking ${server.baseUrl}...\nFailed to check for updates: release source returned HTTP 503 (unexpected response)\nThis may be a temporary issue; retry in a moment.\n`,
    );

    // The log still holds the previous test's download of this asset: wait for this one's.
    server.clearLog();
    server.hangNext("/carapace-0.9.1.tar.gz");
    const stop = new AbortController();
    const run = startCli(["update", "--yes", "--port", String(srv.port), "--state-dir", stateDir], { signal: stop.signal });
    await waitFor("the download to start", () => server.requests("/carapace-0.9.1.tar.gz").length > 0);
    stop.abort();
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    // Interrupted while the download hung (not before it began): the next test must not find the
    // hang still armed, or its download waits out the 300 s stall timeout.
    assert.equal(server.requests("/carapace-0.9.1.tar.gz")[0]?.status, -1);
    assert.match(
      r.stderr,
      /(^|\n)Interrupted: the update to v0\.9\.1 stops where it is and its transaction stays resumable \(nothing is switched before it is verified and applied\)\. Run `cara update` to resume it; `cara update --status` shows where it stopped\.\n$/,
    );
    const st = await waitFor("the interruption to be recorded", async () => {
      const s = await status(srv.port);
      return s.transaction?.state === "UPDATE_TRANSACTION_STATE_FAILED" ? s : undefined;
    });
    assert.equal(st.transaction?.phase, "UPDATE_PHASE_FAILED");
    assert.equal(await current(), "versions/0.9.0");
    // Leave no transaction for the next test, which starts a fresh update.
    assert.equal((await cli(srv, ["update", "--reset-transaction"])).code, 0);
  });

  test("cara update --yes --restart applies v0.9.1 and the server comes back on it; the marker clears", async () => {
    // stderr is a terminal: the download draws its progress in place and ends with one summary line.
    const r = await runCli(["update", "--yes", "--restart", "--port", String(srv.port), "--state-dir", stateDir], { ttyInput: true });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /(?:\r\x1b\[2KDownloading [\d.]+ (?:B|KiB|MiB) \/ [\d.]+ (?:B|KiB|MiB) \(\d+%\)(?: [\d.]+ (?:B|KiB|MiB|GiB)\/s)?)+\r\x1b\[2KDownloaded [\d.]+ (?:B|KiB|MiB) in \d+\.\d s\n/,
    );
    assert.equal(r.stderr.match(/Downloaded /g)?.length, 1);
    assert.doesNotMatch(r.stderr.slice(r.stderr.indexOf("Downloaded ")), /Downloading /, "no progress line after the summary");
    assert.ok(r.stderr.endsWith("\n"));
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

  test("a broken new version is rolled back by the launcher as soon as it dies", async () => {
    releases["0.9.2"] = await signedRelease(kit, await buildBrokenRelease("0.9.2"), "0.9.2");
    server.setReleases(Object.values(releases));
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    // The restarted child cannot start; the launcher switches back and starts v0.9.1 again.
    const port = await waitFor("the rolled-back server", () => listeningPorts(srv)[2], 30_000);
    (srv as { port: number }).port = port;
    assert.ok(
      srv.lines.some((l) => l.includes("this build is broken")),
      srv.lines.join("\n"),
    );
    assert.ok(
      srv.lines.some((l) => l.includes("cara launcher: v0.9.2 was started at") && l.includes("never became ready; rolled back to v0.9.1")),
      srv.lines.join("\n"),
    );
    assert.equal(await current(), "versions/0.9.1");
    const st = await status(srv.port);
    assert.equal(st.currentVersion, "0.9.1");
    assert.equal(st.rollbackMarker?.state, "ROLLBACK_STATE_ROLLED_BACK");
    assert.match(st.rollbackMarker?.reason ?? "", /never became ready/);
    const plain = await cli(srv, ["update", "--status"]);
    assert.match(plain.stdout, /Rollback marker: {3}rolled_back \(v0\.9\.1 -> v0\.9\.2/);
    assert.match(plain.stdout, /\nTrusted root: {6}\/\S+\/trusted_root\.json \(update\.trustedRoot; never refreshed\)\n/);
    // JSON leaves out false and absent fields.
    assert.deepEqual([st.trustedRootOrigin, st.trustRefresh, st.trustedRootRefreshedAtMs], ["configured", undefined, undefined]);
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
    assert.equal(
      refused.stderr,
      "Error: the previous version v0.9.2 was rolled back automatically (it never became ready); name the version to switch to with --version (installed: v0.9.2, v0.9.1, v0.9.0)\n",
    );
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

  test("a server whose launcher is killed -9 shuts itself down instead of lingering", async () => {
    srv = await startCara({ stateDir, bin: launcher });
    const pid = (await connectJson(srv, "carapace.ops.v1.OpsService/GetStatus", {}, srv.token)).json.pid as number;
    srv.proc.kill("SIGKILL");
    await srv.exited;
    await waitFor(
      "the orphaned server to stop",
      () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      },
      15_000,
    );
  });

  test("cara update verify: the reference's real bundle verifies offline by digest, any other identity fails", async () => {
    const bundle = join(ROOT, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
    const digest = "sha256:acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
    const issuer = "https://token.actions.githubusercontent.com";
    const ok = await runCli([
      "update",
      "verify",
      digest,
      "--bundle",
      bundle,
      "--certificate-identity",
      "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.0",
      "--certificate-oidc-issuer",
      issuer,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^Verified OK\n {2}Artifact SHA-256: {2}acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163\n/);
    const wrong = await runCli([
      "update",
      "verify",
      digest,
      "--bundle",
      bundle,
      "--certificate-identity",
      "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.1",
      "--certificate-oidc-issuer",
      issuer,
    ]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^Verification failed: bundle verification failed: /);
    const substring = await runCli([
      "update",
      "verify",
      digest,
      "--bundle",
      bundle,
      "--certificate-identity-regexp",
      "puremachinery",
      "--certificate-oidc-issuer",
      issuer,
    ]);
    assert.equal(substring.code, 1, "an identity regexp is anchored, never a substring match");
    const usage = await runCli(["update", "verify", digest, "--bundle", bundle, "--certificate-oidc-issuer", issuer]);
    assert.equal(usage.code, 2);
  });
});
