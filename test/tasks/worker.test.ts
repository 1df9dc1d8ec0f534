import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { DEFAULT_POLICY, type TaskRecord } from "../../src/tasks/model.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { agentTurnExecutor, RecentEvents, systemEventExecutor } from "../../src/tasks/executors.js";
import { Worker, type Executor } from "../../src/tasks/worker.js";
import { tempDir } from "../helpers/cara.js";

async function openStore(): Promise<FileTaskStore> {
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir, { mode: 0o700 });
  return FileTaskStore.open({ dir });
}

/** Resolves with the task once `pred` holds (store change events), or rejects after `ms`. */
function waitFor(store: FileTaskStore, id: string, pred: (t: TaskRecord) => boolean, ms = 5000): Promise<TaskRecord> {
  const now = store.get(id);
  if (now && pred(now)) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      store.events.off("change", on);
      reject(new Error(`timed out; task is ${JSON.stringify(store.get(id))}`));
    }, ms);
    const on = (t: TaskRecord) => {
      if (t.id === id && pred(t)) {
        clearTimeout(timer);
        store.events.off("change", on);
        resolve(t);
      }
    };
    store.events.on("change", on);
  });
}

/** A one-shot event: `fire()` resolves `fired`. */
function signal(): { fire(): void; fired: Promise<void> } {
  let fire!: () => void;
  const fired = new Promise<void>((resolve) => (fire = resolve));
  return { fire, fired };
}

/** A worker log that resolves `next(message)` when that message is logged. */
function logRecorder() {
  const waiting = new Map<string, () => void>();
  const on = (_obj: object, msg: string) => waiting.get(msg)?.();
  return {
    info: on,
    warn: on,
    next: (message: string) => new Promise<void>((resolve) => waiting.set(message, resolve)),
  };
}

const create = (store: FileTaskStore, payload: Record<string, unknown>, policy: Partial<typeof DEFAULT_POLICY> = {}) =>
  store
    .create({ payload: payload as TaskRecord["payload"], policy: { ...DEFAULT_POLICY, ...policy }, policyExplicit: true, nextRunAtMs: null })
    .then((r) => r.task);

async function llmServer(handler: http.RequestListener): Promise<{ url: string; requests: unknown[]; close(): Promise<void> }> {
  const requests: unknown[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c));
    req.on("end", () => {
      requests.push({ path: req.url, auth: req.headers.authorization, body: body ? JSON.parse(body) : undefined });
      handler(req, res);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

test("systemEvent runs to done and is recorded in the recent events", async () => {
  const store = await openStore();
  const events = new RecentEvents();
  const worker = new Worker(store, { systemEvent: systemEventExecutor(events, () => undefined) }, { pollMs: 50 });
  worker.start();
  const t = await create(store, { kind: "systemEvent", text: "deployed" });
  const done = await waitFor(store, t.id, (x) => x.state === "done");
  assert.deepEqual([done.attempts, done.lastError, done.nextRunAtMs], [1, null, null]);
  assert.equal(events.list()[0]?.text, "deployed");
  await worker.stop(1000);
  await store.close();
});

test("agentTurn against a real local HTTP endpoint: 200 -> done with the reply; the key is sent", async () => {
  const llm = await llmServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: "chatcmpl-1", choices: [{ message: { role: "assistant", content: "all quiet" } }] }));
  });
  const store = await openStore();
  const worker = new Worker(store, { agentTurn: agentTurnExecutor(() => ({ baseUrl: llm.url, model: "m1", apiKey: "sk-test" })) }, { pollMs: 50 });
  worker.start();
  const t = await create(store, { kind: "agentTurn", message: "status?" });
  const done = await waitFor(store, t.id, (x) => x.state === "done");
  assert.equal(done.result, "all quiet");
  assert.deepEqual(done.runIds, ["chatcmpl-1"]);
  assert.equal(done.turnsUsed, 1);
  assert.deepEqual(llm.requests[0], {
    path: "/v1/chat/completions",
    auth: "Bearer sk-test",
    body: { model: "m1", messages: [{ role: "user", content: "status?" }] },
  });
  await worker.stop(1000);
  await store.close();
  await llm.close();
});

test("agentTurn: 500 -> retry_wait with backoff; 401 -> blocked; no endpoint -> retry 60 s, then blocked at maxAttempts", async () => {
  let status = 500;
  const llm = await llmServer((_req, res) => {
    res.writeHead(status);
    res.end("{}");
  });
  const store = await openStore();
  let baseUrl: string | undefined = llm.url;
  const worker = new Worker(
    store,
    { agentTurn: agentTurnExecutor(() => ({ ...(baseUrl ? { baseUrl } : {}), model: "m" })) },
    { pollMs: 50, backoff: { baseMs: 60_000, factor: 2, capMs: 300_000 } },
  );
  worker.start();
  const t1 = await create(store, { kind: "agentTurn", message: "a" });
  const waiting = await waitFor(store, t1.id, (x) => x.state === "retry_wait");
  assert.equal(waiting.lastError, "LLM endpoint answered HTTP 500");
  assert.ok(waiting.nextRunAtMs! >= waiting.updatedAtMs && waiting.nextRunAtMs! < waiting.updatedAtMs + 60_000, "backoff within [0, base)");

  status = 401;
  const t2 = await create(store, { kind: "agentTurn", message: "b" });
  const blocked = await waitFor(store, t2.id, (x) => x.state === "blocked");
  assert.deepEqual(
    [blocked.blockedReason, blocked.lastError],
    ["config_missing", "LLM endpoint refused the credentials (HTTP 401); check CARAPACE_AGENT_API_KEY"],
  );

  baseUrl = undefined;
  // No provider: blocked at once (attempts left or not), naming every setting.
  const t3 = await create(store, { kind: "agentTurn", message: "c" }, { maxAttempts: 5 });
  const noProvider = await waitFor(store, t3.id, (x) => x.state === "blocked");
  assert.deepEqual(
    [noProvider.blockedReason, noProvider.lastError, noProvider.attempts, noProvider.nextRunAtMs],
    [
      "config_missing",
      "no LLM provider configured: set agent.baseUrl and agent.model in config.json and the key in CARAPACE_AGENT_API_KEY, then resume the task",
      1,
      null,
    ],
  );
  await worker.stop(1000);
  await store.close();
  await llm.close();
});

test("retryable failures stop at maxAttempts with failed", async () => {
  const store = await openStore();
  const flaky: Executor = async () => ({ kind: "retry", error: "flaky", delayMs: 0 });
  const worker = new Worker(store, { systemEvent: flaky }, { pollMs: 20 });
  worker.start();
  const t = await create(store, { kind: "systemEvent", text: "x" }, { maxAttempts: 3 });
  const failed = await waitFor(store, t.id, (x) => x.state === "failed");
  assert.deepEqual([failed.attempts, failed.lastError], [3, "flaky (retry limit reached: 3)"]);
  await worker.stop(1000);
  await store.close();
});

test("the per-attempt timeout aborts the executor's work through its AbortSignal", async () => {
  const llm = await llmServer(() => {
    /* never answers */
  });
  const store = await openStore();
  const worker = new Worker(
    store,
    { agentTurn: agentTurnExecutor(() => ({ baseUrl: llm.url, model: "m" })) },
    { pollMs: 20, backoff: { baseMs: 60_000, factor: 2, capMs: 60_000 } },
  );
  worker.start();
  const t = await create(store, { kind: "agentTurn", message: "slow", timeoutSeconds: 1 });
  const waited = await waitFor(store, t.id, (x) => x.state === "retry_wait", 4000);
  assert.equal(waited.lastError, "attempt timed out after 1s");
  assert.equal(worker.busy, 0, "the slot is free again");
  assert.equal(worker.leasesRescued, 0, "the executor stopped when aborted: no lease rescue needed");
  await worker.stop(1000);
  await store.close();
  await llm.close();
});

test("a hung executor that ignores its signal loses its lease and is rescued to retry_wait without a restart", async () => {
  const store = await openStore();
  let release: (() => void) | undefined;
  const started = signal();
  const hung: Executor = () => {
    started.fire(); // the attempt holds its lease from here
    return new Promise((resolve) => (release = () => resolve({ kind: "done", result: "too late" })));
  };
  const log = logRecorder();
  const worker = new Worker(store, { systemEvent: hung }, { pollMs: 20, leaseGraceMs: 200, backoff: { baseMs: 60_000, factor: 2, capMs: 60_000 }, log });
  worker.start();
  const t = await create(store, { kind: "systemEvent", text: "hang" }, { maxRunTimeoutSeconds: 1 });
  await started.fired;
  const lease = worker.lease(t.id);
  assert.ok(lease, "a running attempt holds a lease");
  assert.equal(lease.expiresAtMs - lease.acquiredAtMs, 1000 + 200, "lease = attempt deadline + grace");
  const rescued = await waitFor(store, t.id, (x) => x.state === "retry_wait", 5000);
  assert.match(rescued.lastError!, /^lease expired: the attempt did not finish by its deadline/);
  assert.equal(worker.leasesRescued, 1);
  assert.equal(worker.busy, 0);
  const ignored = log.next("ignored the result of an abandoned attempt (its lease had expired)");
  release!();
  await ignored;
  assert.equal(store.get(t.id)!.state, "retry_wait", "the late result is ignored");
  await worker.stop(1000);
  await store.close();
});

test("cancelling a running task aborts the attempt; it ends cancelled and a late result is ignored", async () => {
  const store = await openStore();
  let sawAbort = false;
  const slow: Executor = ({ signal }) =>
    new Promise((resolve) => {
      signal.addEventListener("abort", () => {
        sawAbort = true;
        setImmediate(() => resolve({ kind: "done", result: "late" }));
      });
    });
  const log = logRecorder();
  const worker = new Worker(store, { systemEvent: slow }, { pollMs: 20, log });
  worker.start();
  const t = await create(store, { kind: "systemEvent", text: "x" });
  await waitFor(store, t.id, (x) => x.state === "running");
  const { cancelTransition } = await import("../../src/tasks/model.js");
  await store.update(t.id, (cur) => cancelTransition(cur, "stop it", Date.now()));
  const finished = log.next("task attempt finished");
  assert.equal(worker.abort(t.id), true);
  assert.equal(sawAbort, true);
  await finished; // the late result came back and was recorded as nothing
  const final = store.get(t.id)!;
  assert.deepEqual([final.state, final.lastError, final.result], ["cancelled", "stop it", undefined]);
  await worker.stop(1000);
  await store.close();
});

test("priority: higher first; concurrency bounds the running attempts", async () => {
  const store = await openStore();
  const order: string[] = [];
  let running = 0;
  let peak = 0;
  // The first attempts are held until the test has seen the bound; later ones run straight on.
  const twoRunning = signal();
  const gate = signal();
  const exec: Executor = async ({ task }) => {
    running++;
    peak = Math.max(peak, running);
    order.push((task.payload as { text: string }).text);
    if (running === 2) twoRunning.fire();
    await gate.fired;
    running--;
    return { kind: "done" };
  };
  const worker = new Worker(store, { systemEvent: exec }, { pollMs: 20, concurrency: 2 });
  await create(store, { kind: "systemEvent", text: "low" });
  await store.create({ payload: { kind: "systemEvent", text: "high" }, policy: { ...DEFAULT_POLICY }, nextRunAtMs: null, priority: 10 });
  for (let i = 0; i < 4; i++) await create(store, { kind: "systemEvent", text: `n${i}` });
  const allDone = new Promise<void>((resolve) => store.events.on("change", () => store.counts().done === 6 && resolve()));
  worker.start();
  await twoRunning.fired;
  // Both slots are taken: a wake-up (the worker's next look for due tasks) starts nothing more.
  worker.wake();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([running, order.length], [2, 2]);
  gate.fire();
  await allDone;
  assert.equal(order[0], "high");
  assert.equal(peak, 2);
  assert.equal(store.counts().done, 6);
  await worker.stop(1000);
  await store.close();
});

test("a task created while the worker is claiming is claimed right after that claim, not at the next poll", async () => {
  const store = await openStore();
  // The first task's attempt lasts until the second is done: its end wakes nothing in between.
  const secondDone = signal();
  const first = await create(store, { kind: "block" });
  // The first claim takes the first task, then is held open until the second task exists (a slow
  // shared database, say).
  const claiming = signal();
  const release = signal();
  const claimDue = store.claimDue.bind(store);
  let claims = 0;
  store.claimDue = async (limit, now, skip) => {
    const claimed = await claimDue(limit, now, skip);
    if (++claims === 1) {
      claiming.fire();
      await release.fired;
    }
    return claimed;
  };
  // A poll far beyond the test's run: only a wake-up can start the second task.
  const executors: Record<string, Executor> = {
    block: async () => {
      await secondDone.fired;
      return { kind: "done" };
    },
    systemEvent: systemEventExecutor(new RecentEvents(), () => undefined),
  };
  const worker = new Worker(store, executors, { pollMs: 600_000 });
  worker.start();
  try {
    await claiming.fired;
    const second = await create(store, { kind: "systemEvent", text: "second" });
    // Its wake-up (on the next turn of the event loop) comes while the first claim is still open.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    release.fire();
    await waitFor(store, second.id, (t) => t.state === "done");
    secondDone.fire();
    await waitFor(store, first.id, (t) => t.state === "done");
  } finally {
    secondDone.fire();
    await worker.stop(1000);
    await store.close();
  }
});

test("creates of tasks due later do not make the worker walk the store; a task due now is claimed without asking it", async () => {
  const store = await openStore();
  // hasClaimable walks every stored task: it must not run once per create.
  const hasClaimable = store.hasClaimable.bind(store);
  let asked = 0;
  store.hasClaimable = (now, skip) => {
    asked++;
    return hasClaimable(now, skip);
  };
  const worker = new Worker(store, { systemEvent: systemEventExecutor(new RecentEvents(), () => undefined) }, { pollMs: 600_000 });
  worker.start();
  try {
    // The start-up tick asks once.
    await new Promise((resolve) => setImmediate(resolve));
    const atStart = asked;
    const later = Date.now() + 3_600_000;
    for (let i = 0; i < 50; i++) {
      await store.create({ payload: { kind: "systemEvent", text: `later ${i}` }, policy: { ...DEFAULT_POLICY }, policyExplicit: true, nextRunAtMs: later });
    }
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(asked, atStart, "no walk of the store for tasks due in an hour");
    const now = await create(store, { kind: "systemEvent", text: "now" });
    await waitFor(store, now.id, (t) => t.state === "done");
    assert.equal(asked, atStart, "the created task itself showed the work");
  } finally {
    await worker.stop(1000);
    await store.close();
  }
});
