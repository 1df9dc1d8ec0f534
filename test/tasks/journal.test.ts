import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { FileHandle } from "node:fs/promises";
import { writeFully } from "../../src/state/durable.js";
import { parseJournal } from "../../src/tasks/journal.js";
import { FileTaskStore, TaskStoreCorruptError } from "../../src/tasks/store.js";
import { tempDir } from "../helpers/cara.js";

const rec = (id: string) => ({
  id,
  state: "queued",
  attempts: 0,
  nextRunAtMs: null,
  lastError: null,
  payload: { kind: "systemEvent", text: id },
  createdAtMs: 1,
  updatedAtMs: 1,
  runIds: [],
  policy: { maxAttempts: 3, maxTotalRuntimeMs: 3_600_000, maxTurns: 25, maxRunTimeoutSeconds: 600 },
  policyExplicit: false,
});
const put = (id: string) => `${JSON.stringify({ op: "put", task: rec(id) })}\n`;
const del = (id: string) => `${JSON.stringify({ op: "del", id })}\n`;
const COMMIT = '{"op":"commit"}\n';

test("parseJournal: only committed batches count; a torn batch after the last commit is dropped", () => {
  const kept = put("a") + put("b") + COMMIT + del("a") + COMMIT;
  const raw = Buffer.from(`${kept + put("c") + put("d")}{"op":"put","ta`);
  const j = parseJournal(raw);
  assert.equal(j.problem, undefined);
  assert.equal(j.framed, true);
  assert.deepEqual(
    j.ops.map((o) => (o.op === "put" ? `put ${(o.task as { id: string }).id}` : `del ${o.id}`)),
    ["put a", "put b", "del a"],
  );
  assert.equal(j.goodEnd, Buffer.byteLength(kept));
  assert.equal(j.tornOps, 2);
  assert.equal(j.tornBytes, raw.length - Buffer.byteLength(kept));
});

test("parseJournal: garbage after the last commit is a torn write; garbage before a commit is corruption", () => {
  const head = put("a") + COMMIT;
  const torn = parseJournal(Buffer.from(`${head}not json\n${put("b")}`));
  assert.equal(torn.problem, undefined);
  assert.equal(torn.goodEnd, Buffer.byteLength(head));
  assert.equal(torn.ops.length, 1);
  const corrupt = parseJournal(Buffer.from(`${head}not json\n${put("b")}${COMMIT}`));
  assert.match(corrupt.problem ?? "", /^line 3: Unexpected token/);
});

test("parseJournal: a legacy journal (no commit lines) applies every complete line; a torn last line is dropped", () => {
  const raw = Buffer.from(`${put("a")}${del("a")}${put("b")}{"op":"put"`);
  const j = parseJournal(raw);
  assert.equal(j.framed, false);
  assert.equal(j.ops.length, 3);
  assert.equal(j.goodEnd, raw.length - '{"op":"put"'.length);
  assert.equal(parseJournal(Buffer.from(`${put("a")}{"op":"nope"}\n${put("b")}`)).problem, "line 2: unknown journal entry");
});

test("parseJournal: zero-byte holes (a write past the end after a short write) are skipped and counted", () => {
  // What older versions left on a full disk: the head of a line, zeros, then the next batch.
  const raw = Buffer.concat([Buffer.from(put("a")), Buffer.from('{"op":"put","task":{"id":"lo'), Buffer.alloc(300), Buffer.from(put("c") + COMMIT)]);
  const j = parseJournal(raw);
  assert.equal(j.problem, undefined);
  assert.deepEqual(
    j.ops.map((o) => (o.op === "put" ? (o.task as { id: string }).id : o.id)),
    ["a", "c"],
  );
  assert.equal(j.holeBytes, 300);
  assert.equal(j.firstHoleAt, Buffer.byteLength(put("a")));
  assert.equal(j.goodEnd, raw.length);
});

test("writeFully loops over short writes and treats a zero-byte write as a full disk", async () => {
  const written: Buffer[] = [];
  const positions: (number | null)[] = [];
  const shortWriter = {
    async write(buf: Uint8Array, offset: number, length: number, position: number | null) {
      const n = Math.min(length, 3);
      written.push(Buffer.from(buf.subarray(offset, offset + n)));
      positions.push(position);
      return { bytesWritten: n, buffer: buf };
    },
  } as unknown as FileHandle;
  await writeFully(shortWriter, Buffer.from("hello world"), 100);
  assert.equal(Buffer.concat(written).toString(), "hello world");
  assert.deepEqual(positions, [100, 103, 106, 109]);
  const full = { write: async (buf: Uint8Array) => ({ bytesWritten: 0, buffer: buf }) } as unknown as FileHandle;
  await assert.rejects(writeFully(full, Buffer.from("x"), 0), { code: "ENOSPC" });
});

test("the store keeps committed batches, drops a torn tail and truncates it, and says so", async () => {
  const dir = await tempDir();
  const file = join(dir, "queue.journal");
  const kept = put("a") + COMMIT + put("b") + COMMIT;
  await writeFile(file, `${kept + put("c")}\0\0\0`);
  const warnings: string[] = [];
  const store = await FileTaskStore.open({ dir, warn: (m) => warnings.push(m), retentionMs: 0 });
  assert.deepEqual([...store.all()].map((t) => t.id).sort(), ["a", "b"]);
  assert.equal(await readFile(file, "utf8"), kept, "the torn tail was cut off");
  assert.deepEqual(warnings, [
    `dropped the last ${Buffer.byteLength(put("c")) + 3} bytes of ${file} (1 changes of a batch that was never acknowledged): a write there was cut short (crash or full disk) and never acknowledged`,
  ]);
  // New writes continue right after the last commit, and survive a reopen.
  const { task } = await store.create({ payload: { kind: "systemEvent", text: "d" } } as Parameters<FileTaskStore["create"]>[0]);
  const after = await readFile(file, "utf8");
  assert.ok(after.startsWith(kept) && after.endsWith(COMMIT) && after.slice(kept.length).includes(task.id), after.slice(kept.length));
  await store.close();
  const again = await FileTaskStore.open({ dir, retentionMs: 0 });
  assert.deepEqual([...again.all()].map((t) => t.id).sort(), ["a", "b", task.id].sort());
  await again.close();
});

test("the store loads around holes, keeps a copy of the damaged journal and rewrites it clean", async () => {
  const dir = await tempDir();
  const file = join(dir, "queue.journal");
  await writeFile(file, Buffer.concat([Buffer.from(`${put("a")}{"op":"pu`), Buffer.alloc(64), Buffer.from(put("c"))]));
  const warnings: string[] = [];
  const store = await FileTaskStore.open({ dir, warn: (m) => warnings.push(m), retentionMs: 0, now: () => 5_000 });
  assert.deepEqual([...store.all()].map((t) => t.id).sort(), ["a", "c"]);
  assert.equal(warnings.length, 1);
  assert.equal(
    warnings[0],
    `skipped 64 zero bytes in ${file} from offset ${Buffer.byteLength(put("a"))} (left by an interrupted write on a full disk); the changes around them were loaded, a copy of the damaged journal is at ${file}.corrupt.5000`,
  );
  assert.ok((await readdir(dir)).includes("queue.journal.corrupt.5000"));
  assert.equal((await readFile(file)).length, 0, "compacted into queue.json");
  assert.deepEqual(
    JSON.parse(await readFile(join(dir, "queue.json"), "utf8"))
      .map((t: { id: string }) => t.id)
      .sort(),
    ["a", "c"],
  );
  await store.close();
});

test("a damaged line inside a committed batch fails closed", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "queue.journal"), `${put("a")}{"op":"put","task":{"id":5}}\n${COMMIT}`);
  await assert.rejects(FileTaskStore.open({ dir }), (err: unknown) => err instanceof TaskStoreCorruptError && /is corrupt \(line 2: /.test(err.message));
});
