import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { appendFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import {
  BackupTooLargeError,
  COMPRESSION_LEVEL,
  PROBLEM_KINDS,
  StateChangedError,
  readBackupArchive,
  refusalMessage,
  writeBackupArchive,
  type WriteBackupResult,
} from "../../src/backup/archive.js";
import { manifestKey, verifyManifestHmac } from "../../src/backup/manifest.js";
import { listStateFiles } from "../../src/backup/sections.js";
import { BackupProblemKind } from "../../gen/carapace/backup/v1/backup_pb.js";
import { tempDir } from "../helpers/cara.js";
import { OTHER_SECRET, SECRET, gunzip, populateState, readBuffer, sha256, tree, walkTar } from "./fixtures.js";

const NOW = new Date("2026-03-04T05:06:07.089Z");

async function backup(state: string, out: string, extra: { sections?: string[] } = {}): Promise<WriteBackupResult> {
  const listing = await listStateFiles(state, extra.sections);
  return writeBackupArchive({
    stateDir: state,
    files: listing.files,
    sections: listing.sections,
    secret: SECRET,
    caraVersion: "0.1.0",
    host: "host-a",
    now: NOW,
    output: createWriteStream(out, { mode: 0o600 }),
  });
}

async function fixture() {
  const root = await tempDir();
  const state = join(root, "state");
  const files = await populateState(state);
  const archive = join(root, "backup.tar.gz");
  const written = await backup(state, archive);
  return { root, state, files, archive, written, bytes: await readFile(archive) };
}

test("problem kinds map 1:1 to the proto enum", () => {
  const protoNames = Object.keys(BackupProblemKind).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");
  assert.deepEqual(
    PROBLEM_KINDS.map((k) => k.toUpperCase()),
    protoNames,
  );
  assert.equal(COMPRESSION_LEVEL, 6);
});

test("round trip: staged files are byte-identical and private (0600) whatever mode the archive records", async () => {
  const { root, files, archive, written, bytes } = await fixture();
  assert.equal(written.sha256, sha256(bytes));
  assert.equal(written.bytes, bytes.length);
  const m = written.manifest;
  assert.equal(m.format, "carapace-backup");
  assert.equal(m.formatVersion, 2);
  assert.equal(m.createdAt, NOW.toISOString());
  assert.equal(m.host, "host-a");
  assert.equal(verifyManifestHmac(m, SECRET), true);
  assert.deepEqual(
    m.sections.map((s) => s.name),
    ["config", "tasks", "sessions", "memory", "cron", "usage"],
  );
  assert.equal(m.files.length, Object.keys(files).length);

  const staging = join(root, "staging");
  await mkdir(staging, { mode: 0o700 });
  const result = await readBackupArchive(createReadStream(archive), { secret: SECRET, stagingDir: staging });
  assert.deepEqual(result.problems, []);
  assert.equal(result.ok, true);
  assert.equal(result.foreign, false);
  assert.equal(result.problemsTruncated, false);
  assert.equal(result.archiveSha256, written.sha256);
  assert.equal(result.archiveBytes, written.bytes);
  assert.deepEqual(result.manifest, m);
  assert.equal(result.files.length, m.files.length);
  for (const f of result.files) {
    const rel = f.path === "config/config.json" ? "config.json" : f.path === "usage/usage.json" ? "usage.json" : f.path;
    assert.equal(f.stagedPath, join(staging, f.path));
    const original = files[rel]!;
    assert.deepEqual(await readFile(f.stagedPath!), original.content, f.path);
    assert.equal((await stat(f.stagedPath!)).mode & 0o777, 0o600, f.path);
    assert.equal(f.mode, original.mode, `${f.path}: the manifest still records the mode`);
  }
  for (const dir of (await tree(staging)).filter((p) => p.endsWith("/"))) {
    assert.equal((await stat(join(staging, dir))).mode & 0o777, 0o700, dir);
  }
  // Nothing else was written next to the staging dir.
  assert.deepEqual(
    (await tree(root)).filter((p) => !/\/./.test(p)),
    ["backup.tar.gz", "staging/", "state/"],
  );
});

test("archive layout: marker first (0644), manifest second, uid/gid 0, no user names; system tar reads it", async () => {
  const { bytes, archive, written } = await fixture();
  const tar = gunzip(bytes);
  const spans = walkTar(tar);
  assert.deepEqual(
    spans.map((s) => s.name),
    [".carapace-backup", "manifest.json", ...written.manifest.files.map((f) => f.path)],
  );
  assert.equal(tar.toString("utf8", spans[0]!.dataStart, spans[0]!.dataStart + spans[0]!.size), `carapace-backup v1\ncreated=${NOW.toISOString()}\n`);
  const listing = execFileSync("tar", ["--numeric-owner", "-tvzf", archive], { encoding: "utf8" }).trim().split("\n");
  assert.match(listing[0]!, /^-rw-r--r-- 0\/0 +\d+ .* \.carapace-backup$/);
  assert.match(listing[1]!, /^-rw-r--r-- 0\/0 +\d+ .* manifest\.json$/);
  assert.match(listing.find((l) => l.endsWith("tasks/queue.journal"))!, /^-rw-r--r-- 0\/0 /);
  assert.match(listing.find((l) => l.endsWith("memory/large.bin"))!, /^-r-------- 0\/0 /);
  assert.ok(
    listing.some((l) => l.includes("naïve-ünïcödé")),
    "long unicode path via pax",
  );
  const names = execFileSync("tar", ["-tvzf", archive], { encoding: "utf8" });
  assert.doesNotMatch(names, /root|[a-z]+\/[a-z]+ +\d/);
  assert.equal(listing.length, written.manifest.files.length + 2);
});

test("reading stages only the selected sections but verifies everything", async () => {
  const { root, archive } = await fixture();
  const staging = join(root, "staging");
  await mkdir(staging);
  const result = await readBackupArchive(createReadStream(archive), { secret: SECRET, stagingDir: staging, sections: ["tasks", "usage"] });
  assert.equal(result.ok, true);
  assert.deepEqual(await tree(staging), ["tasks/", "tasks/empty", "tasks/queue.journal", "tasks/queue.json", "usage/", "usage/usage.json"]);
  assert.equal(result.files.filter((f) => f.stagedPath).length, 4);
  assert.equal(result.files.length, result.manifest!.files.length);
  await assert.rejects(readBackupArchive(createReadStream(archive), { secret: SECRET, sections: ["nope"] }), {
    message: "unknown backup section 'nope' (known: config, tasks, sessions, memory, cron, usage)",
  });
});

test("a backup of selected sections lists only them; an empty section is listed with 0 files", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await mkdir(join(state, "cron"), { recursive: true });
  await writeFile(join(state, "usage.json"), "{}");
  const written = await backup(state, join(root, "b.tar.gz"));
  assert.deepEqual(written.manifest.sections, [
    { name: "cron", files: 0, bytes: 0 },
    { name: "usage", files: 1, bytes: 2 },
  ]);
  const result = await readBuffer(await readFile(join(root, "b.tar.gz")));
  assert.equal(result.ok, true);
});

test("foreign archive: FOREIGN unless allowForeign; entries are still checked", async () => {
  const { root, bytes } = await fixture();
  const other = await readBuffer(bytes, { secret: OTHER_SECRET });
  assert.equal(other.ok, false);
  assert.equal(other.foreign, true);
  assert.deepEqual(other.problems, [
    {
      kind: "foreign",
      path: "manifest.json",
      message: `manifest is signed with key id ${manifestKey(SECRET).keyId}, which is neither this deployment's server secret nor a previous one: the backup was made by another deployment or with a secret this state dir never used (give that secret with --secret-file), or manifest.json was changed after signing`,
    },
  ]);
  assert.ok(other.manifest);
  // With the signing secret's key among the previous ones, it verifies and says which key.
  const previous = await readBuffer(bytes, { secret: OTHER_SECRET, previousKeys: [manifestKey(SECRET)] });
  assert.deepEqual([previous.ok, previous.foreign, previous.signedBy], [true, false, { keyId: manifestKey(SECRET).keyId, previous: true }]);
  const current = await readBuffer(bytes, { secret: SECRET });
  assert.deepEqual(current.signedBy, { keyId: manifestKey(SECRET).keyId, previous: false });
  assert.equal(other.files.length, other.manifest.files.length, "hashes still verified");
  assert.equal(refusalMessage(other.problems), `refusing archive: ${other.problems[0]!.message}`);

  const staging = join(root, "staging");
  await mkdir(staging);
  const allowed = await readBuffer(bytes, { secret: OTHER_SECRET, allowForeign: true, stagingDir: staging });
  assert.equal(allowed.ok, true);
  assert.equal(allowed.foreign, true);
  assert.deepEqual(allowed.problems, []);
  assert.equal((await tree(staging)).filter((p) => !p.endsWith("/")).length, allowed.manifest!.files.length);
});

test("a flipped byte in any file entry is a HASH_MISMATCH naming it", async () => {
  const { bytes } = await fixture();
  const tar = gunzip(bytes);
  const spans = walkTar(tar)
    .slice(2)
    .filter((s) => s.size > 0);
  assert.ok(spans.length >= 9);
  for (const span of spans) {
    const copy = Buffer.from(tar);
    const at = span.dataStart + Math.floor(span.size / 2);
    copy[at] = copy[at]! ^ 0x01;
    const result = await readBuffer(gzipSync(copy));
    assert.deepEqual(
      result.problems,
      [{ kind: "hash_mismatch", path: span.name, message: `entry '${span.name}' does not match its SHA-256 in the manifest` }],
      span.name,
    );
  }
  // The marker and the manifest have their own checks.
  const marker = Buffer.from(tar);
  marker[walkTar(tar)[0]!.dataStart] = "C".charCodeAt(0);
  assert.deepEqual((await readBuffer(gzipSync(marker))).problems, [
    { kind: "marker_invalid", path: ".carapace-backup", message: `marker '.carapace-backup' does not say "carapace-backup v1" and "created=<time>"` },
  ]);
});

test("a removed entry is ENTRY_MISSING", async () => {
  const { bytes } = await fixture();
  const tar = gunzip(bytes);
  const span = walkTar(tar).find((s) => s.name === "tasks/queue.json")!;
  const cut = Buffer.concat([tar.subarray(0, span.start), tar.subarray(span.end)]);
  const result = await readBuffer(gzipSync(cut));
  assert.deepEqual(result.problems, [
    { kind: "entry_missing", path: "tasks/queue.json", message: "file 'tasks/queue.json' is listed in the manifest but missing from the archive" },
  ]);
});

test("a changed manifest fails the HMAC, even when it matches changed content", async () => {
  const { bytes } = await fixture();
  const tar = gunzip(bytes);
  const spans = walkTar(tar);
  const manifestSpan = spans[1]!;
  const manifest = JSON.parse(tar.toString("utf8", manifestSpan.dataStart, manifestSpan.dataStart + manifestSpan.size));
  // Replace tasks/queue.json with content of the same size and fix up the manifest's hash.
  const q = spans.find((s) => s.name === "tasks/queue.json")!;
  const evil = Buffer.from("X".repeat(q.size));
  const entry = manifest.files.find((f: { path: string }) => f.path === "tasks/queue.json");
  entry.sha256 = sha256(evil);
  const newManifest = Buffer.from(JSON.stringify(manifest));
  const header = Buffer.from(tar.subarray(manifestSpan.start, manifestSpan.dataStart));
  header.write(`${newManifest.length.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  const pad = Buffer.alloc((512 - (newManifest.length % 512)) % 512);
  const body = Buffer.from(tar.subarray(manifestSpan.end));
  evil.copy(body, q.dataStart - manifestSpan.end);
  const forged = Buffer.concat([tar.subarray(0, manifestSpan.start), header, newManifest, pad, body]);
  const result = await readBuffer(gzipSync(forged));
  assert.deepEqual(
    result.problems.map((p) => p.kind),
    ["foreign"],
  );
  assert.equal(result.foreign, true);
});

test("state changed between the passes fails the backup", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await populateState(state);
  const listing = await listStateFiles(state);
  const calls = new Map<string, number>();
  const readFileHook = (abs: string) => {
    const n = (calls.get(abs) ?? 0) + 1;
    calls.set(abs, n);
    if (abs.endsWith("tasks/queue.json") && n === 2) return Readable.from([Buffer.from('{"version":2,"tasks":[]}\n')]);
    return createReadStream(abs);
  };
  const output = new PassThrough();
  output.resume();
  await assert.rejects(
    writeBackupArchive({ stateDir: state, files: listing.files, secret: SECRET, caraVersion: "0.1.0", output, readFile: readFileHook }),
    (err: unknown) => {
      assert.ok(err instanceof StateChangedError);
      assert.equal(
        err.message,
        "state changed during backup: tasks/queue.json changed between the hashing and the writing pass; writers must stay paused while a backup is written",
      );
      return true;
    },
  );
  assert.equal(output.destroyed, true);

  // A file that grew after listing (default reader).
  await appendFile(join(state, "tasks", "queue.journal"), "more\n");
  const out2 = new PassThrough();
  out2.resume();
  await assert.rejects(writeBackupArchive({ stateDir: state, files: listing.files, secret: SECRET, caraVersion: "0.1.0", output: out2 }), {
    name: "StateChangedError",
    message: /^state changed during backup: tasks\/queue.journal changed size from 16 to 21 bytes;/,
  });
});

test("the writer refuses a file over the per-file limit before writing anything", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await populateState(state);
  const listing = await listStateFiles(state);
  let wrote = 0;
  const output = new PassThrough();
  output.on("data", (c: Buffer) => (wrote += c.length));
  await assert.rejects(
    writeBackupArchive({ stateDir: state, files: listing.files, secret: SECRET, caraVersion: "0.1.0", output, limits: { maxFileBytes: 1024 * 1024 } }),
    (err: unknown) =>
      err instanceof BackupTooLargeError && err.message === "cannot back up memory/large.bin: it is 1843200 bytes, over the 1 MiB per-file limit of a backup",
  );
  assert.equal(wrote, 0);
});

test("output backpressure: a slow consumer still receives the whole archive", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await populateState(state);
  const listing = await listStateFiles(state);
  const output = new PassThrough({ highWaterMark: 1024 });
  const chunks: Buffer[] = [];
  const consumed = (async () => {
    for await (const c of output) {
      chunks.push(c as Buffer);
      await new Promise((r) => setImmediate(r));
    }
  })();
  const written = await writeBackupArchive({ stateDir: state, files: listing.files, secret: SECRET, caraVersion: "0.1.0", output });
  await consumed;
  const all = Buffer.concat(chunks);
  assert.equal(all.length, written.bytes);
  assert.equal(sha256(all), written.sha256);
  assert.equal((await readBuffer(all)).ok, true);
});

test("readFrom: a file with a snapshot copy is archived from the copy (both passes)", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await populateState(state);
  const copy = join(root, "queue-copy.json");
  await writeFile(copy, '{"version":9,"tasks":[]}\n'); // same size as the live file, other bytes
  const listing = await listStateFiles(state);
  const out = join(root, "b.tar.gz");
  const written = await writeBackupArchive({
    stateDir: state,
    files: listing.files,
    sections: listing.sections,
    secret: SECRET,
    caraVersion: "0.1.0",
    output: createWriteStream(out),
    readFrom: new Map([[join(state, "tasks", "queue.json"), copy]]),
  });
  assert.equal(written.manifest.files.find((f) => f.path === "tasks/queue.json")?.sha256, sha256('{"version":9,"tasks":[]}\n'));
  const tar = gunzip(await readFile(out));
  const span = walkTar(tar).find((e) => e.name === "tasks/queue.json")!;
  assert.equal(tar.toString("utf8", span.dataStart, span.dataStart + span.size), '{"version":9,"tasks":[]}\n');
  assert.equal((await readBuffer(await readFile(out))).ok, true);
});

test("staging with fsync (a restore): every file byte-identical and 0600, whatever its size class", async () => {
  const { root, files, archive } = await fixture();
  const staging = join(root, "staging-fsync");
  await mkdir(staging, { mode: 0o700 });
  const result = await readBackupArchive(createReadStream(archive), { secret: SECRET, stagingDir: staging, fsync: true });
  assert.equal(result.ok, true);
  assert.equal(result.files.length, Object.keys(files).length);
  const sizes = result.files.map((f) => f.size);
  assert.ok(
    sizes.some((n) => n <= 256 * 1024) && sizes.some((n) => n > 256 * 1024 && n <= 1024 * 1024) && sizes.some((n) => n > 1024 * 1024),
    "small, medium and large files",
  );
  for (const f of result.files) {
    const rel = f.path === "config/config.json" ? "config.json" : f.path === "usage/usage.json" ? "usage.json" : f.path;
    assert.deepEqual(await readFile(f.stagedPath!), files[rel]!.content, f.path);
    assert.equal((await stat(f.stagedPath!)).mode & 0o777, 0o600, f.path);
  }
});

test("an output that fails mid-archive fails the backup with its error (no hang, output destroyed)", async () => {
  const root = await tempDir();
  const state = join(root, "state");
  await populateState(state);
  const listing = await listStateFiles(state);
  let received = 0;
  const { Writable } = await import("node:stream");
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      cb(received > 1024 ? new Error("disk full (test)") : null);
    },
  });
  await assert.rejects(writeBackupArchive({ stateDir: state, files: listing.files, secret: SECRET, caraVersion: "0.1.0", output }), {
    message: "disk full (test)",
  });
  assert.equal(output.destroyed, true);
  assert.ok(received > 1024);
});
