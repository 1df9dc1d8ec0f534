// The unary backup RPCs a browser uses (it cannot send request streams): UploadBackup,
// InspectStoredBackup, RestoreStoredBackup, driven as curl would, over HTTP/1.1 JSON.
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { SECRET } from "../backup/fixtures.js";

const env = { CARAPACE_SERVER_SECRET: SECRET };
const B = "carapace.backup.v1.BackupService";

test("upload an archive in pieces, then inspect and dry-run restore it by name; the restore changes the state", async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "info" }));
  const file = join(await tempDir(), "b.tar.gz");
  const made = await runCli(["backup", "--output", file, "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(made.code, 0, made.stderr);
  const archive = await readFile(file);

  // Three pieces: 200 bytes, 200 bytes, the rest with finish.
  let uploadId = "";
  let offset = 0;
  for (const end of [200, 400, archive.length]) {
    const res = await connectJson(
      s,
      `${B}/UploadBackup`,
      { uploadId, offset: String(offset), chunk: archive.subarray(offset, end).toString("base64"), finish: end === archive.length },
      s.token,
    );
    assert.equal(res.status, 200, JSON.stringify(res.json));
    uploadId = res.json.uploadId;
    offset = end;
    assert.equal(res.json.bytesReceived, String(end));
    if (end === archive.length) {
      assert.match(res.json.backupName, /^upload-\d{8}T\d{6}Z-[0-9a-f]{4}\.tar\.gz$/);
      assert.match(res.json.sha256, /^[0-9a-f]{64}$/);
    }
  }
  const names = (await readdir(join(s.stateDir, "backups"))).filter((n) => n.startsWith("upload-"));
  assert.equal(names.length, 1);
  const name = names[0]!;
  assert.deepEqual(await readFile(join(s.stateDir, "backups", name)), archive);

  const listed = await connectJson(s, `${B}/ListBackups`, {}, s.token);
  assert.equal(listed.json.backups.find((b: { name: string }) => b.name === name)?.origin, "upload");

  const inspected = await connectJson(s, `${B}/InspectStoredBackup`, { backupName: name, includeFiles: true }, s.token);
  assert.equal(inspected.status, 200, JSON.stringify(inspected.json));
  assert.equal(inspected.json.result.verification.ok, true);
  assert.deepEqual(
    inspected.json.result.manifest.sections.map((x: { name: string }) => x.name),
    ["config", "tasks"],
  );
  assert.ok(inspected.json.result.files.some((f: { path: string }) => f.path === "config/config.json"));

  // Change the state, then the dry run shows the change back and touches nothing.
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "warn" }));
  const dry = await connectJson(s, `${B}/RestoreStoredBackup`, { backupName: name, dryRun: true, sections: ["config"] }, s.token);
  assert.equal(dry.status, 200, JSON.stringify(dry.json));
  assert.equal(dry.json.result.dryRun, true);
  assert.deepEqual(
    dry.json.result.diffs.map((d: { section: string; changedCount?: number; changed?: string[] }) => [d.section, d.changedCount, d.changed]),
    [["config", 1, ["config/config.json"]]],
  );
  assert.equal(await readFile(join(s.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "warn" }));

  // Without force it refuses (nothing changes); with force it restores and names the pre-restore backup.
  const refused = await connectJson(s, `${B}/RestoreStoredBackup`, { backupName: name, sections: ["config"] }, s.token);
  assert.equal(refused.json.code, "failed_precondition");
  assert.match(refused.json.message, /^restore would overwrite or remove 1 existing file in config; review with --dry-run, then pass --force/);
  assert.equal(await readFile(join(s.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "warn" }));
  const done = await connectJson(s, `${B}/RestoreStoredBackup`, { backupName: name, sections: ["config"], force: true }, s.token);
  assert.equal(done.status, 200, JSON.stringify(done.json));
  assert.deepEqual(done.json.result.restoredSections, ["config"]);
  assert.match(done.json.result.preRestoreBackupPath, /\/backups\/pre-restore-/);
  assert.equal(await readFile(join(s.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "info" }));
  await s.stop();
});

test("stored-archive RPCs: a name with a path is InvalidArgument, an unknown one NotFound; a damaged upload is reported, not refused", async () => {
  const s = await serveCara({ env });
  for (const bad of ["../config.json", "a/b.tar.gz", ".hidden.tar.gz", "x.txt"]) {
    const res = await connectJson(s, `${B}/InspectStoredBackup`, { backupName: bad }, s.token);
    assert.equal(res.json.code, "invalid_argument", bad);
    assert.match(res.json.message, /^backup name '.*' is not a file name in /);
    const restore = await connectJson(s, `${B}/RestoreStoredBackup`, { backupName: bad, dryRun: true }, s.token);
    assert.equal(restore.json.code, "invalid_argument", bad);
  }
  const missing = await connectJson(s, `${B}/InspectStoredBackup`, { backupName: "nope.tar.gz" }, s.token);
  assert.equal(missing.json.code, "not_found");
  assert.equal(missing.json.message, "no backup named 'nope.tar.gz' (see cara backup list)");

  const up = await connectJson(s, `${B}/UploadBackup`, { chunk: Buffer.from("not a tarball").toString("base64"), finish: true }, s.token);
  assert.equal(up.status, 200);
  const inspected = await connectJson(s, `${B}/InspectStoredBackup`, { backupName: up.json.backupName }, s.token);
  assert.equal(inspected.json.result.verification.ok ?? false, false);
  assert.equal(inspected.json.result.verification.problems[0].kind, "BACKUP_PROBLEM_KIND_CORRUPT_ARCHIVE");

  const wrongOffset = await connectJson(s, `${B}/UploadBackup`, { offset: "3", chunk: "" }, s.token);
  assert.equal(wrongOffset.json.code, "invalid_argument");
  assert.equal(wrongOffset.json.message, "a new upload starts at offset 0 (got 3); to continue one, pass its upload_id");
  const noToken = await connectJson(s, `${B}/UploadBackup`, { chunk: "" });
  assert.equal(noToken.status, 401);
  await s.stop();
});
