// The worker's poll asks hasClaimable twice a second on every server; ClaimableBound answers
// without walking the tasks until one can be claimable (src/tasks/claimable-bound.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClaimableBound } from "../../src/tasks/claimable-bound.js";
import { DEFAULT_POLICY, dueAt, isDue, type TaskRecord } from "../../src/tasks/model.js";

const task = (id: string, state: TaskRecord["state"], nextRunAtMs: number | null): TaskRecord =>
  ({
    id,
    state,
    nextRunAtMs,
    createdAtMs: 0,
    updatedAtMs: 0,
    attempts: 0,
    payload: { kind: "systemEvent", text: id },
    policy: { ...DEFAULT_POLICY },
  }) as unknown as TaskRecord;

/** The tasks, counting how many of them each check looks at. */
function counted(tasks: TaskRecord[]) {
  const seen = { n: 0 };
  const iterable = {
    *[Symbol.iterator]() {
      for (const t of tasks) {
        seen.n++;
        yield t;
      }
    },
  };
  return { iterable, seen };
}

test("dueAt(task) is the time from which isDue holds, for every state", () => {
  const cases = [task("a", "queued", null), task("b", "queued", 1000), task("c", "retry_wait", 1000), task("d", "retry_wait", null)];
  for (const state of ["running", "blocked", "done", "failed", "cancelled"] as const) cases.push(task(state, state, 1000));
  for (const t of cases) {
    for (const now of [0, 999, 1000, 5000]) {
      const at = dueAt(t);
      assert.equal(at !== undefined && at <= now, isDue(t, now), `${t.id} (${t.state}, ${t.nextRunAtMs}) at ${now}`);
    }
  }
});

test("after a walk that finds nothing due, polls before the earliest run-at answer without walking; at that time it walks and finds it", () => {
  const bound = new ClaimableBound(60_000);
  const { iterable, seen } = counted([task("a", "queued", 5_000), task("b", "retry_wait", 3_000), task("c", "done", null)]);
  const none = new Set<string>();
  assert.equal(bound.hasClaimable(1_000, none, iterable, dueAt), false);
  assert.equal(seen.n, 3);
  for (const now of [1_500, 2_000, 2_999]) assert.equal(bound.hasClaimable(now, none, iterable, dueAt), false);
  assert.equal(seen.n, 3, "no walk before the earliest run-at");
  assert.equal(bound.hasClaimable(3_000, none, iterable, dueAt), true);
  assert.ok(seen.n > 3);
});

test("a change lowers the bound: a task made due now is seen at the next poll", () => {
  const bound = new ClaimableBound(60_000);
  const tasks = [task("a", "queued", 50_000)];
  const { iterable, seen } = counted(tasks);
  const none = new Set<string>();
  assert.equal(bound.hasClaimable(1_000, none, iterable, dueAt), false);
  assert.equal(bound.hasClaimable(1_001, none, iterable, dueAt), false);
  assert.equal(seen.n, 1);
  // A change to a task due later than the bound does not cost a walk.
  bound.lower(60_000);
  assert.equal(bound.hasClaimable(1_002, none, iterable, dueAt), false);
  assert.equal(seen.n, 1);
  const fresh = task("b", "queued", null);
  tasks.push(fresh);
  bound.lower(dueAt(fresh));
  assert.equal(bound.hasClaimable(1_003, none, iterable, dueAt), true);
  // Nothing is known once something was claimable: the next poll walks again.
  tasks.pop();
  assert.equal(bound.hasClaimable(1_004, none, iterable, dueAt), false);
  assert.equal(seen.n, 4);
});

test("the worker's own tasks are skipped; one that leaves the skip set without a change is found by the walk every rewalkMs", () => {
  const bound = new ClaimableBound(5_000);
  const mine = task("mine", "queued", null);
  const { iterable, seen } = counted([mine, task("later", "queued", 100_000)]);
  const skip = new Set(["mine"]);
  assert.equal(bound.hasClaimable(1_000, skip, iterable, dueAt), false);
  const walks = seen.n;
  assert.equal(bound.hasClaimable(2_000, new Set(), iterable, dueAt), false, "within rewalkMs the bound stands");
  assert.equal(seen.n, walks);
  assert.equal(bound.hasClaimable(6_000, new Set(), iterable, dueAt), true, "after rewalkMs the tasks are walked again");
});

test("reset makes the next check walk (the tasks were replaced wholesale)", () => {
  const bound = new ClaimableBound(60_000);
  const tasks = [task("a", "queued", 50_000)];
  const { iterable } = counted(tasks);
  assert.equal(bound.hasClaimable(1_000, new Set(), iterable, dueAt), false);
  tasks[0] = task("a", "queued", null);
  assert.equal(bound.hasClaimable(1_001, new Set(), iterable, dueAt), false, "a replacement it was not told about");
  bound.reset();
  assert.equal(bound.hasClaimable(1_002, new Set(), iterable, dueAt), true);
});
