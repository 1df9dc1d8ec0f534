import assert from "node:assert/strict";
import { copyFile, readdir, readFile, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { DEFAULT_POLICY } from "../../src/tasks/model.js";
import { TaskQueueFullError, FileTaskStore, TaskStoreCorruptError, TaskStoreWriteError } from "../../src/tasks/store.js";
import { tempDir } from "../helpers/cara.js";

const FIXTURE = new URL("../fixtures/reference-queue.json", import.meta.url).pathname;
const sys = (text: string) => ({ payload: { kind: "systemEvent" as const, text }, policy: { ...DEFAULT_POLICY }, policyExplicit: true, nextRunAtMs: null });

async function tasksDir(): Promise<string> {
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir, { mode: 0o700 });
  return dir;
}

test("a queue.json written by the reference loads unchanged; running becomes retry_wait, due now", async () => {
  const dir = await tasksDir();
  await copyFile(FIXTURE, join(dir, "queue.json"));
  const now = 1_800_000_000_000;
  const store = await FileTaskStore.open({ dir, now: () => now, retentionMs: 0 });
  assert.equal(store.size, 4);
  const ids = [...store.all()].map((t) => t.id);
  assert.deepEqual(ids, [
    "0f6a3c1e-8b7d-4c2a-9e51-2d4b6f8a0c11",
    "1a2b3c4d-0000-4000-8000-000000000002",
    "legacy-task-without-policy",
    "2b3c4d5e-0000-4000-8000-000000000003",
  ]);
  const done = store.get(ids[0]!)!;
  assert.deepEqual(
    [done.state, done.runIds, done.policyExplicit, (done.payload as { message: string }).message],
    ["done", ["run-42"], true, "summarize recent logs"],
  );
  const blocked = store.get(ids[1]!)!;
  assert.deepEqual(
    [blocked.state, blocked.blockedReason, blocked.lastError],
    ["blocked", "config_missing", "no LLM provider configured (retry limit reached: 1)"],
  );
  const legacy = store.get("legacy-task-without-policy")!;
  assert.deepEqual(legacy.policy, DEFAULT_POLICY);
  assert.equal(legacy.policyExplicit, undefined);
  const recovered = store.get(ids[3]!)!;
  assert.deepEqual([recovered.state, recovered.nextRunAtMs, recovered.lastError, recovered.attempts], ["retry_wait", now, "recovered after restart", 2]);
  assert.equal(store.recoveredOnOpen, 1);
  await store.close();
  // Written back in the reference's format: a pretty JSON array, the reference's field order.
  const written = JSON.parse(await readFile(join(dir, "queue.json"), "utf8"));
  assert.ok(Array.isArray(written));
  assert.deepEqual(
    Object.keys(written[0]).slice(0, 12),
    ["id", "state", "attempts", "nextRunAtMs", "lastError", "payload", "createdAtMs", "updatedAtMs", "runIds", "policy", "policyExplicit"].slice(
      0,
      Object.keys(written[0]).length,
    ),
  );
  assert.equal(written[3].state, "retry_wait");
  assert.equal((await stat(join(dir, "queue.json"))).mode & 0o777, 0o600);
});

test("a mutation is journaled, not a rewrite of queue.json; reopen replays the journal", async () => {
  const dir = await tasksDir();
  const store = await FileTaskStore.open({ dir, compactAfterEntries: 1_000_000 });
  const created = await Promise.all(Array.from({ length: 50 }, (_, i) => store.create(sys(`t${i}`))));
  assert.equal(store.size, 50);
  await assert.rejects(stat(join(dir, "queue.json")), { code: "ENOENT" }, "no whole-file rewrite per mutation");
  const journal = (await readFile(join(dir, "queue.journal"), "utf8")).trim().split("\n");
  assert.equal(journal.filter((l) => l.startsWith('{"op":"put"')).length, 50);
  // Concurrent creates share group commits: every batch ends with one commit line.
  const commits = journal.filter((l) => l === '{"op":"commit"}').length;
  assert.ok(commits >= 1 && commits < 50, `${commits} commit lines`);
  assert.equal(journal.at(-1), '{"op":"commit"}');
  const reopened = await FileTaskStore.open({ dir: dir });
  assert.deepEqual([...reopened.all()].map((t) => t.id).sort(), created.map((c) => c.task.id).sort());
  await reopened.close();
  assert.equal((await readFile(join(dir, "queue.journal"))).length, 0, "close compacts the journal into queue.json");
  assert.equal(JSON.parse(await readFile(join(dir, "queue.json"), "utf8")).length, 50);
  await store.close().catch(() => undefined);
});

test("a torn last journal line (crash mid-write) is ignored; a corrupt middle line fails closed", async () => {
  const dir = await tasksDir();
  const store = await FileTaskStore.open({ dir, compactAfterEntries: 1_000_000 });
  const { task } = await store.create(sys("kept"));
  await writeFile(join(dir, "queue.journal"), `${await readFile(join(dir, "queue.journal"), "utf8")}{"op":"put","task":{"id":"half`);
  const reopened = await FileTaskStore.open({ dir });
  assert.deepEqual(
    [...reopened.all()].map((t) => t.id),
    [task.id],
  );
  await reopened.close();

  const dir2 = await tasksDir();
  await writeFile(join(dir2, "queue.journal"), `{"op":"put","task":{"id":"x"\nnot json\n{"op":"del","id":"x"}\n`);
  await assert.rejects(FileTaskStore.open({ dir: dir2 }), (err: unknown) => {
    assert.ok(err instanceof TaskStoreCorruptError);
    assert.match(err.message, new RegExp(`^task queue file ${join(dir2, "queue.journal")} is corrupt \\(line 1: `));
    return true;
  });
});

test("corrupt queue.json: refused with both files named, a .corrupt copy kept (at most 8), never reset", async () => {
  const dir = await tasksDir();
  const file = join(dir, "queue.json");
  await writeFile(file, "[{ truncated");
  let clock = 1_000;
  for (let i = 0; i < 10; i++) {
    await assert.rejects(FileTaskStore.open({ dir, now: () => clock++ }), (err: unknown) => {
      assert.ok(err instanceof TaskStoreCorruptError);
      assert.match(
        err.message,
        new RegExp(
          `^task queue file ${file} is corrupt \\(.*\\); refusing to start rather than lose tasks\\. A copy was kept at ${file}\\.corrupt\\.\\d+\\. Repair or remove the file, or restore the state from a backup \\('cara restore FILE --offline'\\), then start again\\.$`,
        ),
      );
      return true;
    });
  }
  assert.equal(await readFile(file, "utf8"), "[{ truncated", "the original is left as it was");
  const copies = (await readdir(dir)).filter((n) => n.startsWith("queue.json.corrupt."));
  assert.equal(copies.length, 8);
  assert.ok(copies.includes(`queue.json.corrupt.${clock - 1}`), "the newest copy is kept");
  assert.equal(await readFile(join(dir, copies[0]!), "utf8"), "[{ truncated");
  assert.equal((await stat(join(dir, copies[0]!))).mode & 0o777, 0o600);
  await writeFile(file, '{"not":"an array"}');
  await assert.rejects(FileTaskStore.open({ dir }), /is corrupt \(the top level is not a JSON array\)/);
  await writeFile(file, "");
  await assert.rejects(FileTaskStore.open({ dir }), /is corrupt \(Unexpected end of JSON input\)/);
});

test("symlinked and oversized queue files are refused", async () => {
  const dir = await tasksDir();
  await writeFile(join(dir, "elsewhere.json"), "[]");
  await symlink(join(dir, "elsewhere.json"), join(dir, "queue.json"));
  await assert.rejects(FileTaskStore.open({ dir }), {
    message: `refusing to read task queue file ${join(dir, "queue.json")}: it is a symbolic link. Replace it with the real file, then start again.`,
  });
  const dir2 = await tasksDir();
  const { truncate } = await import("node:fs/promises");
  await writeFile(join(dir2, "queue.json"), "[]");
  await truncate(join(dir2, "queue.json"), 64 * 1024 * 1024 + 1);
  await assert.rejects(FileTaskStore.open({ dir: dir2 }), /is 67108865 bytes, over the 67108864-byte cap/);
});

test("capacity: the oldest terminal task is evicted; with none, create is refused", async () => {
  const dir = await tasksDir();
  let clock = 1000;
  const store = await FileTaskStore.open({ dir, capacity: 3, now: () => clock++ });
  const a = (await store.create(sys("a"))).task;
  const b = (await store.create(sys("b"))).task;
  const c = (await store.create(sys("c"))).task;
  await assert.rejects(
    store.create(sys("d")),
    (err: unknown) => err instanceof TaskQueueFullError && err.message === "task queue full: no terminal tasks available for eviction",
  );
  await store.update(b.id, (t) => ({ ...t, state: "done", updatedAtMs: clock++ }));
  await store.update(a.id, (t) => ({ ...t, state: "cancelled", updatedAtMs: clock++ }));
  const d = (await store.create(sys("d"))).task;
  assert.deepEqual([...store.all()].map((t) => t.id).sort(), [a.id, c.id, d.id].sort(), "b (the oldest terminal) was evicted");
  assert.equal(store.evicted, 1);
  await store.close();
});

test("idempotency keys return the existing task; retention removes old terminal tasks", async () => {
  const dir = await tasksDir();
  let clock = 10_000;
  const store = await FileTaskStore.open({ dir, retentionMs: 5_000, now: () => clock });
  const first = await store.create({ ...sys("once"), idempotencyKey: "k1" });
  const again = await store.create({ ...sys("twice"), idempotencyKey: "k1" });
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.task.id, first.task.id);
  assert.equal(store.size, 1);
  await store.update(first.task.id, (t) => ({ ...t, state: "done", finishedAtMs: clock }));
  clock += 4_000;
  assert.equal(await store.sweepRetention(), 0);
  clock += 2_000;
  assert.equal(await store.sweepRetention(), 1);
  assert.equal(store.size, 0);
  await store.close();
});

test("a failed write fails the mutation and memory does not run ahead of disk", {
  skip: process.platform !== "linux" ? "needs /dev/full" : false,
}, async () => {
  const dir = await tasksDir();
  const store = await FileTaskStore.open({ dir, compactAfterEntries: 1_000_000 });
  const { task } = await store.create(sys("before"));
  // Make the next journal write fail as a full disk would: point the journal handle at /dev/full.
  const priv = store as unknown as { journal: import("node:fs/promises").FileHandle };
  await priv.journal.close();
  const { open } = await import("node:fs/promises");
  priv.journal = await open("/dev/full", "w");
  await assert.rejects(
    store.create(sys("lost")),
    (err: unknown) =>
      err instanceof TaskStoreWriteError &&
      /^task store write to .*queue\.journal failed: the filesystem is full \(ENOSPC\); nothing was changed\. Free space on it \(or raise the quota\), then retry$/.test(
        err.message,
      ),
  );
  assert.match(store.writeError!, /ENOSPC/);
  await assert.rejects(
    store.update(task.id, (t) => ({ ...t, lastError: "changed" })),
    TaskStoreWriteError,
  );
  assert.equal(store.size, 1);
  assert.equal(store.get(task.id)!.lastError, null);
});
