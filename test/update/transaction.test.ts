import assert from "node:assert/strict";
import { readFile, stat, symlink, writeFile, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { checksumFor } from "../../src/update/checksums.js";
import {
  loadTransaction,
  persistTransaction,
  resetTransaction,
  resumePending,
  retryDelayMs,
  TransactionCorruptError,
  type UpdateTransaction,
} from "../../src/update/transaction.js";
import { compareTarget, normalizeVersion, parseChannel } from "../../src/update/release-versions.js";
import { tempDir } from "../helpers/cara.js";

function tx(dir: string, over: Partial<UpdateTransaction> = {}): UpdateTransaction {
  return {
    id: "0b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",
    version: "0.9.1",
    assetName: "carapace-0.9.1.tar.gz",
    state: "in_progress",
    attempt: 1,
    maxAttempts: 3,
    startedAtMs: 1760000000000,
    updatedAtMs: 1760000004321,
    stagedPath: join(dir, "carapace-0.9.1.tar.gz"),
    bundlePath: join(dir, "carapace-0.9.1.tar.gz.bundle"),
    sha256: "3f".repeat(32),
    lastError: null,
    phase: "downloaded",
    retryable: true,
    applyConfirmedUntilMs: 1760000900000,
    ...over,
  };
}

describe("transaction.json", () => {
  test("round trip: reference key names, pretty JSON, 0600, unknown keys preserved", async () => {
    const dir = await tempDir();
    await persistTransaction(dir, { ...tx(dir), futureKey: { a: 1 } });
    const text = await readFile(join(dir, "transaction.json"), "utf8");
    assert.match(
      text,
      /^\{\n {2}"id": "0b6f5a0e-8d3c-4f1e-9a55-2f3b7d1c9e10",\n {2}"version": "0.9.1",\n {2}"assetName": "carapace-0.9.1.tar.gz",\n {2}"state": "in_progress",/,
    );
    assert.ok(text.endsWith("}\n"));
    assert.equal((await stat(join(dir, "transaction.json"))).mode & 0o777, 0o600);
    const loaded = await loadTransaction(dir);
    assert.deepEqual(loaded, { ...tx(dir), futureKey: { a: 1 } });
  });

  test("unknown state and phase load as failed; null optional keys may be absent", async () => {
    const dir = await tempDir();
    const raw = { ...tx(dir), state: "exploded", phase: "teleporting" } as Record<string, unknown>;
    delete raw.lastError;
    await writeFile(join(dir, "transaction.json"), JSON.stringify(raw));
    const loaded = await loadTransaction(dir);
    assert.deepEqual([loaded?.state, loaded?.phase, loaded?.lastError], ["failed", "failed", null]);
  });

  const invalid: [string, Partial<UpdateTransaction>, string][] = [
    [
      "path traversal version",
      { version: "../../v0.1.0", assetName: "carapace-../../v0.1.0.tar.gz" },
      "update transaction version '../../v0.1.0' is not a safe path component",
    ],
    [
      "asset of another version",
      { assetName: "carapace-0.9.2.tar.gz" },
      "update transaction assetName 'carapace-0.9.2.tar.gz' does not match its version '0.9.1'",
    ],
    ["attempt over budget", { attempt: 4 }, "update transaction attempt 4/3 is invalid"],
    ["zero budget", { attempt: 0, maxAttempts: 0 }, "update transaction attempt 0/0 is invalid"],
    ["time travel", { updatedAtMs: 1 }, "update transaction updated_at_ms predates started_at_ms"],
    ["staged elsewhere", { stagedPath: "/tmp/evil" }, "update transaction staged_path '/tmp/evil' does not match expected"],
    ["bad digest", { sha256: "xyz" }, "update transaction sha256 is not a 64-character hex digest"],
  ];
  for (const [name, over, message] of invalid) {
    test(`refuses to load or write: ${name}`, async () => {
      const dir = await tempDir();
      await assert.rejects(persistTransaction(dir, tx(dir, over)), (err: Error) => err.message.startsWith(message));
      await writeFile(join(dir, "transaction.json"), JSON.stringify(tx(dir, over)));
      await assert.rejects(loadTransaction(dir), (err: Error) => {
        assert.ok(err instanceof TransactionCorruptError);
        assert.ok(err.message.startsWith(`update transaction '${join(dir, "transaction.json")}' is corrupt: ${message}`), err.message);
        assert.match(err.message, /cara update --reset-transaction/);
        return true;
      });
    });
  }

  test("corrupt files fail closed: bad JSON, missing keys, a symlink, a directory", async () => {
    const dir = await tempDir();
    const file = join(dir, "transaction.json");
    await writeFile(file, "{");
    await assert.rejects(loadTransaction(dir), /is corrupt: not valid JSON/);
    const partial = tx(dir) as Record<string, unknown>;
    delete partial.retryable;
    await writeFile(file, JSON.stringify(partial));
    await assert.rejects(loadTransaction(dir), /is corrupt: missing required key 'retryable'/);
    const other = await tempDir();
    await writeFile(join(other, "t.json"), JSON.stringify(tx(dir)));
    const dir2 = await tempDir();
    await symlink(join(other, "t.json"), join(dir2, "transaction.json"));
    await assert.rejects(loadTransaction(dir2), /is corrupt: .*symlink/);
    const dir3 = await tempDir();
    await mkdir(join(dir3, "transaction.json"));
    await assert.rejects(loadTransaction(dir3), /is corrupt: .*not a regular file/);
    assert.equal(await loadTransaction(await tempDir()), undefined);
  });

  test("--reset-transaction moves the file aside (kept) and is a no-op when there is none", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "transaction.json"), "{corrupt");
    const aside = await resetTransaction(dir, 1234);
    assert.equal(aside, join(dir, "transaction.json.reset-1234"));
    assert.deepEqual((await readdir(dir)).sort(), ["transaction.json.reset-1234"]);
    assert.equal(await resetTransaction(dir), undefined);
  });

  test("resume-pending truth table and bounded backoff with jitter", () => {
    const d = "/s/updates";
    assert.equal(resumePending(tx(d, { state: "in_progress" })), true);
    assert.equal(resumePending(tx(d, { state: "failed", retryable: true, attempt: 2 })), true);
    assert.equal(resumePending(tx(d, { state: "failed", retryable: true, attempt: 3 })), false);
    assert.equal(resumePending(tx(d, { state: "failed", retryable: false, attempt: 1 })), false);
    assert.equal(resumePending(tx(d, { state: "applied" })), false);
    assert.deepEqual(
      [1, 2, 3, 4].map((a) => retryDelayMs(a, undefined, () => 0.5)),
      [5000, 15000, 45000, 45000],
    );
    assert.equal(
      retryDelayMs(1, undefined, () => 0),
      4000,
    );
    assert.equal(
      retryDelayMs(1, undefined, () => 1),
      6000,
    );
  });
});

describe("versions and checksums", () => {
  test("semver rules", () => {
    assert.equal(normalizeVersion("v0.2.0"), "0.2.0");
    assert.equal(normalizeVersion("1.0.0-beta.1"), "1.0.0-beta.1");
    assert.throws(() => normalizeVersion("0.2"), { message: "invalid version '0.2': not a semantic version" });
    assert.throws(() => normalizeVersion("../../v0.1.0"), /not a semantic version/);
    assert.deepEqual(compareTarget("0.9.0", "0.9.1", false), { available: true, downgrade: false, same: false });
    assert.deepEqual(compareTarget("0.9.0", "0.9.0", false), { available: false, downgrade: false, same: true });
    assert.deepEqual(compareTarget("0.9.0", "0.8.9", false), { available: false, downgrade: true, same: false });
    assert.deepEqual(compareTarget("0.9.0", "0.8.9", true), { available: true, downgrade: true, same: false });
    assert.deepEqual(compareTarget("1.0.0-beta.2", "1.0.0", false).available, true);
    assert.equal(parseChannel(""), "stable");
    assert.throws(() => parseChannel("dev"), { message: "unknown update channel: dev (valid: stable, beta)" });
  });

  test("SHA256SUMS.txt: GNU formats, ./dir prefixes, malformed and missing entries", () => {
    const h = "ab".repeat(32);
    assert.equal(checksumFor(`${h}  carapace-1.0.0.tar.gz\n`, "carapace-1.0.0.tar.gz"), h);
    assert.equal(checksumFor(`${"cd".repeat(32)}  other\n${h.toUpperCase()} *./dist/carapace-1.0.0.tar.gz\n`, "carapace-1.0.0.tar.gz"), h);
    assert.throws(() => checksumFor("", "x"), { message: "checksum file is empty" });
    assert.throws(() => checksumFor(`${h}  other\n`, "x"), { message: "checksum file does not list x" });
    assert.throws(() => checksumFor(`nothex  x\n`, "x"), { message: "checksum file does not contain a valid SHA-256 hash for x: 'nothex'" });
    assert.throws(() => checksumFor(`${h}  x\n${"cd".repeat(32)}  x\n`, "x"), /more than once/);
  });
});
