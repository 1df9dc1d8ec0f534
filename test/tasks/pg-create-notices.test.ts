// The notices of a create carry its rows (src/tasks/postgres/create-notices.ts): their size
// limit, the rows too large to carry, and reading both forms.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNotices, NOTICE_BYTES, plainNotices, readNotice } from "../../src/tasks/postgres/create-notices.js";

const origin = "0b7c3c9e-3f0e-4f55-9a40-1b1c3d6f1a11";
/** What the insert statement sends: each notice's head, the versions, then its body. */
const sendAll = (n: ReturnType<typeof createNotices>, versions: string[]) =>
  n.heads.map((head, i) => {
    const chunk = i + 1;
    const mine = versions.filter((_, row) => n.chunkOf[row] === chunk);
    return `${head}${mine.join(" ")}${n.bodies[i]}`;
  });

test("rows go in notices under the size limit, in order, and read back as the rows with their versions", () => {
  const ids = Array.from({ length: 60 }, (_, i) => `t_${String(i).padStart(4, "0")}`);
  // Multi-byte text: the limit is in bytes, not characters.
  const records = ids.map((id) => JSON.stringify({ id, payload: { text: `é€ ${"x".repeat(200)}\nline` } }));
  const versions = ids.map((_, i) => String(9_000_000_000 + i));
  const n = createNotices(origin, ids, records);
  assert.ok(n.heads.length > 1, "more than one notice");
  assert.deepEqual(n.plain, []);
  const payloads = sendAll(n, versions);
  for (const p of payloads) assert.ok(Buffer.byteLength(p) <= NOTICE_BYTES, `${Buffer.byteLength(p)} bytes`);
  const rows = payloads.flatMap((p) => {
    const read = readNotice(p)!;
    assert.equal(read.origin, origin);
    assert.deepEqual(read.ids, []);
    return read.rows;
  });
  assert.deepEqual(
    rows,
    ids.map((id, i) => ({ id, version: versions[i], record: records[i] })),
  );
});

test("a row too large for a notice is named in a plain notice (read back), the others still ride along", () => {
  const ids = ["t_small1", "t_large", "t_small2"];
  const records = [JSON.stringify({ id: "t_small1" }), JSON.stringify({ id: "t_large", text: "y".repeat(NOTICE_BYTES) }), JSON.stringify({ id: "t_small2" })];
  const n = createNotices(origin, ids, records);
  assert.deepEqual(n.chunkOf, [1, 0, 1]);
  assert.deepEqual(n.plain, [`${origin} t_large`]);
  assert.deepEqual(readNotice(n.plain[0]!), { origin, ids: ["t_large"], rows: [] });
  assert.deepEqual(
    readNotice(sendAll(n, ["7", "8", "9"])[0]!)!.rows.map((r) => [r.id, r.version]),
    [
      ["t_small1", "7"],
      ["t_small2", "9"],
    ],
  );
});

test("plain notices name ids under the limit; a notice that does not add up is read back whole", () => {
  const ids = Array.from({ length: 500 }, (_, i) => `task_${"z".repeat(20)}_${i}`);
  const plain = plainNotices(origin, ids);
  assert.ok(plain.length > 1);
  for (const p of plain) assert.ok(Buffer.byteLength(p) <= NOTICE_BYTES);
  assert.deepEqual(
    plain.flatMap((p) => readNotice(p)!.ids),
    ids,
  );
  // Versions missing, not numbers, or a record short: the ids are read back instead.
  assert.deepEqual(readNotice(`${origin} a,b,\n1\n{}\n{}`), { origin, ids: ["a", "b"], rows: [] });
  assert.deepEqual(readNotice(`${origin} a,\nx\n{}`), { origin, ids: ["a"], rows: [] });
  assert.deepEqual(readNotice(`${origin} a,b,\n1 2\n{}`), { origin, ids: ["a", "b"], rows: [] });
  assert.equal(readNotice("no-space"), undefined);
});
