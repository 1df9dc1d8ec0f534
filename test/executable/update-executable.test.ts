/**
 * Self-update of the executable form end to end (issue 18): real platform executables built by
 * scripts/build-executable.mjs for each version, signed by a test trust root, served by a local
 * GitHub-compatible release server; a managed install made by the executable's own
 * `cara install`; the server started through the install's launcher (a copy of an executable,
 * no Node involved). An update with a restart, kill -9 in the middle of a download and right
 * after 'applying' then resume, and the automatic rollback of a version that never becomes ready.
 *
 * Slow (every version is a ~100 MB executable): it runs in `npm run test:executable`, not in
 * `npm test`.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { executableAssetName } from "../../src/executable-form.js";
import { LAUNCHER_PROTOCOL } from "../../src/update/launcher.js";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { startCli } from "../helpers/cli.js";
import {
  buildExecutable,
  cli,
  current,
  executableRelease,
  installDir,
  launcher,
  listeningPorts,
  releases,
  server,
  stateDir,
  status,
  useUpdateWorld,
  waitFor,
} from "../e2e/update-world.js";

const ASSET = executableAssetName()!;
useUpdateWorld(["0.9.2", "0.9.3", "0.9.4"], "executable");

/** The server's own pid (the launcher supervises it as a child). */
const launcherInfo = () => join(installDir, "bin", ".cara-launcher.json");
const serverPid = async (s: CaraServer) => (await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).json.pid as number;

describe("self-update of the executable form", { concurrency: false }, () => {
  let srv: CaraServer;

  test("the executable's cara install makes an executable install; its launcher runs with no Node on PATH", async () => {
    const exe = await buildExecutable("0.9.0");
    // An empty PATH: neither the installer nor the launcher may need a `node`.
    const env = { PATH: await tempDir() };
    const r = await runCara(["install", "--dir", installDir, "--version", "0.9.0", "--state-dir", stateDir], { executable: exe, env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Installed cara v0\\.9\\.0 into ${installDir}\\.\\n {2}Form: {14}executable \\(${ASSET}\\)\\n`));
    assert.equal(await current(), "versions/0.9.0");
    const installed = join(installDir, "versions", "0.9.0", "cara");
    assert.deepEqual(await readFile(installed), await readFile(exe));
    assert.equal((await stat(installed)).mode & 0o777, 0o755);
    assert.deepEqual(await readFile(launcher), await readFile(exe), "the launcher is a copy of the installed executable");
    const v = await runCara(["version"], { executable: launcher, env });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /0\.9\.0/);
    const usage = await runCara(["no-such-verb"], { executable: launcher, env });
    assert.equal(usage.code, 2, "a command's exit code passes through the launcher");
  });

  test("cara update --yes --restart downloads this host's executable, switches, and the launcher restarts on it", async () => {
    srv = await startCara({ stateDir, executable: launcher });
    // Ready, 0.9.0 records itself as the launcher (cara install's copy had an unknown protocol).
    await waitFor("the launcher's protocol to be recorded", async () =>
      JSON.parse(await readFile(launcherInfo(), "utf8")).protocol === LAUNCHER_PROTOCOL ? true : undefined,
    );
    assert.deepEqual(JSON.parse(await readFile(launcherInfo(), "utf8")), { protocol: LAUNCHER_PROTOCOL, version: "0.9.0" });
    server.clearLog();
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Updating from v0\.9\.0 to v0\.9\.1\.\.\.\nUpdate applied successfully\.\n/);
    assert.match(r.stdout, /Sigstore bundle verification: passed\n {2}Checksum verification: passed\n/);
    const downloads = server
      .requests()
      .map((q) => q.path)
      .filter((p) => !p.includes("/releases"))
      .map((p) => p.slice(p.lastIndexOf("/") + 1))
      .sort();
    assert.deepEqual(downloads, ["SHA256SUMS.txt", "SHA256SUMS.txt.bundle", ASSET, `${ASSET}.bundle`]);
    assert.equal(await current(), "versions/0.9.1");
    assert.deepEqual(await readFile(join(installDir, "versions", "0.9.1", "cara")), await readFile(await buildExecutable("0.9.1")));
    const port = await waitFor("the restarted server", () => listeningPorts(srv)[1]);
    const s = await waitFor("the marker to clear", async () => {
      const st = await status(port);
      return st.rollbackMarker?.state === "ROLLBACK_STATE_CLEARED" ? st : undefined;
    });
    assert.equal(s.currentVersion, "0.9.1");
    assert.equal(s.previousVersion, "0.9.0");
    assert.deepEqual(s.installedVersions, ["0.9.1", "0.9.0"]);
    // The launcher is still 0.9.0's: 0.9.1 brings the same launcher protocol, and only a newer one replaces it.
    assert.deepEqual(JSON.parse(await readFile(launcherInfo(), "utf8")), { protocol: LAUNCHER_PROTOCOL, version: "0.9.0" });
    assert.deepEqual(await readFile(launcher), await readFile(await buildExecutable("0.9.0")));
    (srv as { port: number }).port = port;
    await srv.stop();
  });

  test("kill -9 in the middle of the executable's download: the next start resumes it with HTTP Range and applies it", async () => {
    await rm(join(stateDir, "updates", "rollback.json"), { force: true });
    const v = "0.9.2";
    releases[v] = await executableRelease(v);
    server.setReleases(Object.values(releases));
    const artifact = releases[v]!.assets.find((a) => a.name === ASSET)!.body as Buffer;
    const half = Math.floor(artifact.length / 2);
    server.respond(new RegExp(`/${ASSET}$`), (_req, res) => {
      res.writeHead(200, { "content-length": String(artifact.length), "content-type": "application/octet-stream" });
      res.write(artifact.subarray(0, half)); // ...and never finishes
    });
    srv = await startCara({ stateDir, executable: launcher });
    const update = startCli(["update", "--yes", "--port", String(srv.port), "--state-dir", stateDir]);
    const part = join(stateDir, "updates", `${ASSET}.part`);
    await waitFor("part of the executable on disk", async () => existsSync(part) && (await stat(part)).size > 0);
    process.kill(await serverPid(srv), "SIGKILL");
    await srv.exited;
    assert.equal((await update.done).code, 1);
    const partSize = (await stat(part)).size;
    assert.ok(partSize > 0 && partSize <= half, String(partSize));
    const tx = JSON.parse(await readFile(join(stateDir, "updates", "transaction.json"), "utf8")) as { phase: string; state: string; assetName: string };
    assert.deepEqual([tx.state, tx.phase, tx.assetName], ["in_progress", "downloading", ASSET]);

    server.clearLog();
    srv = await startCara({ stateDir, executable: launcher });
    await waitFor("the resumed update to apply", async () => ((await current()) === `versions/${v}` ? true : undefined), 60_000);
    const gets = server.requests(new RegExp(`/${ASSET}$`));
    assert.equal(gets.length, 1);
    assert.equal(gets[0]!.range, `bytes=${partSize}-`);
    assert.deepEqual(await readFile(join(installDir, "versions", v, "cara")), artifact);
    // `current` is switched a moment before the transaction is marked applied: wait for the mark.
    await waitFor(
      "the transaction to be marked applied",
      async () => ((await status(srv.port)).transaction?.state === "UPDATE_TRANSACTION_STATE_APPLIED" ? true : undefined),
      10_000,
    );
    await srv.stop();
    // Its first start: 0.9.2 becomes ready and clears the marker.
    srv = await startCara({ stateDir, executable: launcher });
    await waitFor("0.9.2 to be ready", async () => {
      const st = await status(srv.port);
      return st.currentVersion === v && st.rollbackMarker?.state === "ROLLBACK_STATE_CLEARED" ? true : undefined;
    });
    await srv.stop();
  });

  test("kill -9 right after 'applying': the next start stages the verified executable without downloading it again and switches", async () => {
    const v = "0.9.3";
    releases[v] = await executableRelease(v);
    server.setReleases(Object.values(releases));
    srv = await startCara({ stateDir, executable: launcher, env: { CARA_TEST_UPDATE_PAUSE_AFTER: "applying" } });
    const update = startCli(["update", "--yes", "--version", v, "--port", String(srv.port), "--state-dir", stateDir]);
    const txFile = join(stateDir, "updates", "transaction.json");
    await waitFor("the transaction to reach applying", async () => {
      const tx = JSON.parse(await readFile(txFile, "utf8")) as { phase: string; version: string };
      return tx.version === v && tx.phase === "applying" ? true : undefined;
    });
    process.kill(await serverPid(srv), "SIGKILL");
    await srv.exited;
    assert.equal((await update.done).code, 1);
    assert.equal(await current(), "versions/0.9.2");
    server.clearLog();
    srv = await startCara({ stateDir, executable: launcher });
    const done = await waitFor(
      "the resumed update to finish",
      async () => {
        const tx = JSON.parse(await readFile(txFile, "utf8")) as { state: string; version: string };
        return tx.version === v && tx.state === "applied" ? tx : undefined;
      },
      60_000,
    );
    assert.equal(done.state, "applied");
    assert.equal(await current(), `versions/${v}`);
    assert.equal(server.requests(new RegExp(`/${ASSET}$`)).length, 0, "the verified executable is not downloaded again");
    assert.deepEqual(await readFile(join(installDir, "versions", v, "cara")), await readFile(await buildExecutable(v)));
    await srv.stop();
    srv = await startCara({ stateDir, executable: launcher });
    await waitFor(`${v} to be ready`, async () => {
      const st = await status(srv.port);
      return st.currentVersion === v && st.rollbackMarker?.state === "ROLLBACK_STATE_CLEARED" ? true : undefined;
    });
    await srv.stop();
  });

  test("a new executable that starts but never becomes ready is rolled back to the previous one after update.readyTimeoutMs", async () => {
    const configFile = join(stateDir, "config.json");
    const config = JSON.parse(await readFile(configFile, "utf8")) as Record<string, Record<string, unknown>>;
    // Not ready: a free-space floor no disk meets fails the disk check (for every version).
    await writeFile(
      configFile,
      JSON.stringify({ ...config, update: { ...config.update, readyTimeoutMs: 2000 }, health: { diskFreeFloorBytes: Number.MAX_SAFE_INTEGER } }),
    );
    const v = "0.9.4";
    releases[v] = await executableRelease(v);
    server.setReleases(Object.values(releases));
    srv = await startCara({ stateDir, executable: launcher });
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      "the rollback",
      async () => ((await readFile(join(stateDir, "updates", "rollback.json"), "utf8")).includes('"rolled_back"') ? true : undefined),
      60_000,
    );
    assert.equal(await current(), "versions/0.9.3");
    assert.ok(
      srv.lines.some((l) => l.includes("v0.9.4 did not become ready within 2 s after an update; exiting so the launcher rolls back")),
      srv.lines.join("\n"),
    );
    const port = await waitFor("the rolled-back server", () => listeningPorts(srv)[2]);
    const st = await status(port);
    assert.equal(st.currentVersion, "0.9.3");
    assert.equal(st.rollbackMarker?.state, "ROLLBACK_STATE_ROLLED_BACK");
    assert.match(st.rollbackMarker?.reason ?? "", /^v0\.9\.4 was started at .* but never became ready; rolled back to v0\.9\.3$/);
    assert.deepEqual(await readFile(launcher), await readFile(await buildExecutable("0.9.0")), "the launcher is untouched");
    await srv.stop();
    await writeFile(configFile, JSON.stringify(config));
  });
});
