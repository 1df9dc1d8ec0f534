import assert from "node:assert/strict";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { manifestKey } from "../../src/backup/manifest.js";
import { serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

// A backup made before the server secret changed stays verifiable and restorable; one made by
// another deployment is still refused; a fresh host verifies an old archive with --secret-file.

const OLD = "the-old-server-secret-0123456789-abcdefghijklmnop";
const NEW = "the-new-server-secret-0123456789-abcdefghijklmnop";
const UNRELATED = "an-unrelated-deployment-secret-0123456789-abcdefg";

const cli = (s: CaraEndpoint, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir]);

test("rotating the server secret keeps earlier backups verifiable (with a note); an unrelated one is still refused", async () => {
  const dir = await tempDir();
  const stateDir = join(dir, "state");
  const old = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: OLD } });
  const archive = join(dir, "old.tar.gz");
  assert.equal((await cli(old, ["backup", "-o", archive])).code, 0);
  await old.stop();
  const oldId = manifestKey(OLD).keyId;
  const newId = manifestKey(NEW).keyId;

  const s = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: NEW } });
  assert.ok(
    s.lines.some(
      (l) =>
        JSON.parse(l).msg ===
        `the server secret changed (key id ${newId} replaces ${oldId}); backups signed with earlier secrets stay verifiable through ${join(stateDir, "auth", "previous-secrets")}`,
    ),
  );
  const history = join(stateDir, "auth", "previous-secrets");
  assert.equal((await stat(history)).mode & 0o777, 0o600);
  const stored = await readFile(history, "utf8");
  assert.deepEqual(
    JSON.parse(stored).keys.map((k: { keyId: string }) => k.keyId),
    [oldId, newId],
  );
  assert.ok(!stored.includes(OLD) && !stored.includes(NEW), "the secrets themselves are not stored");

  const verify = await cli(s, ["backup", "verify", archive]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /^OK: /);
  assert.ok(verify.stdout.includes(`\n  Note:     signed with a previous secret (key id ${oldId})\n`), verify.stdout);
  const json = JSON.parse((await cli(s, ["backup", "inspect", archive, "--json"])).stdout);
  assert.deepEqual([json.ok, json.manifest.keyId, json.manifest.signedWithPreviousSecret, json.manifest.foreign], [true, oldId, true, false]);

  const restore = await cli(s, ["restore", archive, "--dry-run"]);
  assert.equal(restore.code, 0, restore.stderr);
  assert.ok(
    restore.stdout.startsWith(`Dry run: nothing was changed. The restore would do this:\n  Note: signed with a previous secret (key id ${oldId})\n`),
    restore.stdout,
  );

  // A backup of this deployment under the new secret has no note.
  const fresh = join(dir, "new.tar.gz");
  assert.equal((await cli(s, ["backup", "-o", fresh])).code, 0);
  const verifyNew = await cli(s, ["backup", "verify", fresh]);
  assert.equal(verifyNew.code, 0);
  assert.ok(!verifyNew.stdout.includes("Note:"));

  // Another deployment's archive is refused, naming its key id.
  const other = await serveCara({ env: { CARAPACE_SERVER_SECRET: UNRELATED } });
  const foreign = join(dir, "foreign.tar.gz");
  assert.equal((await cli(other, ["backup", "-o", foreign])).code, 0);
  await other.stop();
  const refused = await cli(s, ["restore", foreign, "--force"]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    new RegExp(`manifest is signed with key id ${manifestKey(UNRELATED).keyId}, which is neither this deployment's server secret nor a previous one`),
  );
  const foreignVerify = await cli(s, ["backup", "verify", foreign]);
  assert.equal(foreignVerify.code, 1);
  assert.match(foreignVerify.stdout, /^NOT OK: /);
  const foreignJson = JSON.parse((await cli(s, ["backup", "verify", foreign, "--json"])).stdout);
  assert.deepEqual([foreignJson.ok, foreignJson.manifest.foreign, foreignJson.problems.map((p: { kind: string }) => p.kind)], [false, true, ["foreign"]]);
  await s.stop();

  // Restarting with the same secret records nothing new.
  const again = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: NEW } });
  assert.equal(await readFile(history, "utf8"), stored);
  assert.ok(!again.lines.some((l) => JSON.parse(l).msg.startsWith("the server secret changed")));
  await again.stop();
});

test("switching from the generated secret to CARAPACE_SERVER_SECRET keeps the generated one's backups", async () => {
  const stateDir = join(await tempDir(), "state");
  const generated = await serveCara({ stateDir });
  const archive = join(stateDir, "..", "gen.tar.gz");
  assert.equal((await cli(generated, ["backup", "-o", archive])).code, 0);
  await generated.stop();
  const genId = manifestKey((await readFile(join(stateDir, "auth", "server-secret"), "utf8")).trim()).keyId;
  const s = await serveCara({ stateDir, env: { CARAPACE_SERVER_SECRET: NEW } });
  const verify = await cli(s, ["backup", "verify", archive]);
  assert.equal(verify.code, 0, verify.stdout);
  assert.ok(verify.stdout.includes(`Note:     signed with a previous secret (key id ${genId})`));
  await s.stop();
});

test("a fresh host verifies and restores an old archive with --secret-file; without it the archive is refused", async () => {
  const dir = await tempDir();
  const old = await serveCara({ env: { CARAPACE_SERVER_SECRET: OLD } });
  const archive = join(dir, "old.tar.gz");
  assert.equal((await cli(old, ["backup", "-o", archive])).code, 0);
  await old.stop();
  const secretFile = join(dir, "old-secret");
  await writeFile(secretFile, `${OLD}\n`, { mode: 0o600 });
  const freshState = join(dir, "fresh");
  const env = { CARAPACE_SERVER_SECRET: NEW };
  const oldId = manifestKey(OLD).keyId;

  const verify = await runCli(["backup", "verify", archive, "--secret-file", secretFile, "--state-dir", freshState], { env });
  assert.equal(verify.code, 0, verify.stderr);
  assert.ok(verify.stdout.includes(`Note:     signed with a previous secret (key id ${oldId})`));

  const refused = await runCli(["restore", archive, "--offline", "--dry-run", "--state-dir", freshState], { env });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /which is neither this deployment's server secret nor a previous one.*--secret-file/);

  const restored = await runCli(["restore", archive, "--offline", "--force", "--secret-file", secretFile, "--state-dir", freshState], { env });
  assert.equal(restored.code, 0, restored.stderr);
  assert.ok(restored.stdout.startsWith(`Restore completed successfully\n  Note: signed with a previous secret (key id ${oldId})\n`), restored.stdout);

  const online = await runCli(["restore", archive, "--secret-file", secretFile, "--state-dir", freshState], { env });
  assert.deepEqual(
    [online.code, online.stderr.split("\n")[0]],
    [2, "Error: --secret-file needs --offline: a running server verifies with its own current and previous secrets"],
  );
  const missing = await runCli(["backup", "verify", archive, "--secret-file", join(dir, "nope"), "--state-dir", freshState], { env });
  assert.deepEqual([missing.code, missing.stderr], [1, `Error: secret file ${join(dir, "nope")} does not exist\n`]);
});
