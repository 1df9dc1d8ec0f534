import assert from "node:assert/strict";
import { test } from "node:test";
import type { CheckVerdict } from "../../src/ops/checks.js";
import { HealthMonitor } from "../../src/ops/health.js";
import { sharedFor } from "../../src/server/status-cache.js";

/** A monitor with one check whose status the test sets, and a GetStatus-like answer shared as the server shares it. */
function world() {
  let status: CheckVerdict = "ok";
  // cacheMs 0: every /health/ready-like evaluate() is a new verdict.
  const monitor = new HealthMonitor(0);
  monitor.addCheck({ name: "database", run: async () => ({ status, message: status }) });
  let computed = 0;
  const getStatus = sharedFor(
    60_000,
    async () => {
      computed++;
      const e = await monitor.evaluate();
      return { verdict: e.verdict, shuttingDown: monitor.shuttingDown };
    },
    () => monitor.generation,
  );
  return { monitor, getStatus, set: (s: CheckVerdict) => (status = s), computed: () => computed };
}

test("the shared status is reused while no newer health verdict exists", async () => {
  const w = world();
  assert.equal((await w.getStatus()).verdict, "ok");
  assert.equal((await w.getStatus()).verdict, "ok");
  assert.equal(w.computed(), 1, "its own evaluation does not make it stale");
});

test("once a newer evaluation (a /health/ready probe) saw a check fail, the shared status says so too", async () => {
  const w = world();
  assert.equal((await w.getStatus()).verdict, "ok");
  w.set("fail");
  assert.equal((await w.monitor.evaluate()).verdict, "fail");
  assert.equal((await w.getStatus()).verdict, "fail");
  assert.equal(w.computed(), 2);
});

test("shutdown makes the shared status stale at once", async () => {
  const w = world();
  assert.equal((await w.getStatus()).shuttingDown, false);
  w.monitor.beginShutdown();
  const after = await w.getStatus();
  assert.deepEqual(after, { verdict: "fail", shuttingDown: true });
});
