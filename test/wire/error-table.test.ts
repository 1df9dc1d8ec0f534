import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { badRequestOf, errorInfoOf, retryDelayMsOf } from "../../src/wire/error-details.js";
import { errorTable, on, onMatch } from "../../src/wire/error-table.js";

class NotFound extends Error {}
class Invalid extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}
class Busy extends Error {}

const errors = errorTable(
  [
    on(NotFound, { code: Code.NotFound, reason: "THING_NOT_FOUND" }),
    on(Invalid, (e) => ({ code: Code.InvalidArgument, reason: "THING_INVALID", field: e.field })),
    on(Busy, (e) => (e.message === "skip" ? undefined : { code: Code.Unavailable, reason: "THING_BUSY", retryAfterMs: 1500, metadata: { what: "thing" } })),
    onMatch((err) => (err as { code?: string }).code === "EIO", { code: Code.Unavailable, reason: "DISK", message: "the disk failed" }),
  ],
  (err) => ({ code: Code.Internal, reason: "INTERNAL", message: `thing failed: ${(err as Error).message}` }),
);

test("the first row that matches decides code, reason, field, retry and metadata; the message is the error's own", () => {
  const nf = errors.map(new NotFound("no thing 'x'"));
  assert.deepEqual([nf.code, nf.rawMessage, errorInfoOf(nf)?.reason], [Code.NotFound, "no thing 'x'", "THING_NOT_FOUND"]);
  const bad = errors.map(new Invalid("size must be positive", "spec.size"));
  assert.equal(bad.code, Code.InvalidArgument);
  assert.deepEqual(
    badRequestOf(bad)?.fieldViolations.map((v) => [v.field, v.description]),
    [["spec.size", "size must be positive"]],
  );
  const busy = errors.map(new Busy("try later"));
  assert.equal(retryDelayMsOf(busy), 1500);
  assert.deepEqual(errorInfoOf(busy)?.metadata, { what: "thing" });
});

test("a row may decline (undefined); a predicate row; the fallback; a ConnectError passes through untouched", () => {
  const declined = errors.map(new Busy("skip"));
  assert.deepEqual([declined.code, declined.rawMessage, errorInfoOf(declined)?.reason], [Code.Internal, "thing failed: skip", "INTERNAL"]);
  const eio = errors.map(Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" }));
  assert.deepEqual([eio.code, eio.rawMessage], [Code.Unavailable, "the disk failed"]);
  const own = new ConnectError("as it is", Code.Aborted);
  assert.equal(errors.map(own), own);
});

test("without a fallback an unmatched error is what Connect makes of it; guard maps what a handler throws", async () => {
  const bare = errorTable([on(NotFound, { code: Code.NotFound, reason: "THING_NOT_FOUND" })]);
  const other = bare.map(new Error("boom"));
  assert.equal(other.code, Code.Unknown);
  assert.equal(errorInfoOf(other), undefined);
  const handler = bare.guard(async (id: string) => {
    throw new NotFound(`no thing '${id}'`);
  });
  await assert.rejects(handler("y"), (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound && err.rawMessage === "no thing 'y'");
});
