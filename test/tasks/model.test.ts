import assert from "node:assert/strict";
import { test } from "node:test";
import {
  storableText,
  applyPolicy,
  cancelTransition,
  DEFAULT_POLICY,
  normalizePayload,
  normalizeReason,
  patchTransition,
  recordFromDisk,
  rejectNul,
  resumeTransition,
  retryTransition,
  TASK_STATES,
  type TaskRecord,
  type TaskStateName,
  TaskValidationError,
  validateLabels,
} from "../../src/tasks/model.js";
import { backoffDelay, policyViolation } from "../../src/tasks/worker.js";

const T0 = 1_700_000_000_000;
function task(state: TaskStateName, extra: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id: "t1",
    state,
    attempts: 2,
    nextRunAtMs: null,
    lastError: "old",
    payload: { kind: "systemEvent", text: "x" },
    createdAtMs: T0,
    updatedAtMs: T0,
    policy: { ...DEFAULT_POLICY },
    policyExplicit: true,
    ...extra,
  };
}

test("state machine: every operator transition from every state", () => {
  const allowed = {
    cancel: new Set(["queued", "running", "blocked", "retry_wait"]),
    retry: new Set(["failed", "blocked", "cancelled", "retry_wait"]),
    resume: new Set(["blocked"]),
    patch: new Set(["queued", "blocked", "retry_wait", "failed", "cancelled"]),
  };
  const refusals = {
    cancel: "Task is already in a terminal state",
    retry: "Task is not retryable in its current state",
    resume: "Task is not blocked",
  };
  const now = T0 + 1000;
  for (const state of TASK_STATES) {
    const t = task(state, { blockedReason: "config_missing" });
    // cancel
    if (allowed.cancel.has(state)) {
      const r = cancelTransition(t, undefined, now);
      assert.deepEqual(
        [r.state, r.lastError, r.nextRunAtMs, r.blockedReason, r.updatedAtMs, r.attempts],
        ["cancelled", null, null, undefined, now, 2],
        `cancel from ${state}`,
      );
      assert.equal(cancelTransition(t, "why", now).lastError, "why");
    } else assert.throws(() => cancelTransition(t, undefined, now), { message: refusals.cancel }, `cancel from ${state}`);
    // retry
    if (allowed.retry.has(state)) {
      const r = retryTransition(t, undefined, 500, now);
      assert.deepEqual(
        [r.state, r.lastError, r.nextRunAtMs, r.blockedReason, r.attempts],
        ["retry_wait", "retried by operator", now + 500, undefined, 2],
        `retry from ${state}`,
      );
    } else assert.throws(() => retryTransition(t, undefined, 0, now), { message: refusals.retry }, `retry from ${state}`);
    // resume
    if (allowed.resume.has(state)) {
      const r = resumeTransition(t, "approved", 0, now);
      assert.deepEqual([r.state, r.lastError, r.nextRunAtMs, r.blockedReason], ["retry_wait", "approved", now, undefined]);
      assert.equal(resumeTransition(t, undefined, 0, now).lastError, "resumed by operator");
    } else assert.throws(() => resumeTransition(t, undefined, 0, now), { message: refusals.resume }, `resume from ${state}`);
    // patch
    if (allowed.patch.has(state)) {
      // The reason is a note beside the last error, which stays.
      const r = patchTransition({ ...t, lastError: "HTTP 503" }, { reason: "note", policy: { maxAttempts: 5 } }, now);
      assert.deepEqual(
        [r.state, r.lastError, r.note, r.policy.maxAttempts, r.policy.maxTurns, r.policyExplicit],
        [state, "HTTP 503", "note", 5, 25, true],
        `patch ${state}`,
      );
    } else assert.throws(() => patchTransition(t, { reason: "note" }, now), { message: `Task is ${state}; patch rejected` }, `patch ${state}`);
  }
});

test("patch needs something to change; nextRunAtMs only while waiting; labels set and removed", () => {
  assert.throws(() => patchTransition(task("queued"), {}, T0), { message: "Task patch requires payload, policy, or reason" });
  assert.throws(() => patchTransition(task("queued"), { policy: {} }, T0), { message: "Task patch requires payload, policy, or reason" });
  assert.throws(() => patchTransition(task("failed"), { nextRunAtMs: 5 }, T0), {
    message: "nextRunAtMs can only be changed while the task is queued or retry_wait",
  });
  const legacy = task("queued", { policyExplicit: false });
  assert.equal(patchTransition(legacy, { reason: "r" }, T0).policyExplicit, false, "a reason-only patch leaves policyExplicit");
  const labelled = patchTransition(task("queued", { labels: { a: "1", b: "2" } }), { setLabels: { c: "3" }, removeLabels: ["a"] }, T0);
  assert.deepEqual(labelled.labels, { b: "2", c: "3" });
});

test("policy bounds use the reference's messages", () => {
  assert.deepEqual(applyPolicy({ ...DEFAULT_POLICY }, { maxTurns: 3 }), { ...DEFAULT_POLICY, maxTurns: 3 });
  const cases: [string, number, string][] = [
    ["maxAttempts", 0, "invalid policy.maxAttempts: must be between 1 and 10000"],
    ["maxAttempts", 10_001, "invalid policy.maxAttempts: must be between 1 and 10000"],
    ["maxTotalRuntimeMs", 2_592_000_001, "invalid policy.maxTotalRuntimeMs: must be between 1 and 2592000000"],
    ["maxTurns", 1001, "invalid policy.maxTurns: must be between 1 and 1000"],
    ["maxRunTimeoutSeconds", 86_401, "invalid policy.maxRunTimeoutSeconds: must be between 1 and 86400"],
  ];
  for (const [key, value, message] of cases) assert.throws(() => applyPolicy({ ...DEFAULT_POLICY }, { [key]: value }), { message });
});

test("payload normalization drops unknown fields and refuses bad kinds and fields", () => {
  assert.deepEqual(normalizePayload({ kind: "agentTurn", message: "hi", extra: 1, model: "m", timeoutSeconds: 30 }), {
    kind: "agentTurn",
    message: "hi",
    model: "m",
    timeoutSeconds: 30,
  });
  assert.deepEqual(normalizePayload({ kind: "systemEvent", text: "t", junk: true }), { kind: "systemEvent", text: "t" });
  assert.throws(() => normalizePayload({ kind: "shell", cmd: "rm" }), { message: "Invalid task payload: unrecognized payload kind" });
  assert.throws(() => normalizePayload({ kind: "agentTurn" }), { message: "Invalid task payload: agentTurn needs a non-empty message" });
  assert.throws(() => normalizePayload({ kind: "systemEvent", text: "" }), { message: "Invalid task payload: systemEvent needs a non-empty text" });
  assert.throws(() => normalizePayload({ kind: "agentTurn", message: "x", deliver: "yes" }), { message: "Invalid task payload: deliver must be a boolean" });
  assert.throws(() => normalizePayload({ kind: "systemEvent", text: "x".repeat(131_073) }), { message: "Invalid task payload: larger than 131072 bytes" });
});

test("a NUL character is refused in payload strings, labels and reasons, naming the field", () => {
  const nul = (what: string, field: string) => (err: unknown) => {
    assert.ok(err instanceof TaskValidationError, String(err));
    assert.deepEqual([err.message, err.field], [`${what} must not contain a NUL character (\\u0000)`, field]);
    return true;
  };
  assert.throws(() => normalizePayload({ kind: "systemEvent", text: "a\u0000" }), nul("Invalid task payload: text", "payload.system_event.text"));
  assert.throws(() => normalizePayload({ kind: "agentTurn", message: "\u0000" }), nul("Invalid task payload: message", "payload.agent_turn.message"));
  for (const k of ["model", "route", "thinking", "channel", "to"])
    assert.throws(() => normalizePayload({ kind: "agentTurn", message: "hi", [k]: "x\u0000" }), nul(`Invalid task payload: ${k}`, `payload.agent_turn.${k}`));
  assert.throws(() => normalizePayload({ kind: "updateCheck", channel: "\u0000" }), nul("Invalid task payload: channel", "payload.update_check.channel"));
  assert.throws(() => normalizePayload({ kind: "backup", sections: ["tasks\u0000"] }), nul("Invalid task payload: backup sections", "payload.backup.sections"));
  assert.throws(() => validateLabels({ team: "a\u0000" }), nul("labels: value of 'team'", "labels"));
  assert.throws(() => validateLabels({ team: "\u0000" }, "set_labels"), nul("labels: value of 'team'", "set_labels"));
  assert.throws(() => normalizeReason("why\u0000"), nul("reason", "reason"));
  assert.throws(() => rejectNul("k\u0000", "idempotency_key"), nul("idempotency_key", "idempotency_key"));
  assert.doesNotThrow(() => rejectNul("\\u0000 spelled out is fine", "idempotency_key"));
});

test("reasons are trimmed, blank is absent, over 1024 characters refused", () => {
  assert.equal(normalizeReason("  why  "), "why");
  assert.equal(normalizeReason("   "), undefined);
  assert.equal(normalizeReason("é".repeat(1024))?.length, 1024);
  assert.throws(() => normalizeReason("x".repeat(1025)), { message: "reason exceeds 1024 characters" });
});

test("records load leniently like the reference: defaults, unknown state and reason", () => {
  const rec = recordFromDisk({
    id: "a",
    state: "paused",
    attempts: 1,
    payload: { kind: "systemEvent", text: "x" },
    createdAtMs: 1,
    updatedAtMs: 2,
    blockedReason: "mystery",
    extra: 1,
  });
  assert.ok(typeof rec !== "string");
  assert.equal(rec.state, "failed");
  assert.equal(rec.blockedReason, "unknown");
  assert.deepEqual(rec.policy, DEFAULT_POLICY);
  assert.equal(rec.policyExplicit, undefined);
  assert.equal(recordFromDisk({ state: "queued" }), "a task record has no id");
});

test("backoff: full jitter within [0, min(cap, base*2^(n-1))]", () => {
  const opts = { baseMs: 1000, factor: 2, capMs: 300_000 };
  assert.equal(
    backoffDelay(1, opts, () => 0.999999),
    999,
  );
  assert.equal(
    backoffDelay(3, opts, () => 0.5),
    2000,
  );
  assert.equal(
    backoffDelay(30, opts, () => 0.999999),
    299_999,
  );
  assert.equal(
    backoffDelay(5, opts, () => 0),
    0,
  );
  for (let n = 1; n < 40; n++) {
    const d = backoffDelay(n, opts);
    assert.ok(d >= 0 && d < Math.min(300_000, 1000 * 2 ** (n - 1)), `attempt ${n}: ${d}`);
  }
});

test("policy violations before an attempt, with the reference's messages", () => {
  assert.equal(
    policyViolation(task("running", { attempts: 2, policy: { ...DEFAULT_POLICY, maxAttempts: 1 } }), T0),
    "objective policy violation: attempts 2 exceeded maxAttempts 1",
  );
  assert.equal(
    policyViolation(task("running", { attempts: 1, policy: { ...DEFAULT_POLICY, maxTotalRuntimeMs: 1 } }), T0 + 5),
    "objective policy violation: task age 5ms exceeded maxTotalRuntimeMs 1",
  );
  assert.equal(
    policyViolation(
      task("running", {
        attempts: 1,
        payload: { kind: "agentTurn", message: "m", timeoutSeconds: 30 },
        policy: { ...DEFAULT_POLICY, maxRunTimeoutSeconds: 10 },
      }),
      T0,
    ),
    "objective policy violation: timeoutSeconds 30 exceeds maxRunTimeoutSeconds 10",
  );
  assert.equal(
    policyViolation(task("running", { attempts: 500, policyExplicit: false, policy: { ...DEFAULT_POLICY, maxAttempts: 1 } }), T0),
    undefined,
    "legacy tasks are not policed",
  );
});

test("storableText: NUL and lone surrogates become U+FFFD, whole pairs and other text stay", () => {
  assert.equal(storableText("plain é 日本"), "plain é 日本");
  assert.equal(storableText("a\u0000b"), "a\uFFFDb");
  assert.equal(storableText("😀"), "😀");
  // A reply cut in the middle of an emoji, and halves on their own.
  assert.equal(storableText("😀".slice(0, 1)), "\uFFFD");
  assert.equal(storableText("x\ud83dy\ude00z"), "x\uFFFDy\uFFFDz");
  assert.equal(storableText("\ude00\ud83d"), "\uFFFD\uFFFD");
  // What PostgreSQL's jsonb takes: JSON without a lone \udXXX escape.
  assert.doesNotMatch(JSON.stringify(storableText("a\ud83d")), /\\ud83d/);
});
