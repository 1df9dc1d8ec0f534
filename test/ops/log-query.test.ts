import assert from "node:assert/strict";
import { test } from "node:test";
import { checkFollowQuery, checkTailQuery, isLogQueryError, parseLogLevel } from "../../src/ops/log-query.js";
import { levelFromWire } from "../../src/ops/logs-service.js";
import type { LogLevel as LogLevelValue } from "../../gen/carapace/ops/v1/ops_pb.js";
import { loadLogPatternEngine } from "../../src/ops/log-pattern.js";

await loadLogPatternEngine();

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isLogQueryError(err));
    return (err as Error).message;
  }
  assert.fail("no error");
}

test("tail query defaults and accepted bounds", () => {
  const q = checkTailQuery({});
  assert.deepEqual([q.limit, q.maxBytes, q.afterSeq, q.minLevel, q.contains, q.pattern], [200, 262144, undefined, undefined, undefined, undefined]);
  const full = checkTailQuery({ limit: 5000, maxBytes: 1048576, afterSeq: 12n, minLevel: "WARNING", contains: "task", pattern: "^x" });
  assert.deepEqual([full.limit, full.maxBytes, full.afterSeq, full.minLevel, full.contains], [5000, 1048576, 12, "warn", "task"]);
  assert.equal(full.pattern?.test("xy"), true);
  assert.deepEqual(checkTailQuery({ minLevel: "", contains: "", pattern: "" }).pattern, undefined, "empty strings mean unset");
});

test("bad tail and follow parameters name the field and the range", () => {
  assert.equal(
    message(() => checkTailQuery({ limit: 0 })),
    "limit: must be an integer from 1 to 5000 (got 0)",
  );
  assert.equal(
    message(() => checkTailQuery({ limit: -3 })),
    "limit: must be an integer from 1 to 5000 (got -3)",
  );
  assert.equal(
    message(() => checkTailQuery({ limit: 5001 })),
    "limit: must be an integer from 1 to 5000 (got 5001)",
  );
  assert.equal(
    message(() => checkTailQuery({ maxBytes: 1048577 })),
    "max_bytes: must be an integer from 1 to 1048576 (got 1048577)",
  );
  assert.equal(
    message(() => checkTailQuery({ afterSeq: -1 })),
    "after_seq: must be an integer of 0 or more (got -1)",
  );
  assert.equal(
    message(() => checkTailQuery({ minLevel: "verbose" })),
    "min_level: unknown log level 'verbose'; use one of trace, debug, info, warn, error, fatal",
  );
  assert.equal(
    message(() => checkTailQuery({ pattern: "(a+)+" })),
    "pattern: nested quantifier '(a+)+' can backtrack catastrophically; simplify it",
  );
  assert.equal(
    message(() => checkFollowQuery({ tail: 5001 })),
    "tail: must be an integer from 0 to 5000 (got 5001)",
  );
  assert.equal(checkFollowQuery({ tail: 0 }).tail, 0);
});

test("levels by name and by API number", () => {
  assert.equal(parseLogLevel("Error"), "error");
  assert.equal(levelFromWire(0), undefined);
  assert.equal(levelFromWire(1), "trace");
  assert.equal(levelFromWire(6), "fatal");
  assert.equal(
    message(() => levelFromWire(7 as LogLevelValue)),
    "min_level: unknown log level 7; use 1 (trace) to 6 (fatal), or 0 for all levels",
  );
});
