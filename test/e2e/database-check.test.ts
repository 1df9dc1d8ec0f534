// The `database` check: a server on the PostgreSQL task store reports the database reachable
// with its schema version and pool use; once the cluster stops, /health/ready answers 503 with
// the check failing, and no output carries the database password. A server on the file store has
// no such check. Against a throwaway cluster of its own (stopped mid-test; test/helpers/postgres.ts);
// skipped, saying why, when PostgreSQL is not installed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { connectJson, serveCara } from "../helpers/cara.js";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.js";

const missing = postgresUnavailable();

test("the file store: no database check", async () => {
  const s = await serveCara();
  try {
    const status = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
    const names = status.json.checks.map((c: { name: string }) => c.name);
    assert.ok(names.includes("tasks"), names.join(" "));
    assert.ok(!names.includes("database"), names.join(" "));
  } finally {
    await s.stop();
  }
});

test("the PostgreSQL store: database ok with its schema version, then failing and 503 once the database is gone", {
  skip: missing && `skipped: ${missing}`,
}, async () => {
  const cluster = await startPostgres();
  let stopped = false;
  try {
    const url = await cluster.createDatabase();
    const s = await serveCara({ config: { tasks: { store: "postgres", postgres: { poolSize: 3 } } }, env: { CARAPACE_DATABASE_URL: url } });
    const outputs: string[] = [];
    try {
      const status = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
      outputs.push(JSON.stringify(status.json));
      const check = status.json.checks.find((c: { name: string }) => c.name === "database");
      assert.equal(check.status, "CHECK_STATUS_OK", JSON.stringify(check));
      assert.match(check.message, /^reachable, schema version 4; pool [0-3]\/3 in use, [0-3] idle, 0 waiting$/);
      const ready = await fetch(`${s.baseUrl}/health/ready`, { headers: { authorization: `Bearer ${s.token}` } });
      assert.equal(ready.status, 200);

      await cluster.stop();
      stopped = true;
      // The health monitor caches a verdict for 500 ms: ask until it is evaluated again.
      let res: Response;
      let body: { status: string; failing: { name: string; message: string }[] };
      const deadline = Date.now() + 10_000;
      for (;;) {
        res = await fetch(`${s.baseUrl}/health/ready`, { headers: { authorization: `Bearer ${s.token}` } });
        const text = await res.text();
        outputs.push(text);
        body = JSON.parse(text);
        if (res.status === 503 || Date.now() > deadline) break;
        await delay(100);
      }
      assert.equal(res.status, 503, JSON.stringify(body));
      const failing = body.failing.find((c) => c.name === "database");
      assert.ok(failing, JSON.stringify(body));
      assert.match(failing.message, /^cannot reach the task database postgres:\/\/cara:\*\*\*@127\.0\.0\.1:\d+\/\w+ \(.+\)$/);
      const after = await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token);
      outputs.push(JSON.stringify(after.json));
      assert.equal(after.json.checks.find((c: { name: string }) => c.name === "database").status, "CHECK_STATUS_FAIL");
    } finally {
      await s.stop();
    }
    for (const out of [...outputs, ...s.lines]) assert.ok(!out.includes(cluster.password), `the database password is in: ${out}`);
  } finally {
    if (!stopped) await cluster.stop();
  }
});
