import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { manifestKey } from "../../src/backup/manifest.js";
import { readPreviousKeys, recordServerSecret } from "../../src/backup/previous-secrets.js";
import { localVerificationKeys } from "../../src/backup/local-keys.js";
import { statePaths } from "../../src/state/paths.js";
import { tempDir } from "../helpers/cara.js";

const A = "first-server-secret-0123456789-abcdefghijklmnopq";
const B = "second-server-secret-0123456789-abcdefghijklmnop";
const C = "third-server-secret-0123456789-abcdefghijklmnopq";

async function paths() {
  const p = statePaths(join(await tempDir(), "state"));
  await mkdir(p.authDir, { recursive: true, mode: 0o700 });
  return p;
}

test("previous-secrets: each new secret is recorded once (0600, keys only); earlier ones become previous keys, newest first", async () => {
  const p = await paths();
  assert.deepEqual(await recordServerSecret(p, A), { previousKeys: [] });
  assert.equal((await stat(p.previousSecrets)).mode & 0o777, 0o600);
  const afterA = await readFile(p.previousSecrets, "utf8");
  assert.deepEqual(await recordServerSecret(p, A), { previousKeys: [] });
  assert.equal(await readFile(p.previousSecrets, "utf8"), afterA, "an unchanged secret writes nothing");

  const b = await recordServerSecret(p, B);
  assert.deepEqual(b, { previousKeys: [manifestKey(A)], replaced: manifestKey(A).keyId });
  const c = await recordServerSecret(p, C);
  assert.deepEqual(c, { previousKeys: [manifestKey(B), manifestKey(A)], replaced: manifestKey(B).keyId });
  // Going back to an earlier secret is no change of record: the others stay previous keys.
  assert.deepEqual(await recordServerSecret(p, A), { previousKeys: [manifestKey(C), manifestKey(B)] });
  const text = await readFile(p.previousSecrets, "utf8");
  for (const secret of [A, B, C]) assert.ok(!text.includes(secret));
  assert.deepEqual(await readPreviousKeys(p, C), [manifestKey(B), manifestKey(A)]);
});

test("previous-secrets: the generated auth/server-secret becomes a previous key when CARAPACE_SERVER_SECRET replaces it", async () => {
  const p = await paths();
  await writeFile(p.serverSecret, `${A}\n`, { mode: 0o600 });
  assert.deepEqual(await recordServerSecret(p, B), { previousKeys: [manifestKey(A)], replaced: manifestKey(A).keyId });
});

test("previous-secrets: a corrupt file is refused with the way out and left as it was", async () => {
  const p = await paths();
  for (const bad of [
    "not json",
    '{"format":"carapace-previous-secrets","version":2,"keys":[]}',
    '{"format":"carapace-previous-secrets","version":1,"keys":[{"keyId":"0000000000000000","key":"AAAA","since":"x"}]}',
  ]) {
    await writeFile(p.previousSecrets, bad, { mode: 0o600 });
    const why =
      bad === "not json" ? "not valid JSON" : bad.includes('"version":2') ? "not a carapace-previous-secrets version 1 document" : "keys[0] is invalid";
    await assert.rejects(recordServerSecret(p, A), {
      message: `${p.previousSecrets} is unreadable (${why}); restore it from a copy, or delete it (archives signed with earlier server secrets then need --secret-file to verify)`,
    });
    assert.equal(await readFile(p.previousSecrets, "utf8"), bad);
  }
});

test("local keys: the state's secret, its previous keys and --secret-file; clear errors without any", async () => {
  const p = await paths();
  await assert.rejects(localVerificationKeys(p, {}), {
    message: `no server secret to verify the backup with: set CARAPACE_SERVER_SECRET, keep ${p.serverSecret}, or pass --secret-file FILE (or --allow-foreign)`,
  });
  const file = join(p.root, "..", "old-secret");
  await writeFile(file, `${A}\n`);
  assert.deepEqual(await localVerificationKeys(p, {}, file), { secret: A, previousKeys: [] });
  await recordServerSecret(p, B);
  assert.deepEqual(await localVerificationKeys(p, { CARAPACE_SERVER_SECRET: C }, file), { secret: C, previousKeys: [manifestKey(A), manifestKey(B)] });
  await writeFile(file, "short\n");
  await assert.rejects(localVerificationKeys(p, { CARAPACE_SERVER_SECRET: C }, file), {
    message: `secret file ${file} holds no server secret (5 characters; at least 32)`,
  });
});
