import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { logFiles, parseSince, readLogFiles } from "../../src/ops/log-files.js";
import { tempDir } from "../helpers/cara.js";

const line = (time: string, level: string, component: string, msg: string, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ level, time, pid: 1, component, ...extra, msg })}\n`;

async function logsDir(): Promise<string> {
  const dir = join(await tempDir(), "logs");
  await mkdir(dir);
  // Rotated: cara.log.2 is the oldest, then cara.log.1, then the live cara.log.
  await writeFile(
    join(dir, "cara.log.2"),
    line("2026-12-05T01:00:00.000Z", "info", "server", "listening on http://127.0.0.1:18789") +
      line("2026-12-05T01:05:00.000Z", "warn", "tasks", "lease expired", { taskId: "aaaa-1" }),
  );
  await writeFile(
    join(dir, "cara.log.1"),
    `${line("2026-12-05T02:00:00.000Z", "error", "update", "download failed", { err: { code: "ECONNRESET" } })}{"level":"info","time":"2026-12-05T02:0`,
  );
  await writeFile(
    join(dir, "cara.log"),
    line("2026-12-05T03:00:00.000Z", "info", "tasks", "task attempt finished", { taskId: "aaaa-1", outcome: "done" }) +
      line("2026-12-05T03:01:00.000Z", "info", "server", "stopped"),
  );
  await writeFile(join(dir, "cara.log.bak"), "not ours");
  return dir;
}

test("rotated files are read oldest first; filters match level, text in fields, and time", async () => {
  const dir = await logsDir();
  assert.deepEqual(
    (await logFiles(dir)).map((f) => f.slice(dir.length + 1)),
    ["cara.log.2", "cara.log.1", "cara.log"],
  );
  const all = await readLogFiles(dir);
  assert.deepEqual(
    all.entries.map((e) => e.message),
    ["listening on http://127.0.0.1:18789", "lease expired", "download failed", "task attempt finished", "stopped"],
  );
  assert.equal(all.skippedLines, 1, "the line a crash cut is skipped");
  assert.equal(all.entries[1]!.file, join(dir, "cara.log.2"));
  assert.equal(all.entries[1]!.line, 2);
  assert.deepEqual(
    (await readLogFiles(dir, { contains: "aaaa-1" })).entries.map((e) => e.message),
    ["lease expired", "task attempt finished"],
  );
  assert.deepEqual(
    (await readLogFiles(dir, { contains: "ECONNRESET" })).entries.map((e) => e.component),
    ["update"],
  );
  assert.deepEqual(
    (await readLogFiles(dir, { minLevel: "warn" })).entries.map((e) => e.level),
    ["warn", "error"],
  );
  assert.deepEqual(
    (await readLogFiles(dir, { sinceMs: Date.parse("2026-12-05T02:30:00Z") })).entries.map((e) => e.message),
    ["task attempt finished", "stopped"],
  );
  const last2 = await readLogFiles(dir, { limit: 2 });
  assert.deepEqual(
    last2.entries.map((e) => e.message),
    ["task attempt finished", "stopped"],
  );
  assert.equal(last2.truncated, true);
  assert.deepEqual(
    (await readLogFiles(dir, { file: join(dir, "cara.log.1") })).entries.map((e) => e.message),
    ["download failed"],
  );
  assert.deepEqual(await readLogFiles(join(dir, "missing")), { entries: [], files: [], skippedLines: 0, truncated: false });
});

test("--since takes a duration back from now or an ISO time", () => {
  const now = Date.parse("2026-12-05T12:00:00Z");
  assert.equal(new Date(parseSince("10m", now)).toISOString(), "2026-12-05T11:50:00.000Z");
  assert.equal(new Date(parseSince("2h", now)).toISOString(), "2026-12-05T10:00:00.000Z");
  assert.equal(new Date(parseSince("3d", now)).toISOString(), "2026-12-02T12:00:00.000Z");
  assert.equal(new Date(parseSince("2026-12-05T03:00:00Z", now)).toISOString(), "2026-12-05T03:00:00.000Z");
  assert.throws(() => parseSince("yesterday", now), {
    message: "--since must be a duration like 10m, 2h or 3d, or an ISO time like 2026-12-05T03:00:00Z (got 'yesterday')",
  });
});
