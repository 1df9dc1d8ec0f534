import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { ensureLayout, switchCurrent, unpackRelease } from "../../src/update/install-layout.js";
import { UpdateManager, type Progress, type UpdateOutcome } from "../../src/update/manager.js";
import { loadMarker } from "../../src/update/rollback-marker.js";
import { resolveUpdateSettings } from "../../src/update/settings.js";
import { loadTransaction, persistTransaction, type UpdateTransaction } from "../../src/update/transaction.js";
import { startReleaseServer, type FakeRelease, type ReleaseServer } from "../helpers/release-server.js";
import { tempDir } from "../helpers/cara.js";
import { buildFakeArtifact, identityFor, sha256, signedRelease, TEST_REPO } from "./fixtures.js";
import { createTestTrustRoot, type TestTrustRoot } from "./sigstore-kit.js";
import { startTufRepo } from "./tuf-kit.js";
import { tufDir } from "../../src/update/trust-root.js";
import { defaultTrustedRootPath } from "../../src/update/sigstore-bundle.js";

let kit: TestTrustRoot;
let work: string;
let rootPath: string;
let server: ReleaseServer;
const artifacts: Record<string, string> = {};

before(async () => {
  kit = await createTestTrustRoot();
  work = await tempDir();
  rootPath = join(work, "trusted_root.json");
  await kit.writeTo(rootPath);
  for (const v of ["0.9.0", "0.9.1", "0.8.0", "1.0.0-beta.1"])
    artifacts[v] = await buildFakeArtifact(work, v, v === "0.9.1" ? { "dist/blob.bin": randomBytes(512 * 1024) } : {});
  server = await startReleaseServer();
});
after(async () => server.close());

let counter = 0;
async function setup(releases: FakeRelease[], opts: { running?: string; retryDelaysMs?: number[]; update?: Record<string, unknown> } = {}) {
  server.setReleases(releases);
  server.clearLog();
  const dir = join(work, `case-${++counter}`);
  const installDir = join(dir, "install");
  const updatesDir = join(dir, "state", "updates");
  await mkdir(updatesDir, { recursive: true, mode: 0o700 });
  const running = opts.running ?? "0.9.0";
  await unpackRelease(artifacts[running]!, installDir, running, sha256(await readFile(artifacts[running]!)));
  await ensureLayout(installDir);
  await switchCurrent(installDir, running);
  const settings = resolveUpdateSettings({
    update: { releasesUrl: server.baseUrl, repository: TEST_REPO, trustedRoot: rootPath, retryDelaysMs: opts.retryDelaysMs ?? [20, 40, 80], ...opts.update },
  });
  const backups: string[] = [];
  const manager = new UpdateManager({
    updatesDir,
    settings,
    runningVersion: running,
    install: { managed: true, installDir, runningVersion: running },
    logger: pino({ level: "silent" }),
    backup: async (v) => {
      const p = join(dir, `pre-update-${v}.tar.gz`);
      await writeFile(p, "backup");
      backups.push(p);
      return p;
    },
  });
  const progress: Progress[] = [];
  const run = (req: Partial<Parameters<UpdateManager["start"]>[0]> = {}) => manager.start({ yes: true, ...req }, (p) => progress.push(p));
  return { dir, installDir, updatesDir, manager, progress, run, backups };
}

const current = (installDir: string) => readlink(join(installDir, "current"));

/** The next request for `path` never gets an answer; resolves when it has arrived. */
function hangOn(path: string): Promise<void> {
  return new Promise((resolve) => server.respond(path, () => resolve()));
}

async function assertNothingApplied(env: { installDir: string }, version: string) {
  assert.equal(await current(env.installDir), "versions/0.9.0");
  assert.equal(existsSync(join(env.installDir, "versions", version)), false, "the version must not be unpacked");
}

describe("update transaction (manager, real release server, test trust root)", () => {
  test("applies a signed release: download, verify, backup, unpack, marker, switch", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.0"]!, "0.9.0"), await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const out = await env.run();
    assert.equal(out.outcome, "applied", out.error?.message);
    assert.equal(out.fromVersion, "0.9.0");
    assert.equal(out.toVersion, "0.9.1");
    assert.equal(out.sha256, sha256(await readFile(artifacts["0.9.1"]!)));
    assert.equal(out.bundleVerified, true);
    assert.equal(out.checksumVerified, true);
    assert.equal(out.signingIdentity, identityFor("0.9.1"));
    assert.equal(out.installPath, join(env.installDir, "versions", "0.9.1"));
    assert.equal(out.restartNeeded, true);
    assert.deepEqual(env.backups, [out.preUpdateBackupPath]);
    assert.equal(await current(env.installDir), "versions/0.9.1");
    assert.equal(await readlink(join(env.installDir, "previous")), "versions/0.9.0");
    const tx = await loadTransaction(env.updatesDir);
    assert.equal(tx?.state, "applied");
    assert.equal(tx?.phase, "applied");
    assert.equal(tx?.attempt, 1);
    const marker = await loadMarker(env.updatesDir);
    assert.equal(marker?.startupState, "pending");
    assert.equal(marker?.fromVersion, "0.9.0");
    assert.equal(marker?.toVersion, "0.9.1");
    assert.equal(marker?.backupPath, out.preUpdateBackupPath);
    const phases = [...new Set(env.progress.map((p) => p.phase))];
    assert.deepEqual(phases, ["downloading", "downloaded", "verified", "applying"]);
    const status = await env.manager.status();
    assert.deepEqual(status.installedVersions, ["0.9.1", "0.9.0"]);
    assert.equal(status.previousVersion, "0.9.0");
    assert.equal(status.resumePending, false);
  });

  test("already up to date, downgrade refused without --allow-downgrade, pre-releases only on beta", async () => {
    const env = await setup([
      await signedRelease(kit, artifacts["0.9.0"]!, "0.9.0"),
      await signedRelease(kit, artifacts["0.8.0"]!, "0.8.0"),
      await signedRelease(kit, artifacts["1.0.0-beta.1"]!, "1.0.0-beta.1", { prerelease: true }),
    ]);
    assert.equal((await env.run()).outcome, "already_up_to_date");
    assert.equal(existsSync(join(env.updatesDir, "transaction.json")), false);
    await assert.rejects(env.run({ version: "0.8.0" }), { kind: "precondition", message: "v0.8.0 is older than the running v0.9.0; pass --allow-downgrade" });
    const check = await env.manager.check({});
    assert.deepEqual([check.latestVersion, check.updateAvailable], ["0.9.0", false]);
    const beta = await env.manager.check({ channel: "beta" });
    assert.deepEqual([beta.latestVersion, beta.updateAvailable, beta.prerelease], ["1.0.0-beta.1", true, true]);
    const down = await env.manager.check({ version: "v0.8.0" });
    assert.deepEqual([down.updateAvailable, down.downgrade], [false, true]);
    assert.equal((await env.manager.check({ version: "0.8.0", allowDowngrade: true })).updateAvailable, true);
    await assert.rejects(env.manager.check({ channel: "nightly" }), { kind: "invalid", message: "unknown update channel: nightly (valid: stable, beta)" });
    await assert.rejects(env.manager.check({ version: "latest" }), { kind: "invalid", message: "invalid version 'latest': not a semantic version" });
    const applied = await env.run({ version: "0.8.0", allowDowngrade: true });
    assert.equal(applied.outcome, "applied");
    assert.equal(await current(env.installDir), "versions/0.8.0");
  });

  const tamperCases: { name: string; make: () => Promise<FakeRelease>; error: RegExp }[] = [
    {
      name: "wrong identity (another tag)",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { identity: identityFor("9.9.9") }),
      error: /^bundle verification failed: .*identity/,
    },
    {
      name: "identity that only contains the expected one",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { identity: `${identityFor("0.9.1")}-evil` }),
      error: /^bundle verification failed: .*identity/,
    },
    {
      name: "identity of another repository",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { identity: identityFor("0.9.1", "evil/cara") }),
      error: /^bundle verification failed: .*identity/,
    },
    {
      name: "wrong issuer",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { issuer: "https://accounts.google.com" }),
      error: /^bundle verification failed: .*issuer/,
    },
    {
      name: "modified artifact",
      make: async () => {
        const bytes = await readFile(artifacts["0.9.1"]!);
        bytes[bytes.length - 10]! ^= 0xff;
        return signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { servedArtifact: bytes });
      },
      error: /^bundle verification failed: .*(digest|SHA-256)/i,
    },
    {
      name: "truncated bundle",
      make: async () =>
        signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", {
          bundleBytes: Buffer.from(
            await kit.sign(
              { digest: sha256(await readFile(artifacts["0.9.1"]!)) },
              { identity: identityFor("0.9.1"), issuer: "https://token.actions.githubusercontent.com" },
            ),
          ).subarray(0, 300),
        }),
      error: /^bundle parse failed: /,
    },
    {
      name: "malformed bundle",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { bundleBytes: '{"kindVersion":"oops"}' }),
      error: /^bundle parse failed: /,
    },
    {
      name: "missing transparency-log entry",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { tamper: "missingTlog" }),
      error: /^bundle verification failed: /,
    },
    {
      name: "certificate from another CA",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { tamper: "otherCa" }),
      error: /^bundle verification failed: /,
    },
    {
      name: "SHA256SUMS.txt mismatch",
      make: () => signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { sums: `${"0".repeat(64)}  carapace-0.9.1.tar.gz\n` }),
      error: /^SHA-256 mismatch: SHA256SUMS.txt lists 0{64} for carapace-0.9.1.tar.gz/,
    },
  ];
  for (const c of tamperCases) {
    test(`refuses and applies nothing: ${c.name}`, async () => {
      const env = await setup([await signedRelease(kit, artifacts["0.9.0"]!, "0.9.0"), await c.make()]);
      const out = await env.run();
      assert.equal(out.outcome, "failed");
      assert.match(out.error!.message, c.error);
      assert.equal(out.error!.retryable, false);
      assert.equal(out.error!.phase, "verified");
      await assertNothingApplied(env, "0.9.1");
      assert.deepEqual(env.backups, [], "no pre-update backup for an unverified artifact");
      const tx = await loadTransaction(env.updatesDir);
      assert.deepEqual([tx?.state, tx?.phase, tx?.failedPhase, tx?.retryable, tx?.attempt], ["failed", "failed", "verified", false, 1]);
      assert.equal(existsSync(join(env.updatesDir, "carapace-0.9.1.tar.gz")), false, "untrusted staged files are removed");
      assert.equal(await loadMarker(env.updatesDir), undefined);
    });
  }

  test("a release without the bundle is refused before anything is downloaded", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1", { omit: ["carapace-0.9.1.tar.gz.bundle"] })]);
    await assert.rejects(env.run(), { kind: "not_found", message: /^release v0\.9\.1 has no asset 'carapace-0\.9\.1\.tar\.gz\.bundle'/ });
    assert.equal(env.progress.length, 0);
    assert.equal(server.requests(/download/).length, 0);
    await assertNothingApplied(env, "0.9.1");
  });

  test("503 and 429 are retried with backoff; then it applies", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    server.fail("/carapace-0.9.1.tar.gz", [503, 429]);
    const out = await env.run();
    assert.equal(out.outcome, "applied", out.error?.message);
    assert.equal(server.requests(/\/carapace-0\.9\.1\.tar\.gz$/).length, 3);
    const retries = env.progress.filter((p) => p.message.startsWith("retrying in"));
    assert.equal(retries.length, 2);
    assert.match(retries[0]!.message, /503/);
    assert.match(retries[1]!.message, /429/);
    assert.equal((await loadTransaction(env.updatesDir))?.attempt, 3);
  });

  test("the retry budget is bounded: 3 failures stop with retryable false", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    server.fail("/carapace-0.9.1.tar.gz", [503, 503, 503]);
    const out = await env.run();
    assert.equal(out.outcome, "failed");
    assert.equal(out.error!.message, "gave up after 3 attempts (last: artifact download returned HTTP 503 for carapace-0.9.1.tar.gz)");
    assert.equal(out.error!.retryable, false);
    assert.equal(out.error!.phase, "downloading");
    await assertNothingApplied(env, "0.9.1");
    // The next run starts a fresh transaction and succeeds.
    const again = await env.run();
    assert.equal(again.outcome, "applied");
    assert.equal(again.resumed, false);
  });

  test("a cut-off download continues with HTTP Range", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    server.truncateNext("/carapace-0.9.1.tar.gz", 100_000);
    const out = await env.run();
    assert.equal(out.outcome, "applied", out.error?.message);
    const gets = server.requests(/\/carapace-0\.9\.1\.tar\.gz$/);
    assert.equal(gets.length, 2);
    assert.equal(gets[1]!.range, "bytes=100000-");
  });

  for (const phase of ["downloaded", "verified", "applying"] as const) {
    test(`interrupted after '${phase}': the rerun resumes without downloading the artifact again`, async () => {
      const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
      // What a kill -9 leaves: staged files on disk and the transaction at that phase.
      const release = (await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")).assets;
      server.setReleases([{ tag: "v0.9.1", assets: release }]);
      for (const a of release) {
        const name = a.name.startsWith("SHA256SUMS") ? a.name.replace("SHA256SUMS", "SHA256SUMS-0.9.1") : a.name;
        await writeFile(join(env.updatesDir, name), a.body!);
      }
      const staged = join(env.updatesDir, "carapace-0.9.1.tar.gz");
      const tx: UpdateTransaction = {
        id: "0b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
        version: "0.9.1",
        assetName: "carapace-0.9.1.tar.gz",
        state: "in_progress",
        attempt: 1,
        maxAttempts: 3,
        startedAtMs: Date.now() - 1000,
        updatedAtMs: Date.now(),
        stagedPath: staged,
        bundlePath: `${staged}.bundle`,
        sha256: sha256(await readFile(staged)),
        lastError: null,
        phase,
        retryable: true,
        applyConfirmedUntilMs: Date.now() + 60_000,
        fromVersion: "0.9.0",
      };
      await persistTransaction(env.updatesDir, tx);
      assert.equal((await env.manager.status()).resumePending, true);
      const out = await env.run();
      assert.equal(out.outcome, "applied", out.error?.message);
      assert.equal(out.resumed, true);
      assert.equal(server.requests(/download/).length, 0, "nothing is downloaded again");
      assert.equal((await loadTransaction(env.updatesDir))?.attempt, 2);
      assert.equal(await current(env.installDir), "versions/0.9.1");
    });
  }

  test("a staged artifact that no longer matches its recorded SHA-256 is downloaded again", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const staged = join(env.updatesDir, "carapace-0.9.1.tar.gz");
    await writeFile(staged, "garbage");
    await persistTransaction(env.updatesDir, {
      id: "1b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
      version: "0.9.1",
      assetName: "carapace-0.9.1.tar.gz",
      state: "in_progress",
      attempt: 1,
      maxAttempts: 3,
      startedAtMs: Date.now(),
      updatedAtMs: Date.now(),
      stagedPath: staged,
      bundlePath: `${staged}.bundle`,
      sha256: "a".repeat(64),
      lastError: null,
      phase: "downloaded",
      retryable: true,
    });
    const out = await env.run();
    assert.equal(out.outcome, "applied", out.error?.message);
    assert.equal(server.requests(/\/carapace-0\.9\.1\.tar\.gz$/).length, 1);
  });

  test("a corrupt transaction fails closed, naming the file and the way out", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    await writeFile(join(env.updatesDir, "transaction.json"), "{not json");
    await assert.rejects(env.run(), (err: Error & { kind: string }) => {
      assert.equal(err.kind, "precondition");
      assert.match(
        err.message,
        new RegExp(`^update transaction '${join(env.updatesDir, "transaction.json")}' is corrupt: not valid JSON .*cara update --reset-transaction`),
      );
      return true;
    });
    const status = await env.manager.status();
    assert.match(status.transactionError ?? "", /is corrupt/);
    await assertNothingApplied(env, "0.9.1");
  });

  test("one update at a time: a second run is refused while the first holds the lock", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const stuck = hangOn("/carapace-0.9.1.tar.gz.bundle");
    const stop = new AbortController();
    const first = env.manager.start({ yes: true }, () => {}, stop.signal);
    await stuck; // the first run holds the lock, waiting for the bundle
    assert.equal((await env.manager.status()).inProgress, true);
    await assert.rejects(env.run(), { kind: "precondition", message: `an update is already in progress (pid ${process.pid})` });
    stop.abort();
    const out: UpdateOutcome = await first;
    assert.equal(out.outcome, "failed");
  });

  test("an automatic resume after the confirmation expired does not apply", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    await persistTransaction(env.updatesDir, {
      id: "2b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
      version: "0.9.1",
      assetName: "carapace-0.9.1.tar.gz",
      state: "in_progress",
      attempt: 0,
      maxAttempts: 3,
      startedAtMs: Date.now() - 3_600_000,
      updatedAtMs: Date.now() - 3_600_000,
      stagedPath: null,
      bundlePath: null,
      sha256: null,
      lastError: null,
      phase: "created",
      retryable: true,
      applyConfirmedUntilMs: Date.now() - 2_700_000,
    });
    const out = await env.manager.resumeAtStart(new AbortController().signal);
    assert.equal(out?.outcome, "failed");
    assert.match(out!.error!.message, /^stale update transaction 2b6f5a0e-.* requires fresh operator confirmation before applying/);
    assert.equal(server.requests().length, 0, "checked before any network access");
    const tx = await loadTransaction(env.updatesDir);
    assert.deepEqual([tx?.state, tx?.failedPhase, tx?.retryable], ["failed", "created", false]);
    await assertNothingApplied(env, "0.9.1");
    // An explicit rerun starts fresh and applies.
    assert.equal((await env.run()).outcome, "applied");
  });

  test("a transaction interrupted at its last attempt stops cleanly; the next run starts fresh", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    await persistTransaction(env.updatesDir, {
      id: "3b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
      version: "0.9.1",
      assetName: "carapace-0.9.1.tar.gz",
      state: "in_progress",
      attempt: 3,
      maxAttempts: 3,
      startedAtMs: Date.now(),
      updatedAtMs: Date.now(),
      stagedPath: null,
      bundlePath: null,
      sha256: null,
      lastError: null,
      phase: "downloading",
      retryable: true,
      applyConfirmedUntilMs: Date.now() + 60_000,
    });
    const out = await env.run();
    assert.equal(out.outcome, "failed");
    assert.equal(out.error!.message, "update transaction retry budget exhausted (3/3); the next `cara update` starts a fresh transaction");
    assert.equal(server.requests(/download/).length, 0);
    const tx = await loadTransaction(env.updatesDir);
    assert.deepEqual([tx?.state, tx?.retryable, tx?.attempt], ["failed", false, 3]);
    const again = await env.run();
    assert.equal(again.outcome, "applied");
    assert.equal(again.resumed, false);
  });

  test("an interrupted run (shutdown, client gone) stays resumable and the attempt is not counted", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const downloading = hangOn("/carapace-0.9.1.tar.gz");
    const controller = new AbortController();
    const running = env.manager.start({ yes: true }, () => {}, controller.signal);
    await downloading;
    controller.abort();
    const out = await running;
    assert.equal(out.outcome, "failed");
    assert.equal(out.error!.retryable, true);
    const tx = await loadTransaction(env.updatesDir);
    assert.deepEqual([tx?.state, tx?.retryable, tx?.attempt, tx?.failedPhase], ["failed", true, 0, "downloading"]);
    assert.equal((await env.manager.status()).resumePending, true);
    const resumed = await env.manager.resumeAtStart(new AbortController().signal);
    assert.equal(resumed?.outcome, "applied", resumed?.error?.message);
    assert.equal(resumed?.resumed, true);
  });

  test("a resumed transaction whose version is already current is marked applied, not redone", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const digest = sha256(await readFile(artifacts["0.9.1"]!));
    await unpackRelease(artifacts["0.9.1"]!, env.installDir, "0.9.1", digest);
    await switchCurrent(env.installDir, "0.9.1");
    await persistTransaction(env.updatesDir, {
      id: "4b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
      version: "0.9.1",
      assetName: "carapace-0.9.1.tar.gz",
      state: "in_progress",
      attempt: 1,
      maxAttempts: 3,
      startedAtMs: Date.now(),
      updatedAtMs: Date.now(),
      stagedPath: null,
      bundlePath: null,
      sha256: digest,
      lastError: null,
      phase: "applying",
      retryable: true,
      applyConfirmedUntilMs: Date.now() - 1,
    });
    const out = await env.manager.resumeAtStart(new AbortController().signal);
    assert.equal(out?.outcome, "applied");
    assert.equal(server.requests().length, 0);
    assert.deepEqual(env.backups, []);
    assert.equal((await loadTransaction(env.updatesDir))?.state, "applied");
  });

  test("a version the launcher rolled back is not applied again by a resume", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    await writeFile(
      join(env.updatesDir, "rollback.json"),
      JSON.stringify({
        startupState: "rolled_back",
        fromVersion: "0.9.0",
        toVersion: "0.9.1",
        installDir: env.installDir,
        appliedAtMs: 1,
        rolledBackAtMs: 2,
        reason: "v0.9.1 never became ready",
      }),
    );
    await persistTransaction(env.updatesDir, {
      id: "5b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
      version: "0.9.1",
      assetName: "carapace-0.9.1.tar.gz",
      state: "in_progress",
      attempt: 1,
      maxAttempts: 3,
      startedAtMs: Date.now(),
      updatedAtMs: Date.now(),
      stagedPath: null,
      bundlePath: null,
      sha256: null,
      lastError: null,
      phase: "applying",
      retryable: true,
      applyConfirmedUntilMs: Date.now() + 60_000,
    });
    const out = await env.manager.resumeAtStart(new AbortController().signal);
    assert.equal(out?.outcome, "failed");
    assert.match(out!.error!.message, /^v0\.9\.1 was rolled back \(v0\.9\.1 never became ready\); not applying it again/);
    await assertNothingApplied(env, "0.9.1");
  });

  test("a release source that answers another version than the pinned one is refused", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    server.respond("/releases/tags/v0.9.5", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ tag_name: "v0.9.1", html_url: "http://x/", assets: [] }));
    });
    await assert.rejects(env.run({ version: "0.9.5" }), { kind: "precondition", message: /^release source answered v0\.9\.1 when asked for v0\.9\.5/ });
  });

  test("rollback switches current back and records it; unknown versions are refused", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    assert.equal((await env.run()).outcome, "applied");
    await assert.rejects(env.manager.rollback({ targetVersion: "0.7.0" }), {
      kind: "not_found",
      message: `version v0.7.0 is not installed in ${join(env.installDir, "versions")}`,
    });
    const r = await env.manager.rollback({ reason: "channels broke" });
    assert.deepEqual([r.fromVersion, r.toVersion, r.restartNeeded], ["0.9.1", "0.9.0", true]);
    assert.equal(await current(env.installDir), "versions/0.9.0");
    const marker = await loadMarker(env.updatesDir);
    assert.equal(marker?.startupState, "rolled_back");
    assert.equal(marker?.reason, "rolled back by hand: channels broke");
    await assert.rejects(env.manager.rollback({ restoreState: true, targetVersion: "0.9.1" }), {
      message: "no pre-update backup recorded; restore one with `cara restore`",
    });
    assert.equal(await current(env.installDir), "versions/0.9.0", "a refused rollback changes nothing");
  });

  test("rollback with restore_state restores the pre-update backup of that switch, and undoes the switch if the restore fails", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    const restored: string[] = [];
    let failRestore = true;
    (env.manager as unknown as { o: { restore: (p: string) => Promise<void> } }).o.restore = async (p) => {
      if (failRestore) throw new Error("disk full");
      restored.push(p);
    };
    const applied = await env.run();
    assert.equal(applied.outcome, "applied");
    await assert.rejects(env.manager.rollback({ restoreState: true }), {
      kind: "precondition",
      message: /^restoring .*pre-update-0\.9\.1\.tar\.gz failed: disk full; switched current back to v0\.9\.1, nothing else changed$/,
    });
    assert.equal(await current(env.installDir), "versions/0.9.1");
    failRestore = false;
    const r = await env.manager.rollback({ restoreState: true });
    assert.equal(r.restoredBackupPath, applied.preUpdateBackupPath);
    assert.deepEqual(restored, [applied.preUpdateBackupPath]);
    assert.equal(await current(env.installDir), "versions/0.9.0");
  });

  test("no configured root: the trusted root is refreshed through TUF before verifying; offline it falls back, and the pinned root refuses a foreign CA", async () => {
    const tuf = await startTufRepo();
    try {
      tuf.publish(`${JSON.stringify(kit.trustedRootJson)}\n`);
      const update = { trustedRoot: undefined, tufMirror: tuf.url, tufRoot: tuf.initialRootPath };
      const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")], { update });
      const out = await env.run();
      assert.equal(out.outcome, "applied", out.error?.message);
      const messages = env.progress.map((p) => p.message);
      assert.ok(messages.includes("refreshing the Sigstore trusted root through TUF"), messages.join("\n"));
      assert.ok(messages.includes("verifying the Sigstore bundle (refreshed trusted root)"), messages.join("\n"));
      const st = await env.manager.status();
      const stored = join(
        await tufDir(env.updatesDir, { mirrorUrl: tuf.url, initialRootPath: tuf.initialRootPath, timeoutMs: 5000, refresh: true }),
        "trusted_root.json",
      );
      assert.deepEqual([st.trustedRoot.origin, st.trustedRoot.path, st.trustRefresh], ["refreshed", stored, true]);
      assert.ok(Math.abs(st.trustedRoot.refreshedAtMs! - Date.now()) < 60_000);
      assert.deepEqual(JSON.parse(await readFile(stored, "utf8")), kit.trustedRootJson);

      // Offline, nothing refreshed before: the pinned public-good root cannot vouch for the test CA.
      const offline = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")], { update: { ...update, tufMirror: "http://127.0.0.1:9" } });
      const refused = await offline.run();
      assert.equal(refused.outcome, "failed");
      assert.equal(refused.error!.retryable, false);
      assert.equal(refused.error!.phase, "verified");
      assert.match(
        refused.error!.message,
        /^bundle verification failed: .* \(verified against the pinned trusted root; the TUF refresh before it failed: refreshing the TUF metadata failed: .*ECONNREFUSED.*\)$/,
      );
      assert.ok(offline.progress.some((p) => p.message === "verifying the Sigstore bundle (pinned trusted root)"));
      await assertNothingApplied(offline, "0.9.1");
      assert.deepEqual((await offline.manager.status()).trustedRoot, { origin: "pinned", path: defaultTrustedRootPath() });
    } finally {
      await tuf.close();
    }
  });

  test("StartUpdate needs confirmation and a managed install", async () => {
    const env = await setup([await signedRelease(kit, artifacts["0.9.1"]!, "0.9.1")]);
    await assert.rejects(env.manager.start({ yes: false }), { kind: "invalid", message: "update not confirmed: pass --yes" });
    const unmanaged = new UpdateManager({
      updatesDir: env.updatesDir,
      settings: resolveUpdateSettings({}),
      runningVersion: "0.9.0",
      install: { managed: false, reason: "running from a git checkout (/src); update with `git pull && npm ci && npm run build`" },
      logger: pino({ level: "silent" }),
    });
    await assert.rejects(unmanaged.start({ yes: true }), {
      kind: "precondition",
      message: "self-update does not apply to this installation: running from a git checkout (/src); update with `git pull && npm ci && npm run build`",
    });
  });
});
