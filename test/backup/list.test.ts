import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { readBackupArchive, writeBackupArchive } from "../../src/backup/archive.js";
import { BackupManager } from "../../src/backup/backups.js";
import { listStateFiles } from "../../src/backup/sections.js";
import { backupOrigin } from "../../src/backup/service.js";
import { tempDir } from "../helpers/cara.js";
import { OTHER_SECRET, SECRET, streamOf } from "./fixtures.js";

const writers = { holdWrites: <T>(fn: () => Promise<T>) => fn(), pause: async () => undefined, resume: async () => undefined };

/** A state dir with config, a session and an incompressible 4 MiB memory file. */
async function bigState(): Promise<string> {
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "sessions"), { recursive: true });
  await mkdir(join(state, "memory"), { recursive: true });
  await writeFile(join(state, "config.json"), '{"logLevel":"info"}\n');
  await writeFile(join(state, "sessions", "a.jsonl"), '{"id":"a"}\n');
  await writeFile(join(state, "memory", "blob.bin"), randomBytes(4 * 1024 * 1024));
  return state;
}

async function archiveOf(state: string, file: string, secret = SECRET, now = new Date("2026-02-03T04:05:06.000Z")): Promise<Buffer> {
  const listing = await listStateFiles(state);
  await writeBackupArchive({
    stateDir: state,
    files: listing.files,
    sections: listing.sections,
    secret,
    caraVersion: "9.8.7",
    host: "h",
    now,
    output: createWriteStream(file),
  });
  return readFile(file);
}

/** A Readable of `buf` in 64 KiB chunks that counts the bytes it handed out. */
function counted(buf: Buffer): { stream: Readable; read: () => number } {
  let read = 0;
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 64 * 1024) chunks.push(buf.subarray(i, i + 64 * 1024));
  const stream = Readable.from(
    (function* () {
      for (const c of chunks) {
        read += c.length;
        yield c;
      }
    })(),
  );
  return { stream, read: () => read };
}

test("headOnly reads the marker and manifest and stops: the rest of the archive is neither read nor checked", async () => {
  const state = await bigState();
  const bytes = await archiveOf(state, join(state, "..", "a.tar.gz"));
  assert.ok(bytes.length > 4 * 1024 * 1024, "the archive holds the incompressible file");

  const { stream, read } = counted(bytes);
  const head = await readBackupArchive(stream, { secret: SECRET, headOnly: true });
  assert.equal(head.ok, true);
  assert.deepEqual(head.problems, []);
  assert.deepEqual(
    head.manifest?.sections.map((s) => s.name),
    ["config", "sessions", "memory"],
  );
  assert.equal(head.manifest?.caraVersion, "9.8.7");
  assert.equal(head.manifest?.createdAt, "2026-02-03T04:05:06.000Z");
  assert.deepEqual(head.files, []);
  assert.equal(head.archiveSha256, undefined);
  assert.ok(read() <= 256 * 1024, `read ${read()} of ${bytes.length} bytes`);

  // A damaged tail does not matter to the head, and still does to a full read.
  const cut = bytes.subarray(0, Math.floor(bytes.length / 2));
  const headOfCut = await readBackupArchive(streamOf(cut), { secret: SECRET, headOnly: true });
  assert.equal(headOfCut.ok, true);
  assert.deepEqual(
    headOfCut.manifest?.sections.map((s) => s.name),
    ["config", "sessions", "memory"],
  );
  const full = await readBackupArchive(streamOf(cut), { secret: SECRET });
  assert.equal(full.ok, false);
  assert.deepEqual(
    full.problems.map((p) => p.message),
    ["archive is truncated: the gzip stream ends early"],
  );

  // Another deployment's archive: readable, flagged foreign (a problem unless allowForeign).
  const other = await readBackupArchive(streamOf(bytes), { secret: OTHER_SECRET, headOnly: true });
  assert.equal(other.foreign, true);
  assert.deepEqual(
    other.problems.map((p) => p.kind),
    ["foreign"],
  );
  const otherAllowed = await readBackupArchive(streamOf(bytes), { secret: OTHER_SECRET, headOnly: true, allowForeign: true });
  assert.equal(otherAllowed.ok, true);
  assert.equal(otherAllowed.foreign, true);

  await assert.rejects(readBackupArchive(streamOf(bytes), { secret: SECRET, headOnly: true, stagingDir: state }), /headOnly cannot stage files/);
});

test("list: sections from each archive's head, newest first; unreadable archives listed with the reason; links and partial files skipped", async () => {
  const state = await bigState();
  const backups = join(state, "backups");
  await mkdir(backups);
  const scratch = await tempDir();
  const good = await archiveOf(state, join(scratch, "good.tar.gz"), SECRET, new Date("2026-01-01T00:00:00.000Z"));
  const newer = await archiveOf(state, join(scratch, "newer.tar.gz"), SECRET, new Date("2026-01-02T00:00:00.000Z"));
  await writeFile(join(backups, "scheduled-20260101T000000Z-aaaa.tar.gz"), good);
  await writeFile(join(backups, "pre-restore-20260102T000000Z-bbbb.tar.gz"), newer);
  // Truncated after its head: still listed with its sections (only the head is read).
  await writeFile(join(backups, "pre-update-20251231T000000Z-cccc.tar.gz"), good.subarray(0, Math.floor(good.length / 2)));
  await writeFile(join(backups, "copied-in.tar.gz"), "this is not an archive");
  await writeFile(join(backups, "empty.tar.gz"), "");
  const oldTime = new Date("2025-06-01T00:00:00.000Z");
  await utimes(join(backups, "copied-in.tar.gz"), oldTime, oldTime);
  await utimes(join(backups, "empty.tar.gz"), oldTime, new Date("2025-05-01T00:00:00.000Z"));
  await symlink(join(backups, "scheduled-20260101T000000Z-aaaa.tar.gz"), join(backups, "link.tar.gz"));
  await writeFile(join(backups, "scheduled-20260103T000000Z-dddd.tar.gz.partial"), good.subarray(0, 100));
  await writeFile(join(backups, "last-backup.json"), "{}");

  const manager = new BackupManager({ stateDir: state, backupsDir: backups, secret: SECRET, caraVersion: "0.1.0", writers });
  const list = await manager.list();
  assert.deepEqual(
    list.map((b) => ({
      name: b.name,
      createdAt: (b.createdAt ?? b.mtime).toISOString(),
      sections: b.sections,
      caraVersion: b.caraVersion,
      error: b.error,
      origin: backupOrigin(b.name),
    })),
    [
      {
        name: "pre-restore-20260102T000000Z-bbbb.tar.gz",
        createdAt: "2026-01-02T00:00:00.000Z",
        sections: ["config", "sessions", "memory"],
        caraVersion: "9.8.7",
        error: undefined,
        origin: "pre-restore",
      },
      {
        name: "pre-update-20251231T000000Z-cccc.tar.gz",
        createdAt: "2026-01-01T00:00:00.000Z",
        sections: ["config", "sessions", "memory"],
        caraVersion: "9.8.7",
        error: undefined,
        origin: "pre-update",
      },
      {
        name: "scheduled-20260101T000000Z-aaaa.tar.gz",
        createdAt: "2026-01-01T00:00:00.000Z",
        sections: ["config", "sessions", "memory"],
        caraVersion: "9.8.7",
        error: undefined,
        origin: "task",
      },
      {
        name: "copied-in.tar.gz",
        createdAt: "2025-06-01T00:00:00.000Z",
        sections: undefined,
        caraVersion: undefined,
        error: "archive is not a gzip file (a cara backup is a .tar.gz)",
        origin: "other",
      },
      { name: "empty.tar.gz", createdAt: "2025-05-01T00:00:00.000Z", sections: undefined, caraVersion: undefined, error: "archive is empty", origin: "other" },
    ],
  );
  assert.equal(list[0]!.size, newer.length);
  assert.equal(list[0]!.path, join(backups, "pre-restore-20260102T000000Z-bbbb.tar.gz"));
  assert.equal(list[0]!.foreign, false);

  // No backups dir at all: an empty list.
  const none = new BackupManager({ stateDir: state, backupsDir: join(state, "no-such-dir"), secret: SECRET, caraVersion: "0.1.0", writers });
  assert.deepEqual(await none.list(), []);
});
