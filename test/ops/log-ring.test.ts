import assert from "node:assert/strict";
import { test } from "node:test";
import { compileLogPattern, loadLogPatternEngine } from "../../src/ops/log-pattern.js";
import { LogRing, isDroppedMarker, type FollowItem, type LogEntry, type LogLevel, type NewLogEntry } from "../../src/ops/log-ring.js";

await loadLogPatternEngine();

function rec(message: string, level: LogLevel = "info", component = "test", fields: Record<string, unknown> = {}): NewLogEntry {
  return { time: 1_700_000_000_000, level, component, message, fields };
}

function fill(ring: LogRing, n: number, make: (i: number) => NewLogEntry = (i) => rec(`m${i}`)): void {
  for (let i = 1; i <= n; i++) ring.append(make(i));
}

const messages = (entries: readonly LogEntry[]) => entries.map((e) => e.message);

test("tail returns the newest entries oldest first, with seq from 1", () => {
  const ring = new LogRing({ capacity: 10 });
  assert.deepEqual(ring.tail(), { entries: [], nextSeq: 0, reset: false, truncated: false });
  fill(ring, 5);
  const r = ring.tail({ limit: 3 });
  assert.deepEqual(messages(r.entries), ["m3", "m4", "m5"]);
  assert.deepEqual(
    r.entries.map((e) => e.seq),
    [3, 4, 5],
  );
  assert.equal(r.nextSeq, 5);
  assert.equal(r.reset, false);
  assert.equal(r.truncated, false);
  assert.deepEqual(ring.stats(), {
    size: 5,
    capacity: 10,
    lastSeq: 5,
    bytes: ring.stats().bytes,
    subscribers: 0,
    appendedByLevel: { trace: 0, debug: 0, info: 5, warn: 0, error: 0, fatal: 0 },
    droppedForFollowers: 0,
  });
});

test("tail filters by level, substring (message or component) and pattern", () => {
  const ring = new LogRing();
  ring.append(rec("started", "debug", "server"));
  ring.append(rec("task 1 failed", "error", "tasks"));
  ring.append(rec("task 2 ok", "info", "tasks"));
  ring.append(rec("disk low", "warn", "status"));
  ring.append(rec("fatal crash", "fatal", "server"));
  assert.deepEqual(messages(ring.tail({ minLevel: "warn" }).entries), ["task 1 failed", "disk low", "fatal crash"]);
  assert.deepEqual(messages(ring.tail({ contains: "task" }).entries), ["task 1 failed", "task 2 ok"]);
  assert.deepEqual(messages(ring.tail({ contains: "server" }).entries), ["started", "fatal crash"], "component matches");
  assert.deepEqual(messages(ring.tail({ contains: "Task" }).entries), [], "case-sensitive");
  assert.deepEqual(messages(ring.tail({ pattern: compileLogPattern("^task \\d+ (ok|failed)$") }).entries), ["task 1 failed", "task 2 ok"]);
  assert.deepEqual(messages(ring.tail({ pattern: /^disk/ }).entries), ["disk low"]);
  assert.deepEqual(messages(ring.tail({ minLevel: "error", contains: "task", limit: 5 }).entries), ["task 1 failed"]);
  assert.deepEqual(messages(ring.tail({ contains: "a", limit: 2 }).entries), ["disk low", "fatal crash"], "newest matches");
});

test("tail cursor returns only newer entries; nextSeq is the newest seq considered", () => {
  const ring = new LogRing({ capacity: 10 });
  fill(ring, 4);
  const first = ring.tail();
  assert.equal(first.nextSeq, 4);
  assert.deepEqual(messages(ring.tail({ afterSeq: first.nextSeq }).entries), []);
  ring.append(rec("m5"));
  ring.append(rec("m6", "debug"));
  const next = ring.tail({ afterSeq: first.nextSeq, minLevel: "info" });
  assert.deepEqual(messages(next.entries), ["m5"]);
  assert.equal(next.nextSeq, 6, "non-matching newer entries are considered too");
  assert.equal(next.reset, false);
});

test("tail sets reset when the cursor fell out of the ring after it wrapped, or is ahead of it", () => {
  const ring = new LogRing({ capacity: 5 });
  fill(ring, 12); // holds 8..12
  assert.equal(ring.oldestSeq, 8);
  const kept = ring.tail({ afterSeq: 7 });
  assert.equal(kept.reset, false, "afterSeq = oldest - 1 loses nothing");
  assert.deepEqual(messages(kept.entries), ["m8", "m9", "m10", "m11", "m12"]);
  const lost = ring.tail({ afterSeq: 6, limit: 2 });
  assert.equal(lost.reset, true);
  assert.deepEqual(messages(lost.entries), ["m11", "m12"]);
  assert.equal(lost.nextSeq, 12);
  assert.equal(ring.tail({ afterSeq: 0 }).reset, true);
  assert.equal(ring.tail({ afterSeq: 99 }).reset, true, "a cursor from an earlier process");
  assert.equal(ring.tail({ afterSeq: 12 }).reset, false);
});

test("tail cuts the oldest entries to maxBytes (message + JSON of fields) and keeps at least one", () => {
  const ring = new LogRing();
  fill(ring, 5, (i) => rec(`${i}`.repeat(10), "info", "c", { n: i })); // 10 + JSON {"n":i} (7) = 17 bytes
  const r = ring.tail({ maxBytes: 40 });
  assert.deepEqual(
    r.entries.map((e) => e.seq),
    [4, 5],
  );
  assert.equal(r.truncated, true);
  const exact = ring.tail({ maxBytes: 34 });
  assert.deepEqual(
    exact.entries.map((e) => e.seq),
    [4, 5],
  );
  assert.equal(ring.tail({ maxBytes: 85 }).truncated, false);
  const one = ring.tail({ maxBytes: 1 });
  assert.deepEqual(
    one.entries.map((e) => e.seq),
    [5],
  );
  assert.equal(one.truncated, true);
  assert.equal(ring.tail({ limit: 2, maxBytes: 1000 }).truncated, false, "limit alone does not set truncated");
});

test("capacity is clamped to 1..50,000 and the memory budget evicts the oldest", () => {
  assert.equal(new LogRing({ capacity: 1_000_000 }).capacity, 50_000);
  assert.equal(new LogRing({ capacity: 0 }).capacity, 1);
  assert.equal(new LogRing().capacity, 5_000);
  const ring = new LogRing({ capacity: 100, maxBytes: 100 });
  for (let i = 1; i <= 10; i++) ring.append(rec(`m${i}`), 30);
  assert.equal(ring.stats().size, 3);
  assert.equal(ring.stats().bytes, 90);
  assert.deepEqual(messages(ring.tail().entries), ["m8", "m9", "m10"]);
});

test("appendLine keeps the serialized record and decodes it when read", () => {
  let decoded = 0;
  const ring = new LogRing({
    decodeLine: (line) => {
      decoded++;
      const r = JSON.parse(line) as { msg: string; level: LogLevel; component: string; n: number };
      return { time: 5, level: r.level, component: r.component, message: r.msg, fields: { n: r.n } };
    },
  });
  for (let i = 1; i <= 3; i++)
    ring.appendLine(`{"level":"${i === 2 ? "warn" : "info"}","component":"c","n":${i},"msg":"line ${i}"}\n`, i === 2 ? "warn" : "info");
  assert.equal(decoded, 0);
  assert.deepEqual(ring.tail({ minLevel: "warn" }).entries, [{ seq: 2, time: 5, level: "warn", component: "c", message: "line 2", fields: { n: 2 } }]);
  assert.equal(decoded, 1, "the level filter needs no decoding");
  assert.deepEqual(messages(ring.tail({ contains: "line 3" }).entries), ["line 3"]);
  assert.equal(decoded, 2, "lines without the substring are skipped undecoded");
});

async function take(sub: AsyncIterator<FollowItem>, n: number): Promise<FollowItem[]> {
  const out: FollowItem[] = [];
  for (let i = 0; i < n; i++) {
    const r = await sub.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

test("subscribe delivers matching entries appended later, in order", async () => {
  const ring = new LogRing();
  ring.append(rec("before"));
  const sub = ring.subscribe({ minLevel: "info", contains: "x" });
  const pending = sub.next();
  ring.append(rec("x1"));
  ring.append(rec("x2", "debug"));
  ring.append(rec("y"));
  ring.append(rec("x3", "error"));
  assert.equal(((await pending).value as LogEntry).message, "x1");
  assert.deepEqual(messages((await take(sub, 1)) as LogEntry[]), ["x3"]);
  assert.equal(ring.stats().subscribers, 1);
  sub.close();
  assert.equal(ring.stats().subscribers, 0);
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
});

test("a slow subscriber stays bounded, gets a dropped marker, then continues", async () => {
  const ring = new LogRing({ capacity: 50_000 });
  const sub = ring.subscribe({}, { bufferLimit: 100 });
  fill(ring, 10_000);
  assert.equal(sub.pending, 100, "memory is bounded by the buffer");
  assert.equal(sub.droppedTotal, 9_900);
  const items = await take(sub, 3);
  assert.deepEqual(items[0], { dropped: 9_900 });
  assert.equal(isDroppedMarker(items[0] as FollowItem), true);
  assert.deepEqual(messages(items.slice(1) as LogEntry[]), ["m9901", "m9902"]);
  ring.append(rec("live"));
  const rest = await take(sub, 99);
  assert.equal((rest.at(-1) as LogEntry).message, "live");
  assert.equal(sub.pending, 0);
  sub.close();
});

test("follow sends the last N matching entries, then live ones; closeAll ends it after the queue", async () => {
  const ring = new LogRing();
  fill(ring, 10, (i) => rec(`m${i}`, i % 2 === 0 ? "warn" : "info"));
  const sub = ring.follow({ tail: 2, filter: { minLevel: "warn" } });
  ring.append(rec("live warn", "warn"));
  ring.append(rec("live info", "info"));
  assert.deepEqual(messages((await take(sub, 3)) as LogEntry[]), ["m8", "m10", "live warn"]);
  ring.append(rec("last", "error"));
  ring.closeAll();
  assert.equal(sub.closed, true);
  assert.deepEqual(messages((await take(sub, 5)) as LogEntry[]), ["last"]);
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
});

test("follow from a cursor: the held entries after it, with a dropped marker when some were evicted", async () => {
  const ring = new LogRing({ capacity: 5 });
  fill(ring, 8); // holds 4..8
  assert.deepEqual(messages((await take(ring.follow({ afterSeq: 6 }), 2)) as LogEntry[]), ["m7", "m8"]);
  const lost = ring.follow({ afterSeq: 1 });
  const items = await take(lost, 6);
  assert.deepEqual(items[0], { dropped: 2 });
  assert.deepEqual(messages(items.slice(1) as LogEntry[]), ["m4", "m5", "m6", "m7", "m8"]);
  const ahead = ring.follow({ afterSeq: 100, tail: 1 });
  assert.deepEqual(messages((await take(ahead, 1)) as LogEntry[]), ["m8"], "a cursor ahead of the ring means the last `tail`");
  ring.closeAll();
});

test("aborting or breaking out of a subscription ends it at once", async () => {
  const ring = new LogRing();
  const controller = new AbortController();
  const sub = ring.subscribe({}, { signal: controller.signal });
  const waiting = sub.next();
  controller.abort();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  assert.equal(ring.stats().subscribers, 0);

  const sub2 = ring.subscribe();
  fill(ring, 3);
  const seen: string[] = [];
  for await (const item of sub2) {
    seen.push((item as LogEntry).message);
    break;
  }
  assert.deepEqual(seen, ["m1"]);
  assert.equal(sub2.pending, 0);
  assert.equal(ring.stats().subscribers, 0);
});

test("a slow follower's live queue is bounded in bytes, not only in records", async () => {
  const ring = new LogRing({ capacity: 50_000 });
  const sub = ring.subscribe({}, { bufferLimit: 10_000, bufferBytes: 64 * 1024 });
  const big = "x".repeat(1000);
  fill(ring, 1_000, (i) => rec(`${i} ${big}`));
  assert.ok(sub.pendingBytes <= 64 * 1024, `${sub.pendingBytes} bytes queued`);
  assert.ok(sub.pending < 70, `${sub.pending} records queued`);
  const [first] = await take(sub, 1);
  assert.deepEqual(first, { dropped: 1_000 - sub.pending });
  sub.close();
});

test("a follower's backlog holds positions, not records: what the ring evicts before it is read is reported dropped", async () => {
  const ring = new LogRing({ capacity: 100 });
  fill(ring, 100);
  const sub = ring.follow({ afterSeq: 0 });
  assert.equal(sub.pending, 100);
  assert.equal(sub.pendingBytes, 0, "no record is held for the backlog");
  assert.deepEqual(messages((await take(sub, 2)) as LogEntry[]), ["m1", "m2"]);
  fill(ring, 50, (i) => rec(`n${i}`)); // evicts m1..m50; m3..m50 were still unread
  const items = await take(sub, 3);
  assert.deepEqual(items[0], { dropped: 48 });
  assert.deepEqual(messages(items.slice(1) as LogEntry[]), ["m51", "m52"]);
  sub.close();
});

test("a text filter matches structured fields too (task ids, error codes), in tail and follow", async () => {
  const ring = new LogRing();
  ring.append(rec("task attempt finished", "info", "tasks", { taskId: "7d4d14c2-a9ae", outcome: "done" }));
  ring.append(rec("other", "info", "tasks", { taskId: "ffff" }));
  ring.append(rec("rejected", "warn", "server", { err: { code: "ENOSPC" }, attempts: [3, 41] }));
  assert.deepEqual(messages(ring.tail({ contains: "7d4d14c2" }).entries), ["task attempt finished"]);
  assert.deepEqual(messages(ring.tail({ contains: "ENOSPC" }).entries), ["rejected"]);
  assert.deepEqual(messages(ring.tail({ contains: "41" }).entries), ["rejected"]);
  const sub = ring.follow({ tail: 0, filter: { contains: "beef" } });
  ring.append(rec("unrelated"));
  ring.append(rec("with id", "info", "tasks", { taskId: "dead-beef" }));
  assert.deepEqual(messages((await take(sub, 1)) as LogEntry[]), ["with id"]);
  sub.close();
});
