import assert from "node:assert/strict";
import { test } from "node:test";
import { clientAddress, FailedAuthLimiter } from "../../src/server/auth.js";

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

test("failures from many addresses together are bounded too (one attacker, many addresses)", () => {
  let now = 0;
  const limiter = new FailedAuthLimiter({ now: () => now, maxGlobalFailures: 100 });
  for (let i = 0; i < 100; i++) limiter.recordFailure(`127.0.0.${i + 2}`);
  assert.deepEqual(limiter.blocked("127.0.0.200"), { waitMs: 60_000, scope: "all" });
  now += 60_000;
  assert.equal(limiter.blocked("127.0.0.200"), undefined);
});

test("clientAddress trusts X-Forwarded-For only from a configured proxy, and takes the rightmost untrusted hop", () => {
  const proxies = new Set(["10.0.0.1", "10.0.0.2"]);
  assert.equal(clientAddress("::ffff:127.0.0.1", "6.6.6.6", proxies), "127.0.0.1");
  assert.equal(clientAddress("10.0.0.1", "6.6.6.6, 203.0.113.9", proxies), "203.0.113.9");
  assert.equal(clientAddress("10.0.0.1", "203.0.113.9, 10.0.0.2", proxies), "203.0.113.9");
  assert.equal(clientAddress("10.0.0.1", undefined, proxies), "10.0.0.1");
  assert.equal(clientAddress("::ffff:10.0.0.1", "[2001:db8::1]", proxies), "2001:db8::1");
});
