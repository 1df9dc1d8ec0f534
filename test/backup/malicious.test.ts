// A corpus of malicious and damaged archives, one per rule: each is refused with the exact problem,
// and nothing is written outside the staging directory.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { readBackupArchive, refusalMessage, type ArchiveLimits, type Problem, type ReadBackupResult } from "../../src/backup/archive.js";
import { tempDir } from "../helpers/cara.js";
import {
  CREATED,
  END,
  LEGIT,
  MARKER,
  backupBlocks,
  entryBlocks,
  exists,
  longNameEntry,
  maliciousArchive,
  manifestFor,
  paxEntry,
  rawHeader,
  streamOf,
  tree,
  SECRET,
} from "./fixtures.js";

/** Reads `archive` with a staging dir inside a fresh root; asserts nothing appeared outside staging. */
async function refuse(archive: Buffer | ((root: string) => Buffer), limits: Partial<ArchiveLimits> = {}): Promise<ReadBackupResult & { root: string }> {
  const root = await tempDir("cara-evil-");
  const staging = join(root, "staging");
  await mkdir(staging, { mode: 0o700 });
  const bytes = typeof archive === "function" ? archive(root) : archive;
  const result = await readBackupArchive(streamOf(bytes), { secret: SECRET, stagingDir: staging, limits });
  assert.deepEqual(
    await tree(root, ""),
    (await tree(root)).filter((p) => p === "staging/" || p.startsWith("staging/")),
    "nothing outside staging",
  );
  assert.equal(result.ok, false);
  return { ...result, root };
}

function only(result: ReadBackupResult, expected: Problem): void {
  assert.deepEqual(result.problems, [expected]);
}

test("absolute path", async () => {
  let target = "";
  const r = await refuse((root) => {
    target = join(root, "pwned");
    return maliciousArchive([entryBlocks({ name: target, content: "owned" })]);
  });
  only(r, { kind: "unsafe_path", path: target, message: `entry '${target}' is an absolute path` });
  assert.equal(await exists(target), false);
  assert.equal(refusalMessage(r.problems), `refusing archive: entry '${target}' is an absolute path`);
});

test("'..' escaping the state directory", async () => {
  const r = await refuse(maliciousArchive([entryBlocks({ name: "tasks/../../escaped", content: "owned" })]));
  only(r, { kind: "unsafe_path", path: "tasks/../../escaped", message: "entry 'tasks/../../escaped' escapes the state directory" });
  assert.equal(refusalMessage(r.problems), "refusing archive: entry 'tasks/../../escaped' escapes the state directory");
  assert.equal(await exists(join(r.root, "escaped")), false);
});

test("'..' hidden in a pax path and in a GNU long name", async () => {
  const pax = await refuse(maliciousArchive([paxEntry({ path: "tasks/../../x" }), entryBlocks({ name: "tasks/harmless", content: "x" })]));
  only(pax, { kind: "unsafe_path", path: "tasks/../../x", message: "entry 'tasks/../../x' escapes the state directory" });
  const long = `sessions/${"a/".repeat(60)}../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../x`;
  const gnu = await refuse(maliciousArchive([longNameEntry(long), entryBlocks({ name: "sessions/short", content: "x" })]));
  const shown = `${long.slice(0, 200)}…`; // long names are cut for display
  only(gnu, { kind: "unsafe_path", path: shown, message: `entry '${shown}' escapes the state directory` });
});

test("symlink entry, and a file through it", async () => {
  const r = await refuse((root) =>
    maliciousArchive([entryBlocks({ name: "tasks/link", type: "2", linkname: root }), entryBlocks({ name: "tasks/link/pwned", content: "owned" })]),
  );
  assert.deepEqual(r.problems, [
    { kind: "unsafe_type", path: "tasks/link", message: `entry 'tasks/link' is a symbolic link (to '${r.root}'); only regular files are allowed` },
    { kind: "entry_unexpected", path: "tasks/link/pwned", message: "entry 'tasks/link/pwned' is not listed in the manifest" },
  ]);
  assert.equal(await exists(join(r.root, "pwned")), false);
});

test("hard link entry", async () => {
  const r = await refuse(maliciousArchive([entryBlocks({ name: "tasks/hl", type: "1", linkname: "/etc/shadow" })]));
  only(r, { kind: "unsafe_type", path: "tasks/hl", message: "entry 'tasks/hl' is a hard link (to '/etc/shadow'); only regular files are allowed" });
});

test("device and FIFO entries", async () => {
  for (const [type, what] of [
    ["3", "a character device"],
    ["4", "a block device"],
    ["6", "a FIFO"],
    ["7", "a contiguous file"],
    ["S", "a sparse file"],
  ] as const) {
    const r = await refuse(maliciousArchive([entryBlocks({ name: "tasks/dev", type })]));
    only(r, { kind: "unsafe_type", path: "tasks/dev", message: `entry 'tasks/dev' is ${what}; only regular files are allowed` });
  }
});

test("duplicate path", async () => {
  const r = await refuse(maliciousArchive([entryBlocks({ name: "tasks/queue.json", content: '{"tasks":[]}\n', mode: 0o600 })]));
  only(r, { kind: "duplicate_path", path: "tasks/queue.json", message: "entry 'tasks/queue.json' appears more than once" });
  const marker = await refuse(maliciousArchive([entryBlocks({ name: ".carapace-backup", content: MARKER })]));
  only(marker, { kind: "duplicate_path", path: ".carapace-backup", message: "entry '.carapace-backup' appears more than once" });
  // A directory and a file at one path, in either order, are duplicates too.
  const dirThenFile = await refuse(
    maliciousArchive(
      [entryBlocks({ name: "sessions/a/", type: "5" }), entryBlocks({ name: "sessions/a", content: "x" })],
      [{ path: "sessions/a", content: "x" }],
    ),
  );
  assert.deepEqual(dirThenFile.problems[0], { kind: "duplicate_path", path: "sessions/a", message: "entry 'sessions/a' appears more than once" });
  const fileThenDir = await refuse(maliciousArchive([entryBlocks({ name: "tasks/queue.json/", type: "5" })]));
  only(fileThenDir, { kind: "duplicate_path", path: "tasks/queue.json/", message: "entry 'tasks/queue.json' appears more than once" });
});

test("paths outside the sections", async () => {
  const all = ["evil/x", "auth/token", "config/other.json", "usage/extra", "top-level"];
  for (const name of all) {
    const r = await refuse(maliciousArchive([entryBlocks({ name, content: "x" })]));
    only(r, {
      kind: "outside_sections",
      path: name,
      message: `entry '${name}' is outside every backup section (config, tasks, sessions, memory, cron, usage)`,
    });
  }
  const dir = await refuse(maliciousArchive([entryBlocks({ name: "evil/", type: "5" })]));
  only(dir, { kind: "outside_sections", path: "evil/", message: "directory entry 'evil/' is outside every backup section" });
});

test("directory entries inside sections are harmless", async () => {
  const root = await tempDir();
  await mkdir(join(root, "staging"));
  const r = await readBackupArchive(streamOf(maliciousArchive([entryBlocks({ name: "tasks/", type: "5" }), entryBlocks({ name: "sessions/a/", type: "5" })])), {
    secret: SECRET,
    stagingDir: join(root, "staging"),
  });
  assert.deepEqual(r.problems, []);
  assert.equal(r.ok, true);
});

test("NUL and control characters in names", async () => {
  const nul = await refuse(maliciousArchive([entryBlocks({ name: Buffer.from("tasks/a\0../../../x"), content: "x" })]));
  only(nul, { kind: "unsafe_path", path: "tasks/a\\0../../../x", message: "entry 'tasks/a\\0../../../x' has a NUL character in its name" });
  const paxNul = await refuse(maliciousArchive([paxEntry({ path: Buffer.from("tasks/ok\0/../../x") }), entryBlocks({ name: "tasks/ok", content: "x" })]));
  only(paxNul, { kind: "unsafe_path", path: "tasks/ok\\0/../../x", message: "entry 'tasks/ok\\0/../../x' has a NUL character in its name" });
  const ctrl = await refuse(maliciousArchive([entryBlocks({ name: "tasks/a\nb\u001b[31m", content: "x" })]));
  only(ctrl, { kind: "unsafe_path", path: "tasks/a\\nb\\x1b[31m", message: "entry 'tasks/a\\nb\\x1b[31m' has a control character in its name" });
  const utf8 = await refuse(maliciousArchive([entryBlocks({ name: Buffer.from([...Buffer.from("tasks/"), 0xff, 0xfe]), content: "x" })]));
  only(utf8, { kind: "unsafe_path", path: "tasks/\uFFFD\uFFFD", message: "entry 'tasks/\uFFFD\uFFFD' has a name that is not valid UTF-8" });
  const backslash = await refuse(maliciousArchive([entryBlocks({ name: "tasks\\..\\..\\x", content: "x" })]));
  only(backslash, { kind: "unsafe_path", path: "tasks\\..\\..\\x", message: "entry 'tasks\\..\\..\\x' contains a backslash" });
  const empty = await refuse(maliciousArchive([entryBlocks({ name: "tasks//x", content: "x" })]));
  only(empty, { kind: "unsafe_path", path: "tasks//x", message: "entry 'tasks//x' has an empty or '.' path segment" });
});

test("a file over the per-file limit", async () => {
  const big = { path: "tasks/big", content: "x".repeat(2048) };
  const r = await refuse(maliciousArchive([entryBlocks({ name: big.path, content: big.content })], [big]), { maxFileBytes: 1024 });
  only(r, { kind: "too_large", path: "tasks/big", message: "entry 'tasks/big' is 2048 bytes, over the 1 KiB per-file limit" });
  assert.equal(r.archiveSha256, undefined, "reading stopped");
});

test("total size over the limit", async () => {
  // The manifest declares more than the limit: refused before reading the files.
  const huge = { path: "sessions/huge", content: "y".repeat(100 * 1024) };
  const r = await refuse(maliciousArchive([], [huge]), { maxTotalBytes: 64 * 1024 });
  only(r, { kind: "too_large", path: "manifest.json", message: "manifest.json lists 102428 bytes, over the 64 KiB limit" });
  // A lying manifest does not help: the stream itself is counted.
  const lying = await refuse(
    gzipSync(Buffer.concat([backupBlocks(LEGIT), entryBlocks({ name: "tasks/pad", content: Buffer.alloc(2 * 1024 * 1024, 1) }), END])),
    { maxTotalBytes: 512 * 1024 },
  );
  assert.deepEqual(lying.problems, [
    { kind: "entry_unexpected", path: "tasks/pad", message: "entry 'tasks/pad' is not listed in the manifest" },
    { kind: "too_large", path: "", message: "archive expands past the 512 KiB limit on its uncompressed size" },
  ]);
});

test("gzip bomb (compression ratio)", async () => {
  const zeros = { path: "memory/zeros", content: Buffer.alloc(8 * 1024 * 1024) };
  const archive = gzipSync(Buffer.concat([backupBlocks([...LEGIT, zeros]), END]), { level: 9 });
  const r = await refuse(archive, { ratioGraceBytes: 1024 * 1024 });
  assert.equal(r.problems.length, 1);
  assert.equal(r.problems[0]!.kind, "too_large");
  assert.equal(r.problems[0]!.path, "");
  assert.match(r.problems[0]!.message, /^archive expands more than 200× \(\d+ bytes from \d+ compressed\): it looks like a gzip bomb$/);
  // The same archive is fine under the default grace (8 MiB) only if it stays under the ratio: it does not.
  const d = await refuse(archive);
  assert.equal(d.problems[0]!.kind, "too_large");
});

test("truncated gzip, damaged gzip, not gzip, empty", async () => {
  const good = maliciousArchive([]);
  const truncated = await refuse(good.subarray(0, Math.floor(good.length / 2)));
  only(truncated, { kind: "corrupt_archive", path: "", message: "archive is truncated: the gzip stream ends early" });
  const noTrailer = await refuse(good.subarray(0, good.length - 4));
  only(noTrailer, { kind: "corrupt_archive", path: "", message: "archive is truncated: the gzip stream ends early" });

  const damaged = Buffer.from(good);
  damaged[damaged.length - 6] = damaged[damaged.length - 6]! ^ 0xff; // CRC32 in the trailer
  const crc = await refuse(damaged);
  only(crc, { kind: "corrupt_archive", path: "", message: "archive is corrupt: the gzip data is damaged (incorrect data check)" });

  const plainTar = Buffer.concat([backupBlocks(LEGIT), END]);
  only(await refuse(plainTar), { kind: "corrupt_archive", path: "", message: "archive is not a gzip file (a cara backup is a .tar.gz)" });
  only(await refuse(Buffer.from("hello, world")), { kind: "corrupt_archive", path: "", message: "archive is not a gzip file (a cara backup is a .tar.gz)" });
  only(await refuse(Buffer.alloc(0)), { kind: "corrupt_archive", path: "", message: "archive is empty" });
  only(await refuse(Buffer.from([0x1f])), { kind: "corrupt_archive", path: "", message: "archive is not a gzip file (a cara backup is a .tar.gz)" });
});

test("damaged tar inside valid gzip", async () => {
  const blocks = Buffer.concat([backupBlocks(LEGIT)]);
  const badHeader = Buffer.from(rawHeader({ name: "tasks/x", size: 1, badChecksum: true }));
  only(await refuse(gzipSync(Buffer.concat([blocks, badHeader, Buffer.alloc(512), END]))), {
    kind: "corrupt_archive",
    path: "",
    message: "archive is corrupt: the tar header after entry 'tasks/queue.json' is invalid (header checksum mismatch)",
  });
  only(await refuse(gzipSync(blocks)), {
    kind: "corrupt_archive",
    path: "",
    message: "archive is truncated: it ends after entry 'tasks/queue.json' without the end-of-archive marker",
  });
  const cut = Buffer.concat([blocks, rawHeader({ name: "tasks/partial", size: 4000 }), Buffer.alloc(1024)]);
  assert.deepEqual((await refuse(gzipSync(cut))).problems, [
    { kind: "entry_unexpected", path: "tasks/partial", message: "entry 'tasks/partial' is not listed in the manifest" },
    { kind: "corrupt_archive", path: "", message: "archive is truncated: it ends inside entry 'tasks/partial'" },
  ]);
  only(await refuse(gzipSync(Buffer.concat([blocks, END, Buffer.from("trailing garbage")]))), {
    kind: "corrupt_archive",
    path: "",
    message: "archive has data after its end-of-archive marker",
  });
});

test("marker missing, malformed or from a newer format", async () => {
  const noMarker = gzipSync(Buffer.concat([entryBlocks({ name: "tasks/queue.json", content: "{}" }), END]));
  only(await refuse(noMarker), {
    kind: "marker_invalid",
    path: "tasks/queue.json",
    message: "archive does not start with the '.carapace-backup' marker (first entry is 'tasks/queue.json'): not a cara backup",
  });
  const v2 = Buffer.concat([
    entryBlocks({ name: ".carapace-backup", content: `carapace-backup v2\ncreated=${CREATED}\n` }),
    backupBlocks(LEGIT).subarray(1024),
    END,
  ]);
  only(await refuse(gzipSync(v2)), {
    kind: "version_unsupported",
    path: ".carapace-backup",
    message: "marker says backup format v2, newer than this cara understands (v1); upgrade cara to read this backup",
  });
  const symlinkMarker = Buffer.concat([entryBlocks({ name: ".carapace-backup", type: "2", linkname: "/etc/passwd" }), backupBlocks(LEGIT).subarray(1024), END]);
  only(await refuse(gzipSync(symlinkMarker)), {
    kind: "marker_invalid",
    path: ".carapace-backup",
    message: "marker '.carapace-backup' is a symbolic link, not a regular file",
  });
  only(await refuse(gzipSync(END)), {
    kind: "manifest_invalid",
    path: "",
    message: "archive has no manifest.json",
  });
});

test("manifest missing, invalid, newer, or inconsistent with the marker", async () => {
  const marker = entryBlocks({ name: ".carapace-backup", content: MARKER });
  const files = LEGIT.map((f) => entryBlocks({ name: f.path, content: f.content, mode: 0o600 }));
  const missing = await refuse(gzipSync(Buffer.concat([marker, ...files, END])));
  assert.deepEqual(missing.problems, [
    { kind: "manifest_invalid", path: "config/config.json", message: "manifest.json must be the second entry (found 'config/config.json')" },
  ]);
  const garbage = await refuse(gzipSync(Buffer.concat([marker, entryBlocks({ name: "manifest.json", content: "{" }), ...files, END])));
  assert.equal(garbage.problems.length, 1);
  assert.equal(garbage.problems[0]!.kind, "manifest_invalid");
  assert.match(garbage.problems[0]!.message, /^manifest\.json is not valid JSON \(/);
  const newer = { ...manifestFor(LEGIT), formatVersion: 3 };
  only(await refuse(gzipSync(Buffer.concat([backupBlocks(LEGIT, { manifest: newer }), END]))), {
    kind: "version_unsupported",
    path: "manifest.json",
    message: "manifest format version 3 is newer than this cara understands (2); upgrade cara to read this backup",
  });
  const otherTime = manifestFor(LEGIT, SECRET, { createdAt: "2020-01-01T00:00:00.000Z" });
  only(await refuse(gzipSync(Buffer.concat([backupBlocks(LEGIT, { manifest: otherTime }), END]))), {
    kind: "manifest_invalid",
    path: "manifest.json",
    message: `manifest.json createdAt (2020-01-01T00:00:00.000Z) differs from the marker's (${CREATED})`,
  });
  const late = await refuse(maliciousArchive([entryBlocks({ name: "manifest.json", content: "{}" })]));
  only(late, { kind: "duplicate_path", path: "manifest.json", message: "entry 'manifest.json' appears more than once" });
});

test("entries not in the manifest, or with the wrong size", async () => {
  only(await refuse(maliciousArchive([entryBlocks({ name: "tasks/extra", content: "x" })])), {
    kind: "entry_unexpected",
    path: "tasks/extra",
    message: "entry 'tasks/extra' is not listed in the manifest",
  });
  const listed = { path: "cron/jobs.json", content: "[]" };
  only(await refuse(maliciousArchive([entryBlocks({ name: listed.path, content: "[1]" })], [listed])), {
    kind: "size_mismatch",
    path: "cron/jobs.json",
    message: "entry 'cron/jobs.json' is 3 bytes but the manifest says 2",
  });
});

test("many problems are capped", async () => {
  const extra = Array.from({ length: 10 }, (_, i) => entryBlocks({ name: `evil/${i}`, content: "x" }));
  const r = await refuse(maliciousArchive(extra), { maxProblems: 3 });
  assert.equal(r.problems.length, 3);
  assert.equal(r.problemsTruncated, true);
});

test("staging stops at the first problem; staged files stay inside staging", async () => {
  const root = await tempDir();
  const staging = join(root, "staging");
  await mkdir(staging);
  const r = await readBackupArchive(
    streamOf(
      maliciousArchive(
        [entryBlocks({ name: "tasks/../../x", content: "x" }), entryBlocks({ name: "tasks/after", content: "y" })],
        [{ path: "tasks/after", content: "y" }],
      ),
    ),
    { secret: SECRET, stagingDir: staging },
  );
  assert.deepEqual(
    r.problems.map((p) => p.kind),
    ["unsafe_path"],
  );
  // The legit files before the problem were staged; the one after it was verified but not staged.
  assert.deepEqual(await tree(staging), ["config/", "config/config.json", "tasks/", "tasks/queue.json"]);
  assert.equal(r.files.find((f) => f.path === "tasks/after")?.stagedPath, undefined);
  // A staging dir that is not empty is an error, not a problem.
  await assert.rejects(readBackupArchive(streamOf(maliciousArchive([])), { secret: SECRET, stagingDir: staging }), {
    name: "StagingError",
    message: "cannot stage config/config.json: it already exists (the staging directory must be empty)",
  });
});
