import assert from "node:assert/strict";
import { test } from "node:test";
import { FailedAuthLimiter } from "../../src/server/auth.js";

test("the limiter blocks an address after 10 failures within a minute, until the window passes", () => {
  let now = 1_000_000;
  const limiter = new FailedAuthLimiter({ now: () => now });
  for (let i = 0; i < 10; i++) {
    assert.equal(limiter.blockedForMs("10.0.0.1"), 0);
    limiter.recordFailure("10.0.0.1");
    now += 1000;
  }
  // 10 failures at t=0..9s: blocked until the first leaves the window at t=60s.
  assert.equal(limiter.blockedForMs("10.0.0.1"), 50_000);
  assert.equal(limiter.blockedForMs("10.0.0.2"), 0, "other addresses are not affected");
  now += 50_000;
  assert.equal(limiter.blockedForMs("10.0.0.1"), 0);
});

test("failures spread over more than a minute never block", () => {
  let now = 0;
  const limiter = new FailedAuthLimiter({ now: () => now });
  for (let i = 0; i < 30; i++) {
    limiter.recordFailure("a");
    now += 7_000;
    assert.equal(limiter.blockedForMs("a"), 0);
  }
});

test("the limiter tracks a bounded number of addresses", () => {
  const limiter = new FailedAuthLimiter({ maxAddresses: 3, maxFailures: 1 });
  for (const a of ["a", "b", "c", "d"]) limiter.recordFailure(a);
  assert.equal(limiter.blockedForMs("a"), 0, "the oldest address was evicted");
  assert.ok(limiter.blockedForMs("d") > 0);
});
