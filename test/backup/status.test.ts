import assert from "node:assert/strict";
import { mkdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { BackupState } from "../../src/backup/status.js";
import { tempDir } from "../helpers/cara.js";

const DAY = 86_400_000;
const T = Date.parse("2026-05-01T12:00:00.000Z");

async function stateDir(): Promise<{ state: string; backups: string }> {
  const state = join(await tempDir(), "state");
  const backups = join(state, "backups");
  await mkdir(backups, { recursive: true });
  return { state, backups };
}

const todo = (backups: string) =>
  `run 'cara backup --output FILE', or schedule nightly backups into ${backups}: cara schedule create --name nightly-backup --cron '0 3 * * *' --payload '{"kind":"backup","keep":7}'`;
const run = async (s: BackupState) => s.check().run();

test("no backup ever: ok during the first 7 days of the deployment, then a warning; a restart does not reset the count", async () => {
  const { backups } = await stateDir();
  const fresh = new BackupState(backups, 7, { now: () => T });
  assert.deepEqual(await run(fresh), {
    status: "ok",
    message: `no backup yet (deployment first used 2026-05-01T12:00:00.000Z; this check warns after 7 days without one): ${todo(backups)}`,
  });
  assert.deepEqual(JSON.parse(await readFile(join(backups, "first-use.json"), "utf8")), { atMs: T });

  // A server started 6 days later: still within the grace period, counted from the first use.
  assert.equal((await run(new BackupState(backups, 7, { now: () => T + 6 * DAY }))).status, "ok");
  // Started again 8 days after the first use (it has run for seconds): warns.
  assert.deepEqual(await run(new BackupState(backups, 7, { now: () => T + 8 * DAY })), {
    status: "warn",
    message: `no backup of this deployment since it was first used 8 days ago (2026-05-01T12:00:00.000Z), more than 7 days: ${todo(backups)}`,
  });
});

test("no backup ever, first check on an older deployment: the first use is dated by the credentials generated at its first start", async () => {
  const { state, backups } = await stateDir();
  await mkdir(join(state, "auth"));
  await writeFile(join(state, "auth", "token"), "t");
  await writeFile(join(state, "auth", "server-secret"), "s");
  await utimes(join(state, "auth", "token"), new Date(T - 30 * DAY), new Date(T - 30 * DAY));
  await utimes(join(state, "auth", "server-secret"), new Date(T - 10 * DAY), new Date(T - 10 * DAY));
  assert.deepEqual(await run(new BackupState(backups, 7, { now: () => T })), {
    status: "warn",
    message: `no backup of this deployment since it was first used 30 days ago (2026-04-01T12:00:00.000Z), more than 7 days: ${todo(backups)}`,
  });
  assert.deepEqual(JSON.parse(await readFile(join(backups, "first-use.json"), "utf8")), { atMs: T - 30 * DAY });
});

test("after a backup: ok until it is older than warnAfterDays, then a warning naming its age; the status section reports it", async () => {
  const { backups } = await stateDir();
  let now = T;
  const s = new BackupState(backups, 7, { now: () => now });
  await s.recordWritten("/srv/state/backups/scheduled-x.tar.gz");
  assert.deepEqual(JSON.parse(await readFile(join(backups, "last-backup.json"), "utf8")), { atMs: T, path: "/srv/state/backups/scheduled-x.tar.gz" });
  assert.deepEqual(await run(s), { status: "ok", message: "last backup 2026-05-01T12:00:00.000Z (/srv/state/backups/scheduled-x.tar.gz)" });
  now = T + 7 * DAY + 12 * 3_600_000;
  assert.deepEqual(await run(s), {
    status: "warn",
    message: `last backup is 7.5 days old (2026-05-01T12:00:00.000Z, /srv/state/backups/scheduled-x.tar.gz), more than 7 days: ${todo(backups)}`,
  });
  const section = await s.section();
  assert.equal(timestampMs(section.lastBackupAt!), T);
  assert.equal(section.lastBackupAgeSeconds, BigInt((7 * DAY + 12 * 3_600_000) / 1000));
  assert.equal(section.lastBackupPath, "/srv/state/backups/scheduled-x.tar.gz");
  assert.equal(section.archiveCount, 0);

  // A backup streamed to a client counts too (and survives a restart through the record).
  await s.recordStreamed();
  assert.deepEqual(await run(new BackupState(backups, 7, { now: () => now + 1000 })), {
    status: "ok",
    message: `last backup ${new Date(now).toISOString()} (streamed to a client)`,
  });
});

test("no record but archives in backups/: the newest one is the last backup; archiveCount counts regular .tar.gz files", async () => {
  const { backups } = await stateDir();
  await writeFile(join(backups, "scheduled-a.tar.gz"), "a");
  await writeFile(join(backups, "scheduled-b.tar.gz"), "b");
  await writeFile(join(backups, "scheduled-c.tar.gz.partial"), "c");
  await utimes(join(backups, "scheduled-a.tar.gz"), new Date(T - 5 * DAY), new Date(T - 5 * DAY));
  await utimes(join(backups, "scheduled-b.tar.gz"), new Date(T - 2 * DAY), new Date(T - 2 * DAY));
  const s = new BackupState(backups, 7, { now: () => T });
  assert.deepEqual(await run(s), { status: "ok", message: `last backup 2026-04-29T12:00:00.000Z (${join(backups, "scheduled-b.tar.gz")})` });
  assert.equal((await s.section()).archiveCount, 2);
  assert.equal((await s.section()).lastBackupAgeSeconds, BigInt((2 * DAY) / 1000));
});

test("warnAfterDays 0 turns the check off; another limit is named in the messages", async () => {
  const { backups } = await stateDir();
  assert.deepEqual(await run(new BackupState(backups, 0, { now: () => T })), { status: "ok", message: "backup check turned off (backup.warnAfterDays is 0)" });
  await new BackupState(backups, 1, { now: () => T }).check().run();
  assert.deepEqual(await run(new BackupState(backups, 1, { now: () => T + DAY + 3_600_000 })), {
    status: "warn",
    message: `no backup of this deployment since it was first used 1 day ago (2026-05-01T12:00:00.000Z), more than 1 day: ${todo(backups)}`,
  });
});
