import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { BackupUploads, MAX_UPLOAD_CHUNK_BYTES } from "../../src/backup/uploads.js";
import { tempDir } from "../helpers/cara.js";

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);

test("an upload in pieces becomes upload-<time>-<rand>.tar.gz (0600) with the SHA-256 of its bytes; no partial file is left", async () => {
  const dir = join(await tempDir(), "backups");
  const uploads = new BackupUploads(dir, { now: () => Date.UTC(2026, 0, 2, 3, 4, 5) });
  const first = await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(10, 1), finish: false });
  assert.match(first.uploadId, /^[0-9a-f]{24}$/);
  assert.equal(first.bytesReceived, 10);
  assert.equal(first.backupName, undefined);
  const second = await uploads.append({ uploadId: first.uploadId, offset: 10n, chunk: bytes(5, 2), finish: false });
  assert.equal(second.bytesReceived, 15);
  const last = await uploads.append({ uploadId: first.uploadId, offset: 15n, chunk: new Uint8Array(0), finish: true });
  assert.match(last.backupName ?? "", /^upload-20260102T030405Z-[0-9a-f]{4}\.tar\.gz$/);
  const content = await readFile(join(dir, last.backupName!));
  assert.deepEqual([...content], [...bytes(10, 1), ...bytes(5, 2)]);
  assert.equal(last.sha256, createHash("sha256").update(content).digest("hex"));
  assert.equal((await stat(join(dir, last.backupName!))).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), [last.backupName]);
  assert.equal(uploads.openCount, 0);
  // The finished id is gone.
  await assert.rejects(uploads.append({ uploadId: first.uploadId, offset: 15n, chunk: bytes(1), finish: true }), {
    message: "unknown upload_id (it finished, or was discarded after being idle): start again with an empty upload_id",
    kind: "invalid",
  });
});

test("pieces must come in order: a wrong offset names the count to resume from and changes nothing", async () => {
  const dir = join(await tempDir(), "backups");
  const uploads = new BackupUploads(dir);
  const { uploadId } = await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(4), finish: false });
  await assert.rejects(uploads.append({ uploadId, offset: 2n, chunk: bytes(4), finish: false }), {
    message: "offset 2 does not match the 4 bytes received; continue from 4",
    kind: "precondition",
  });
  await assert.rejects(uploads.append({ uploadId, offset: 8n, chunk: bytes(4), finish: false }), {
    message: "offset 8 does not match the 4 bytes received; continue from 4",
    kind: "precondition",
  });
  const done = await uploads.append({ uploadId, offset: 4n, chunk: bytes(1, 9), finish: true });
  assert.equal(done.bytesReceived, 5);
  assert.deepEqual([...(await readFile(join(dir, done.backupName!)))], [7, 7, 7, 7, 9]);
});

test("bad pieces are refused: a new upload not at 0, a chunk over 1 MiB, past the size limit (discarded), too many open", async () => {
  const dir = join(await tempDir(), "backups");
  const uploads = new BackupUploads(dir, { maxBytes: 10, maxOpen: 2 });
  await assert.rejects(uploads.append({ uploadId: "", offset: 5n, chunk: bytes(1), finish: false }), {
    message: "a new upload starts at offset 0 (got 5); to continue one, pass its upload_id",
    kind: "invalid",
  });
  await assert.rejects(uploads.append({ uploadId: "", offset: 0n, chunk: bytes(MAX_UPLOAD_CHUNK_BYTES + 1), finish: false }), {
    message: `chunk of ${MAX_UPLOAD_CHUNK_BYTES + 1} bytes exceeds 1 MiB; send the archive in smaller pieces`,
    kind: "invalid",
  });
  const a = await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(8), finish: false });
  await assert.rejects(uploads.append({ uploadId: a.uploadId, offset: 8n, chunk: bytes(3), finish: false }), {
    message: "the archive exceeds the 10 byte limit; the upload was discarded",
    kind: "exhausted",
  });
  assert.equal(uploads.openCount, 0);
  assert.deepEqual(await readdir(dir), []);
  await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(1), finish: false });
  await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(1), finish: false });
  await assert.rejects(uploads.append({ uploadId: "", offset: 0n, chunk: bytes(1), finish: false }), {
    message: "2 uploads are already open; finish one or wait until they expire",
    kind: "exhausted",
  });
});

test("idle uploads expire, and partial files left by an earlier process are removed; archives are not touched", async () => {
  const dir = join(await tempDir(), "backups");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, ".upload-abcdef.partial"), "left over");
  await writeFile(join(dir, "keep.tar.gz"), "an archive");
  let now = 1_000_000;
  const uploads = new BackupUploads(dir, { idleMs: 60_000, now: () => now });
  const a = await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(3), finish: false });
  assert.deepEqual((await readdir(dir)).sort(), [`.upload-${a.uploadId}.partial`, "keep.tar.gz"]);
  now += 60_001;
  const b = await uploads.append({ uploadId: "", offset: 0n, chunk: bytes(3), finish: false });
  assert.deepEqual((await readdir(dir)).sort(), [`.upload-${b.uploadId}.partial`, "keep.tar.gz"]);
  await assert.rejects(uploads.append({ uploadId: a.uploadId, offset: 3n, chunk: bytes(1), finish: false }), { kind: "invalid" });
});
