import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { LogRing } from "../../src/ops/log-ring.js";
import { logsService } from "../../src/ops/logs-service.js";
import { until } from "../helpers/wait.js";

test("FollowLogs: at most maxFollowers streams at once; a closed one frees its place", async () => {
  const ring = new LogRing();
  ring.append({ time: 1, level: "info", component: "test", message: "hello", fields: {} });
  const shutdown = new AbortController();
  const client = createClient(
    OpsService,
    createRouterTransport(({ service }) => service(OpsService, logsService(ring, shutdown.signal, { maxFollowers: 2 }))),
  );
  const open = async (signal: AbortSignal) => {
    const it = client.followLogs({ tail: 1 }, { signal })[Symbol.asyncIterator]();
    const first = await it.next();
    return { it, first };
  };
  const a = new AbortController();
  const b = new AbortController();
  const first = await open(a.signal);
  assert.equal(first.first.value?.event.case, "entry");
  await open(b.signal);
  await assert.rejects(open(new AbortController().signal), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.rawMessage, "2 log streams are open already (logs.maxFollowers); close one (e.g. another 'cara logs -f') or use TailLogs");
    return true;
  });
  a.abort();
  await first.it.next().catch(() => undefined);
  // The server side notices the cancel asynchronously: retry until the place is free.
  const third = await until("a new follower to be accepted once one left", () => open(new AbortController().signal), 5_000);
  assert.equal(third.first.value?.event.case, "entry");
  shutdown.abort();
  b.abort();
});
