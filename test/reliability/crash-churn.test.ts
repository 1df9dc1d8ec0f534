// Crash rounds for task churn: clients create, relabel, cancel and retry tasks (and the worker
// claims and runs others) while the server is killed with SIGKILL at a seeded random moment.
// After every restart, each task is in the state of its last acknowledged change, or of the
// one change that was in flight when the server died: never older, never a mix.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { SEED, seeded, sleep, tally } from "./support.js";

interface Expect {
  state: string;
  v: number;
}

interface Tracked {
  id: string;
  acked: Expect;
  inFlight?: Expect;
}

const ROUNDS = Number(process.env.RELIABILITY_CRASH_ROUNDS ?? 10);
const CLIENTS = 8;

test(`task churn survives ${ROUNDS} SIGKILLs at random moments (seed ${SEED})`, async () => {
  const rnd = seeded(SEED);
  const stateDir = join(await tempDir("cara-churn-"), "state");
  const tracked: Tracked[] = [];
  const runnable = new Set<string>();
  let checked = 0;
  let held = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const s = await startCara({ stateDir });
    // Every acknowledged change of earlier rounds is here, in its acknowledged (or in-flight) state.
    const live = await allTasks(s);
    for (const t of tracked) {
      const got = live.get(t.id);
      checked++;
      const ok = got !== undefined && [t.acked, t.inFlight].some((e) => e !== undefined && e.state === got.state && e.v === got.v);
      assert.ok(ok, `round ${round}: task ${t.id} is ${JSON.stringify(got)}, acknowledged ${JSON.stringify(t.acked)}, in flight ${JSON.stringify(t.inFlight)}`);
      held++;
      if (got) t.acked = got;
      delete t.inFlight;
    }
    for (const id of runnable) {
      checked++;
      const got = live.get(id);
      assert.ok(got && ["queued", "retry_wait", "running", "done"].includes(got.state), `round ${round}: runnable task ${id} is ${JSON.stringify(got)}`);
      held++;
    }

    let stop = false;
    const clients = Array.from({ length: CLIENTS }, (_, n) => churn(s, rnd, tracked, runnable, n, () => stop));
    await sleep(rnd.int(150, 1_200));
    s.proc.kill("SIGKILL");
    await s.exited;
    stop = true;
    await Promise.allSettled(clients);
  }
  const s = await startCara({ stateDir });
  const live = await allTasks(s);
  for (const t of tracked) {
    checked++;
    const got = live.get(t.id);
    assert.ok(got && [t.acked, t.inFlight].some((e) => e !== undefined && e.state === got.state && e.v === got.v), `final: task ${t.id}`);
    held++;
  }
  await s.stop();
  await tally("crash: task churn", { tried: checked, held, unit: `task checks over ${ROUNDS} SIGKILLs (${tracked.length + runnable.size} tasks)` });
});

async function allTasks(s: CaraServer): Promise<Map<string, Expect>> {
  const out = new Map<string, Expect>();
  for (let token = ""; ; ) {
    const page = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000, pageToken: token }, s.token);
    assert.equal(page.status, 200, JSON.stringify(page.json));
    for (const t of page.json.tasks ?? [])
      out.set(t.id, {
        state: String(t.state)
          .replace(/^TASK_STATE_/, "")
          .toLowerCase(),
        v: Number(t.labels?.v ?? -1),
      });
    token = page.json.nextPageToken ?? "";
    if (!token) return out;
  }
}

/** One client: random changes to its own tasks until the server dies. */
async function churn(
  s: CaraServer,
  rnd: ReturnType<typeof seeded>,
  tracked: Tracked[],
  runnable: Set<string>,
  client: number,
  stopped: () => boolean,
): Promise<void> {
  const mine: Tracked[] = [];
  const call = (method: string, body: unknown) => connectJson(s, `carapace.tasks.v1.TasksService/${method}`, body, s.token);
  const later = () => String(Date.now() + 3_600_000);
  while (!stopped()) {
    const roll = rnd.next();
    try {
      if (mine.length === 0 || roll < 0.3) {
        // Created far in the future so the worker leaves it alone; its label v versions it.
        const res = await call("CreateTask", {
          payload: { systemEvent: { text: `churn ${client}` } },
          nextRunAtMs: later(),
          labels: { v: "0", c: String(client) },
        });
        if (res.status !== 200) continue;
        const t: Tracked = { id: res.json.task.id, acked: { state: "queued", v: 0 } };
        mine.push(t);
        tracked.push(t);
      } else if (roll < 0.4) {
        // Work for the worker: claimed, run, finished (or recovered after a kill).
        const res = await call("CreateTask", { payload: { systemEvent: { text: `run ${client}` } } });
        if (res.status === 200) runnable.add(res.json.task.id);
      } else {
        const t = rnd.pick(mine);
        const next = t.acked.v + 1;
        let method: string;
        let body: Record<string, unknown>;
        let expect: Expect;
        if (t.acked.state === "queued" && roll < 0.6) {
          [method, body, expect] = ["CancelTask", { id: t.id }, { state: "cancelled", v: t.acked.v }];
        } else if (t.acked.state === "cancelled" && roll < 0.7) {
          [method, body, expect] = ["RetryTask", { id: t.id, delayMs: "3600000" }, { state: "retry_wait", v: t.acked.v }];
        } else {
          [method, body, expect] = ["UpdateTask", { id: t.id, setLabels: { v: String(next) } }, { state: t.acked.state, v: next }];
        }
        t.inFlight = expect;
        const res = await call(method, body);
        if (res.status === 200) {
          t.acked = expect;
          delete t.inFlight;
        } else if (res.status < 500) {
          delete t.inFlight; // refused: nothing changed
        }
      }
    } catch {
      // the server died under this call: its change may or may not have landed (inFlight)
      return;
    }
  }
}
