import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { resolveUpdateSettings } from "../../src/update/settings.js";
import { DEFAULT_TUF_MIRROR, refreshedRootPath, refreshTrustedRoot, resolveTrustedRoot, trustedRootLocation, tufDir } from "../../src/update/trust-root.js";
import { defaultTrustedRootPath } from "../../src/update/sigstore-bundle.js";
import { tempDir } from "../helpers/cara.js";
import { createTestTrustRoot, type TestTrustRoot } from "./sigstore-kit.js";
import { startTufRepo, type TufRepo } from "./tuf-kit.js";

let kit: TestTrustRoot;
let other: TestTrustRoot;
let repo: TufRepo;
let rootText: string;

before(async () => {
  kit = await createTestTrustRoot();
  other = await createTestTrustRoot();
  rootText = `${JSON.stringify(kit.trustedRootJson, null, 2)}\n`;
  repo = await startTufRepo();
  repo.publish(rootText);
});
after(async () => repo.close());

async function updatesDir(): Promise<string> {
  const dir = join(await tempDir(), "updates");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** A refresh into `dir` (a TUF directory: its metadata/ cache and trusted_root.json). */
function refresh(dir: string, extra: { mirrorUrl?: string; initialRootPath?: string } = {}) {
  return refreshTrustedRoot({ mirrorUrl: repo.url, initialRootPath: repo.initialRootPath, timeoutMs: 2000, dir, ...extra });
}

const settingsFor = (update: Record<string, unknown>) => resolveUpdateSettings({ update: { tufMirror: repo.url, tufRoot: repo.initialRootPath, ...update } });

test("settings: refresh on by default from the public-good mirror; off with trustRefresh: false; no TUF with a configured root", () => {
  assert.deepEqual(resolveUpdateSettings({}).tuf, { mirrorUrl: DEFAULT_TUF_MIRROR, timeoutMs: 5000, refresh: true });
  assert.deepEqual(resolveUpdateSettings({ update: { tufMirror: "https://tuf.example.com/", tufRoot: "/etc/cara/root.json", trustRefresh: false } }).tuf, {
    mirrorUrl: "https://tuf.example.com",
    initialRootPath: "/etc/cara/root.json",
    timeoutMs: 5000,
    refresh: false,
  });
  assert.equal(resolveUpdateSettings({ update: { trustedRoot: "/etc/cara/trusted_root.json" } }).tuf, undefined);
});

test("the TUF directory is keyed by mirror and root of trust", async () => {
  const updates = await updatesDir();
  const base = { mirrorUrl: repo.url, initialRootPath: repo.initialRootPath, timeoutMs: 1000, refresh: true };
  const dir = await tufDir(updates, base);
  assert.match(dir, new RegExp(`^${updates}/tuf/127\\.0\\.0\\.1_\\d+-[0-9a-f]{16}$`));
  assert.equal(await tufDir(updates, base), dir);
  assert.notEqual(await tufDir(updates, { ...base, mirrorUrl: `${repo.url}/other` }), dir);
  const otherAnchor = join(updates, "..", "root.json");
  await writeFile(otherAnchor, `${await readFile(repo.initialRootPath, "utf8")} `);
  assert.notEqual(await tufDir(updates, { ...base, initialRootPath: otherAnchor }), dir);
  assert.match(await tufDir(updates, { mirrorUrl: DEFAULT_TUF_MIRROR, timeoutMs: 1000, refresh: true }), /\/tuf\/tuf-repo-cdn\.sigstore\.dev-[0-9a-f]{16}$/);
});

test("a refresh fetches trusted_root.json through TUF and stores it durably (0600); unchanged the second time; a new one replaces it", async () => {
  const dir = await updatesDir();
  repo.requests.length = 0;
  assert.deepEqual(await refresh(dir), { ok: true, changed: true });
  assert.equal(await readFile(refreshedRootPath(dir), "utf8"), rootText);
  assert.equal((await stat(refreshedRootPath(dir))).mode & 0o777, 0o600);
  // The client looked for a newer root, then walked timestamp -> snapshot -> targets -> the target.
  assert.deepEqual(repo.requests, ["/2.root.json", "/timestamp.json", "/snapshot.json", "/targets.json", "/targets/trusted_root.json"]);

  assert.deepEqual(await refresh(dir), { ok: true, changed: false });

  // Refreshes of one directory do not overlap: the second starts when the first has stored its root.
  const fresh = await updatesDir();
  repo.requests.length = 0;
  assert.deepEqual(await Promise.all([refresh(fresh), refresh(fresh)]), [
    { ok: true, changed: true },
    { ok: true, changed: false },
  ]);
  assert.deepEqual(repo.requests.slice(0, 5), ["/2.root.json", "/timestamp.json", "/snapshot.json", "/targets.json", "/targets/trusted_root.json"]);

  const next = `${JSON.stringify(other.trustedRootJson, null, 2)}\n`;
  repo.publish(next);
  try {
    assert.deepEqual(await refresh(dir), { ok: true, changed: true });
    assert.equal(await readFile(refreshedRootPath(dir), "utf8"), next);
  } finally {
    repo.publish(rootText);
  }
});

test("a refresh that is not proven by TUF changes nothing: tampered target, expired timestamp, a mirror that is down, a document that is no trusted root or a malformed one", async () => {
  const dir = await updatesDir();
  assert.deepEqual(await refresh(dir), { ok: true, changed: true });
  const before = await readFile(refreshedRootPath(dir), "utf8");

  try {
    // A mirror serving other bytes than targets.json lists (a fresh cache: the cached copy would be reused).
    const fresh = await updatesDir();
    repo.serveUnsignedTarget(rootText.replace("certificateAuthorities", "certificateAuthoritiez")); // same length
    const tampered = await refresh(fresh);
    assert.equal(tampered.ok, false);
    assert.match((tampered as { reason: string }).reason, /^downloading trusted_root\.json failed: Expected hash [0-9a-f]{64} but got [0-9a-f]{64}$/);
    repo.serveUnsignedTarget(`${rootText}    `); // longer than listed
    assert.deepEqual(await refresh(fresh), { ok: false, reason: "downloading trusted_root.json failed: Max length reached" });
    assert.equal(await stat(refreshedRootPath(fresh)).catch(() => undefined), undefined);

    repo.expireTimestamp();
    assert.deepEqual(await refresh(dir), { ok: false, reason: "refreshing the TUF metadata failed: Final timestamp.json is expired" });

    repo.publish("{}");
    assert.deepEqual(await refresh(dir), {
      ok: false,
      reason: `failed to initialize sigstore trust root from ${repo.url}/targets/trusted_root.json: not a usable Sigstore trusted root ('certificateAuthorities' is missing or empty)`,
    });
    // A root whose Rekor key lost the start of its window would trust that key for any date.
    const unbounded = structuredClone(kit.trustedRootJson) as { tlogs: { publicKey: { validFor: { start?: string } } }[] };
    delete unbounded.tlogs[0]!.publicKey.validFor.start;
    repo.publish(JSON.stringify(unbounded));
    assert.deepEqual(await refresh(dir), {
      ok: false,
      reason: `failed to initialize sigstore trust root from ${repo.url}/targets/trusted_root.json: malformed trusted root: tlogs[0].publicKey.validFor.start is missing (every entry needs the start of its validity window; without it the entry would be trusted for any date)`,
    });
  } finally {
    repo.publish(rootText);
  }

  const down = await refresh(dir, { mirrorUrl: "http://ops:s3cret@127.0.0.1:9" });
  assert.equal(down.ok, false);
  assert.match(
    (down as { reason: string }).reason,
    /^refreshing the TUF metadata failed: request to http:\/\/127\.0\.0\.1:9\/2\.root\.json failed, reason: connect ECONNREFUSED/,
  );
  assert.doesNotMatch((down as { reason: string }).reason, /s3cret/);

  assert.deepEqual(await refresh(dir, { mirrorUrl: "https://tuf.example.com", initialRootPath: undefined as unknown as string }), {
    ok: false,
    reason: "update.tufMirror https://tuf.example.com needs update.tufRoot (that repository's initial root.json)",
  });
  assert.equal(await readFile(refreshedRootPath(dir), "utf8"), before);
});

test("keys rotated in a new TUF root are followed from the cached root", async () => {
  const dir = await updatesDir();
  assert.deepEqual(await refresh(dir), { ok: true, changed: true });
  repo.rotateKeys();
  const next = `${JSON.stringify(other.trustedRootJson)}\n`;
  repo.publish(next);
  try {
    repo.requests.length = 0;
    assert.deepEqual(await refresh(dir), { ok: true, changed: true });
    assert.deepEqual(repo.requests.slice(0, 2), ["/2.root.json", "/3.root.json"]);
    assert.equal(await readFile(refreshedRootPath(dir), "utf8"), next);
  } finally {
    repo.publish(rootText);
  }
});

test("resolveTrustedRoot: configured first (no refresh), then refreshed, then pinned; a broken refreshed root fails closed naming the file", async () => {
  const dir = await updatesDir();
  const configuredPath = join(dir, "..", "mine.json");
  await kit.writeTo(configuredPath);
  repo.requests.length = 0;
  const configured = await resolveTrustedRoot(settingsFor({ trustedRoot: configuredPath }), dir, { refresh: true });
  assert.equal(configured.origin, "configured");
  assert.equal(configured.refresh, undefined);
  assert.deepEqual(repo.requests, []);

  const pinned = await resolveTrustedRoot(settingsFor({ trustRefresh: false }), dir, { refresh: true });
  assert.deepEqual([pinned.origin, pinned.source.path, pinned.refresh], ["pinned", defaultTrustedRootPath(), undefined]);
  assert.deepEqual(repo.requests, []);

  const stored = refreshedRootPath(await tufDir(dir, settingsFor({}).tuf!));
  const refreshed = await resolveTrustedRoot(settingsFor({}), dir, { refresh: true });
  assert.deepEqual([refreshed.origin, refreshed.source.path, refreshed.refresh], ["refreshed", stored, { ok: true, changed: true }]);
  assert.deepEqual(refreshed.source.json, kit.trustedRootJson);
  assert.deepEqual(await trustedRootLocation(settingsFor({}), dir), {
    origin: "refreshed",
    path: stored,
    refreshedAtMs: Math.floor((await stat(stored)).mtimeMs),
  });

  // The refresh fails (the repository's timestamp expired): the root refreshed earlier is used; the failure is reported, not fatal.
  repo.expireTimestamp();
  const failed = await resolveTrustedRoot(settingsFor({}), dir, { refresh: true });
  repo.publish(rootText);
  assert.deepEqual([failed.origin, failed.refresh?.ok], ["refreshed", false]);
  // With the refresh off, the root refreshed earlier for this mirror and anchor is still used.
  assert.equal((await resolveTrustedRoot(settingsFor({ trustRefresh: false }), dir, { refresh: true })).origin, "refreshed");
  // Another mirror never uses it: offline there, verification falls back to the pinned root.
  const elsewhere = await resolveTrustedRoot(settingsFor({ tufMirror: "http://127.0.0.1:9" }), dir, { refresh: true });
  assert.deepEqual([elsewhere.origin, elsewhere.refresh?.ok], ["pinned", false]);
  assert.deepEqual(await trustedRootLocation(settingsFor({ tufMirror: "http://127.0.0.1:9" }), dir), { origin: "pinned", path: defaultTrustedRootPath() });

  await writeFile(stored, "{ not json");
  await assert.rejects(resolveTrustedRoot(settingsFor({ trustRefresh: false }), dir, { refresh: true }), {
    message: new RegExp(
      `^failed to initialize sigstore trust root from ${stored}: not valid JSON .*; remove ${stored} to verify with the root pinned with cara \\(a later TUF refresh writes it again\\)$`,
    ),
  });
  // A successful refresh repairs it.
  assert.equal((await resolveTrustedRoot(settingsFor({}), dir, { refresh: true })).origin, "refreshed");
  assert.equal(await readFile(stored, "utf8"), rootText);
});
