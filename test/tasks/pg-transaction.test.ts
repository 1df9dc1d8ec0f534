// The transaction helper of the PostgreSQL code (src/tasks/postgres/transaction.ts) tells a
// failure before COMMIT (rolled back: nothing was changed) from a failure of the COMMIT itself
// (outcome unknown). A fake connection records the statements; no PostgreSQL needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CommitOutcomeUnknownError, failedWhileCommitting, inTransaction, markCommitting } from "../../src/tasks/postgres/transaction.js";

function fakeClient(failOn?: string) {
  const sent: string[] = [];
  return {
    sent,
    async query(sql: string): Promise<unknown> {
      sent.push(sql);
      if (sql === failOn) throw new Error(`${sql} failed`);
      return {};
    },
  };
}

test("a transaction that commits returns its result after COMMIT", async () => {
  const c = fakeClient();
  assert.equal(await inTransaction(c, async () => c.query("INSERT").then(() => 42)), 42);
  assert.deepEqual(c.sent, ["BEGIN", "INSERT", "COMMIT"]);
});

test("a failure before COMMIT rolls back and passes through as is: not committing", async () => {
  for (const failOn of ["BEGIN", "INSERT"]) {
    const c = fakeClient(failOn);
    const err = await inTransaction(c, () => c.query("INSERT")).then(
      () => assert.fail("it succeeded"),
      (e: unknown) => e as Error,
    );
    assert.equal(err.message, `${failOn} failed`);
    assert.equal(failedWhileCommitting(err), false);
    assert.ok(!c.sent.includes("COMMIT"));
    assert.equal(c.sent.at(-1), "ROLLBACK");
  }
  const domain = new Error("refused by a rule");
  const c = fakeClient();
  await assert.rejects(
    inTransaction(c, async () => {
      throw domain;
    }),
    (e) => e === domain && !failedWhileCommitting(e),
  );
});

test("a failure of COMMIT itself is CommitOutcomeUnknownError: committing, with the COMMIT's error as cause", async () => {
  const c = fakeClient("COMMIT");
  const err = await inTransaction(c, () => c.query("INSERT")).then(
    () => assert.fail("it succeeded"),
    (e: unknown) => e as Error,
  );
  assert.ok(err instanceof CommitOutcomeUnknownError);
  assert.ok(failedWhileCommitting(err));
  assert.equal((err.cause as Error).message, "COMMIT failed");
  assert.match(err.message, /may or may not have been kept/);
  assert.deepEqual(c.sent, ["BEGIN", "INSERT", "COMMIT", "ROLLBACK"]);
});

test("an error that wraps a COMMIT failure for its caller keeps the classification", () => {
  const wrapped = markCommitting(new Error("cannot replace the tasks"), new Error("connection lost"));
  assert.ok(failedWhileCommitting(wrapped));
  assert.equal((wrapped.cause as Error).message, "connection lost");
  assert.equal(failedWhileCommitting(new Error("plain")), false);
  assert.equal(failedWhileCommitting("COMMIT"), false);
});
