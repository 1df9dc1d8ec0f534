import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { GetUpdateStatusResponseSchema, UpdatePhase, UpdateTransactionState } from "../../gen/carapace/update/v1/update_pb.js";
import { failedWhile, formatStatus } from "../../src/cli/update/status-text.js";

const trustedRootLine = (fields: Parameters<typeof create<typeof GetUpdateStatusResponseSchema>>[1]) =>
  formatStatus(create(GetUpdateStatusResponseSchema, { currentVersion: "0.9.1", ...fields }))
    .split("\n")
    .find((l) => l.startsWith("Trusted root:"));

test("cara update --status names the trusted root: configured, refreshed through TUF (with when), pinned", () => {
  assert.equal(
    trustedRootLine({ trustedRootOrigin: "configured", trustedRootPath: "/etc/cara/trusted_root.json" }),
    "Trusted root:      /etc/cara/trusted_root.json (update.trustedRoot; never refreshed)",
  );
  assert.equal(
    trustedRootLine({
      trustedRootOrigin: "refreshed",
      trustedRootPath: "/s/updates/tuf/x-1/trusted_root.json",
      trustedRootRefreshedAtMs: BigInt(Date.UTC(2026, 10, 27, 9, 0)),
      trustRefresh: true,
    }),
    "Trusted root:      /s/updates/tuf/x-1/trusted_root.json (fetched through TUF 2026-11-27T09:00:00.000Z; TUF refresh before each verification)",
  );
  assert.equal(
    trustedRootLine({ trustedRootOrigin: "pinned", trustedRootPath: "/opt/cara/assets/sigstore/trusted_root.json", trustRefresh: false }),
    "Trusted root:      /opt/cara/assets/sigstore/trusted_root.json (pinned with cara; TUF refresh off)",
  );
});

const transactionLines = (tx: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  formatStatus(create(GetUpdateStatusResponseSchema, { currentVersion: "0.9.0", transaction: { version: "0.9.1", maxAttempts: 3, ...tx }, ...extra }))
    .split("\n")
    .filter((l) => l.startsWith("Transaction:") || l.startsWith("  Last error:"));

test("cara update --status says what a failed update was doing, once, and does not call exhausted retries non-retryable", () => {
  // Gave up after the last attempt of a passing error: the error says so; no "(not retryable)".
  assert.deepEqual(
    transactionLines({
      state: UpdateTransactionState.FAILED,
      phase: UpdatePhase.FAILED,
      failedPhase: UpdatePhase.DOWNLOADING,
      attempt: 3,
      retryable: false,
      lastError: "gave up after 3 attempts (last: artifact download returned HTTP 503 for carapace-0.9.1.tar.gz)",
    }),
    [
      "Transaction:       v0.9.1 failed while downloading, attempt 3/3",
      "  Last error:      gave up after 3 attempts (last: artifact download returned HTTP 503 for carapace-0.9.1.tar.gz)",
    ],
  );
  // An authenticity failure is not retryable on its first attempt.
  assert.deepEqual(
    transactionLines({
      state: UpdateTransactionState.FAILED,
      phase: UpdatePhase.FAILED,
      failedPhase: UpdatePhase.VERIFIED,
      attempt: 1,
      retryable: false,
      lastError: "bundle verification failed: identity mismatch",
    }),
    ["Transaction:       v0.9.1 failed while verifying, attempt 1/3", "  Last error:      bundle verification failed: identity mismatch (not retryable)"],
  );
  assert.deepEqual(
    transactionLines({
      state: UpdateTransactionState.FAILED,
      phase: UpdatePhase.FAILED,
      failedPhase: UpdatePhase.DOWNLOADING,
      attempt: 1,
      retryable: true,
      lastError: "failed to fetch release info: cannot reach api.github.com (ENOTFOUND: no network?)",
    }),
    [
      "Transaction:       v0.9.1 failed while downloading, attempt 1/3",
      "  Last error:      failed to fetch release info: cannot reach api.github.com (ENOTFOUND: no network?) (retryable: `cara update` resumes it)",
    ],
  );
  assert.deepEqual(transactionLines({ state: UpdateTransactionState.IN_PROGRESS, phase: UpdatePhase.DOWNLOADING, attempt: 1, retryable: true }), [
    "Transaction:       v0.9.1 in_progress, phase downloading, attempt 1/3",
  ]);
  assert.deepEqual(
    [UpdatePhase.CREATED, UpdatePhase.DOWNLOADING, UpdatePhase.DOWNLOADED, UpdatePhase.VERIFIED, UpdatePhase.APPLYING, UpdatePhase.APPLIED].map(failedWhile),
    ["preparing (looking up the release)", "downloading", "verifying", "verifying", "applying", "switching to the new version"],
  );
});
