/**
 * Self-update crash tests end to end: kill -9 of the server in the middle of a download and right
 * after each phase, then the next start completes the update without downloading the verified
 * artifact again; and a version that never becomes ready is rolled back after the timeout.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { connectJson, startCara, type CaraServer } from "../helpers/cara.js";
import { runCli, startCli } from "../helpers/cli.js";
import { signedRelease } from "../update/fixtures.js";
import {
  buildRelease,
  cli,
  current,
  installDir,
  kit,
  launcher,
  listeningPorts,
  releases,
  server,
  stateDir,
  status,
  useUpdateWorld,
  waitFor,
} from "./update-world.js";

useUpdateWorld(["0.9.3", "0.9.4", "0.9.5", "0.9.6", "0.9.7", "0.9.8"]);

describe("self-update survives kill -9 and rolls back a version that is never ready", { concurrency: false }, () => {
  let srv: CaraServer;

  test("set-up: a managed install of v0.9.1", async () => {
    const r = await runCli(["install", "--dir", installDir, "--version", "0.9.1", "--state-dir", stateDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await current(), "versions/0.9.1");
  });

  test("kill -9 in the middle of a download: the next start resumes the update with HTTP Range", async () => {
    await rm(join(stateDir, "updates", "rollback.json"), { force: true });
    const v = "0.9.3";
    releases[v] = await signedRelease(kit, await buildRelease(v), v);
    server.setReleases(Object.values(releases));
    const artifactName = `carapace-${v}.tar.gz`;
    const artifact = releases[v]!.assets.find((a) => a.name === artifactName)!.body as Buffer;
    const half = Math.floor(artifact.length / 2);
    server.respond(`/${artifactName}`, (_req, res) => {
      res.writeHead(200, { "content-length": String(artifact.length), "content-type": "application/octet-stream" });
      res.write(artifact.subarray(0, half)); // ...and never finishes
    });
    srv = await startCara({ stateDir, bin: launcher });
    // The CLI (in this process) drives the update; it fails when the server dies under it.
    const update = startCli(["update", "--yes", "--port", String(srv.port), "--state-dir", stateDir]);
    const out = () => update.stdout.text + update.stderr.text;
    const part = join(stateDir, "updates", `${artifactName}.part`);
    await waitFor("part of the artifact on disk", async () => existsSync(part) && (await readFile(part)).length > 0).catch((err: Error) => {
      throw new Error(`${err.message}\ncara update said: ${out()}\nserver: ${srv.lines.slice(-5).join("\n")}`);
    });
    // kill -9 the server itself (the launcher supervises it as a child and then exits too).
    const serverPid = (await connectJson(srv, "carapace.ops.v1.OpsService/GetStatus", {}, srv.token)).json.pid as number;
    process.kill(serverPid, "SIGKILL");
    await srv.exited;
    assert.equal((await update.done).code, 1, out());
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
    // `current` is switched a moment before the transaction is marked applied (its own durable
    // write): wait for the mark rather than read it once.
    await waitFor(
      "the transaction to be marked applied",
      async () => ((await status(srv.port)).transaction?.state === "UPDATE_TRANSACTION_STATE_APPLIED" ? true : undefined),
      10_000,
    );
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
      releases[v] = await signedRelease(kit, await buildRelease(v), v);
      server.setReleases(Object.values(releases));
      srv = await startCara({ stateDir, bin: launcher, env: { CARA_TEST_UPDATE_PAUSE_AFTER: point } });
      const update = startCli(["update", "--yes", "--version", v, "--port", String(srv.port), "--state-dir", stateDir]);
      const txFile = join(stateDir, "updates", "transaction.json");
      await waitFor(`the transaction to reach ${point}`, async () => {
        if (point === "switched") return (await current()) === `versions/${v}` ? true : undefined;
        const tx = JSON.parse(await readFile(txFile, "utf8")) as { phase: string; version: string };
        return tx.version === v && tx.phase === point ? true : undefined;
      });
      const serverPid = (await connectJson(srv, "carapace.ops.v1.OpsService/GetStatus", {}, srv.token)).json.pid as number;
      process.kill(serverPid, "SIGKILL");
      await srv.exited;
      assert.equal((await update.done).code, 1);
      server.clearLog();
      srv = await startCara({ stateDir, bin: launcher });
      const done = await waitFor(
        "the resumed update to finish",
        async () => {
          const tx = JSON.parse(await readFile(txFile, "utf8")) as { state: string; version: string };
          return tx.version === v && tx.state === "applied" ? tx : undefined;
        },
        30_000,
      );
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
    await writeFile(
      configFile,
      JSON.stringify({ ...config, update: { ...config.update, readyTimeoutMs: 2000 }, health: { diskFreeFloorBytes: Number.MAX_SAFE_INTEGER } }),
    );
    const v = "0.9.8";
    releases[v] = await signedRelease(kit, await buildRelease(v), v);
    server.setReleases(Object.values(releases));
    srv = await startCara({ stateDir, bin: launcher });
    const r = await cli(srv, ["update", "--yes", "--restart"]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      "the rollback",
      async () => ((await readFile(join(stateDir, "updates", "rollback.json"), "utf8")).includes('"rolled_back"') ? true : undefined),
      30_000,
    );
    assert.equal(await current(), "versions/0.9.7");
    assert.ok(
      srv.lines.some((l) => l.includes("v0.9.8 did not become ready within 2 s after an update; exiting so the launcher rolls back")),
      srv.lines.join("\n"),
    );
    const port = await waitFor("the rolled-back server", () => listeningPorts(srv)[2]);
    const st = await status(port);
    assert.equal(st.currentVersion, "0.9.7");
    assert.equal(st.rollbackMarker?.state, "ROLLBACK_STATE_ROLLED_BACK");
    await srv.stop();
    await writeFile(configFile, JSON.stringify(config));
  });
});
