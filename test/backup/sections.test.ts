import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import {
  EXCLUDED,
  SECTIONS,
  StateListingError,
  archivePathOf,
  isSectionDirectory,
  listStateFiles,
  sectionOf,
  stateRelPath,
  unsafePathReason,
} from "../../src/backup/sections.js";
import { tempDir } from "../helpers/cara.js";
import { populateState } from "./fixtures.js";

test("section mapping between archive and state paths", () => {
  assert.deepEqual(
    Object.values(SECTIONS).map((s) => [s.name, s.statePath, s.archivePath]),
    [
      ["config", "config.json", "config/config.json"],
      ["tasks", "tasks", "tasks"],
      ["sessions", "sessions", "sessions"],
      ["memory", "memory", "memory"],
      ["cron", "cron", "cron"],
      ["usage", "usage.json", "usage/usage.json"],
    ],
  );
  assert.equal(sectionOf("config/config.json"), "config");
  assert.equal(sectionOf("config/other.json"), undefined);
  assert.equal(sectionOf("usage/usage.json"), "usage");
  assert.equal(sectionOf("usage/x"), undefined);
  assert.equal(sectionOf("tasks/queue.json"), "tasks");
  assert.equal(sectionOf("tasks"), undefined);
  assert.equal(sectionOf("tasks/"), undefined);
  assert.equal(sectionOf("sessions/a/b.jsonl"), "sessions");
  assert.equal(sectionOf("auth/token"), undefined);
  assert.equal(sectionOf("manifest.json"), undefined);
  assert.equal(stateRelPath("config/config.json"), "config.json");
  assert.equal(stateRelPath("usage/usage.json"), "usage.json");
  assert.equal(stateRelPath("tasks/queue.json"), "tasks/queue.json");
  assert.equal(stateRelPath("evil/x"), undefined);
  assert.equal(archivePathOf("config", "config.json"), "config/config.json");
  assert.equal(archivePathOf("cron", "cron/jobs.json"), "cron/jobs.json");
  assert.equal(isSectionDirectory("tasks"), true);
  assert.equal(isSectionDirectory("sessions/a"), true);
  assert.equal(isSectionDirectory("config"), true);
  assert.equal(isSectionDirectory("config/sub"), false);
  assert.equal(isSectionDirectory("auth"), false);
  assert.deepEqual(
    EXCLUDED.map((e) => e.path),
    ["auth/", "cara.lock", "cara.address", "updates/", "backups/", "logs/"],
  );
});

test("unsafe path rules name the entry and the rule", () => {
  assert.equal(unsafePathReason("tasks/queue.json"), undefined);
  assert.equal(unsafePathReason("tasks/../../x"), "entry 'tasks/../../x' escapes the state directory");
  assert.equal(unsafePathReason("/etc/passwd"), "entry '/etc/passwd' is an absolute path");
  assert.equal(unsafePathReason("C:/x"), "entry 'C:/x' is an absolute path");
  assert.equal(unsafePathReason("tasks\\x"), "entry 'tasks\\x' contains a backslash");
  assert.equal(unsafePathReason("tasks/a\0b"), "entry 'tasks/a\\0b' has a NUL character in its name");
  assert.equal(unsafePathReason("tasks/a\nb"), "entry 'tasks/a\\nb' has a control character in its name");
  assert.equal(unsafePathReason("tasks//x"), "entry 'tasks//x' has an empty or '.' path segment");
  assert.equal(unsafePathReason("./tasks/x"), "entry './tasks/x' has an empty or '.' path segment");
  assert.equal(unsafePathReason("tasks/x/"), "entry 'tasks/x/' has an empty or '.' path segment");
  assert.equal(unsafePathReason(""), "entry '' has an empty name");
  assert.equal(unsafePathReason(`tasks/${"a".repeat(4100)}`)?.endsWith("has a name longer than 4096 bytes"), true);
});

test("listStateFiles lists regular files of every section and reports every exclusion", async () => {
  const state = join(await tempDir(), "state");
  const files = await populateState(state);
  const listing = await listStateFiles(state);
  assert.deepEqual(listing.sections, ["config", "tasks", "sessions", "memory", "cron", "usage"]);
  const expectedOrder = Object.keys(files).sort((a, b) => {
    const order = ["config", "tasks", "sessions", "memory", "cron", "usage"];
    const sec = (p: string) => order.indexOf(p === "config.json" ? "config" : p === "usage.json" ? "usage" : p.split("/")[0]!);
    return sec(a) - sec(b) || Buffer.compare(Buffer.from(a), Buffer.from(b));
  });
  assert.deepEqual(
    listing.files.map((f) => f.relPath),
    expectedOrder,
  );
  for (const f of listing.files) {
    assert.equal(f.size, files[f.relPath]!.content.length, f.relPath);
    assert.equal(f.mode, files[f.relPath]!.mode, f.relPath);
    assert.equal(f.absPath, join(state, f.relPath));
  }
  assert.equal(listing.files[0]!.archivePath, "config/config.json");
  assert.equal(listing.files.at(-1)!.archivePath, "usage/usage.json");
  assert.deepEqual(listing.excluded, [
    { path: ".config.json.tmp-123-abcdef", reason: "temporary file of an in-progress write" },
    { path: "auth/", reason: "secrets (token, server secret): never archived; back them up separately, a restore keeps the current ones" },
    { path: "backups/", reason: "backup archives themselves (never nested into a new backup)" },
    { path: "cara.lock", reason: "lock file of the running server" },
    { path: "logs/", reason: "logs: not state needed by a restore" },
    { path: "notes.txt", reason: "unknown entry: not part of any backup section, not archived (copy it separately if you need it)" },
    { path: "tasks/.queue.json.tmp-9-0a1b", reason: "temporary file of an in-progress write" },
    { path: "updates/", reason: "update staging: downloaded releases and the update transaction" },
  ]);
});

test("listStateFiles with selected sections reports the others as not selected", async () => {
  const state = join(await tempDir(), "state");
  await populateState(state);
  const listing = await listStateFiles(state, ["tasks", "usage"]);
  assert.deepEqual(listing.sections, ["tasks", "usage"]);
  assert.deepEqual(
    listing.files.map((f) => f.archivePath),
    ["tasks/empty", "tasks/queue.journal", "tasks/queue.json", "usage/usage.json"],
  );
  assert.deepEqual(
    listing.excluded.filter((e) => e.reason.startsWith("section not selected")),
    [
      { path: "config.json", reason: "section not selected (config)" },
      { path: "cron/", reason: "section not selected (cron)" },
      { path: "memory/", reason: "section not selected (memory)" },
      { path: "sessions/", reason: "section not selected (sessions)" },
    ],
  );
  await assert.rejects(listStateFiles(state, ["tasks", "auth"]), {
    message: "unknown backup section 'auth' (known: config, tasks, sessions, memory, cron, usage)",
  });
});

test("absent sections are not listed; an empty section directory is", async () => {
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "tasks"), { recursive: true });
  const listing = await listStateFiles(state);
  assert.deepEqual(listing, { files: [], sections: ["tasks"], excluded: [] });
});

test("symlinks and special files inside sections are errors, not followed or skipped", async () => {
  const state = join(await tempDir(), "state");
  await mkdir(join(state, "tasks"), { recursive: true });
  await mkdir(join(state, "sessions"), { recursive: true });
  await writeFile(join(state, "tasks", "queue.json"), "{}");
  await symlink("/etc/passwd", join(state, "tasks", "link"));
  execFileSync("mkfifo", [join(state, "sessions", "fifo")]);
  await symlink(join(state, "tasks", "queue.json"), join(state, "config.json"));
  await assert.rejects(listStateFiles(state), (err: unknown) => {
    assert.ok(err instanceof StateListingError);
    const tail = "; backups contain only regular files and never follow links (replace it with a regular file or move it out of the state dir)";
    assert.deepEqual(err.problems, [
      { path: "config.json", reason: `it is a symbolic link${tail}` },
      { path: "sessions/fifo", reason: `it is a FIFO${tail}` },
      { path: "tasks/link", reason: `it is a symbolic link${tail}` },
    ]);
    assert.equal(err.message, `cannot back up config.json: it is a symbolic link${tail} (and 2 more)`);
    return true;
  });
  // A section root that is a symlink.
  const state2 = join(await tempDir(), "state");
  await mkdir(state2, { recursive: true });
  await symlink(join(state, "tasks"), join(state2, "tasks"));
  await assert.rejects(listStateFiles(state2), { message: /^cannot back up tasks\/: the section root is a symbolic link;/ });
  // A name the archive format refuses.
  const state3 = join(await tempDir(), "state");
  await mkdir(join(state3, "cron"), { recursive: true });
  await writeFile(join(state3, "cron", "a\nb"), "x");
  await writeFile(join(state3, "cron", "a\\b"), "x");
  await assert.rejects(listStateFiles(state3), (err: unknown) => {
    assert.ok(err instanceof StateListingError);
    assert.deepEqual(err.problems, [
      { path: "cron/a\\b", reason: "the archive format refuses its name (it contains a backslash)" },
      { path: "cron/a\\nb", reason: "the archive format refuses its name (it has a control character in its name)" },
    ]);
    return true;
  });
});
