import assert from "node:assert/strict";
import { createHmac, hkdfSync } from "node:crypto";
import { test } from "node:test";
import {
  canonicalJson,
  deriveKey,
  findSigningKey,
  keyIdOf,
  manifestKey,
  parseManifest,
  signManifest,
  verifyManifestHmac,
  type Manifest,
} from "../../src/backup/manifest.js";
import { OTHER_SECRET, SECRET, manifestFor, sha256 } from "./fixtures.js";

test("deriveKey is HKDF-SHA256(secret, salt 'carapace', info purpose), 32 bytes", () => {
  const key = deriveKey(SECRET, "backup-manifest");
  assert.equal(key.length, 32);
  assert.deepEqual(key, Buffer.from(hkdfSync("sha256", SECRET, "carapace", "backup-manifest", 32)));
  assert.notDeepEqual(key, deriveKey(SECRET, "other-purpose"));
  assert.notDeepEqual(key, deriveKey(OTHER_SECRET, "backup-manifest"));
  assert.throws(() => deriveKey("", "x"), /empty server secret/);
});

test("canonical JSON sorts keys and has no whitespace", () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: "x", c: null }], é: true }), '{"a":[{"c":null,"d":"x"}],"b":1,"é":true}');
});

test("signManifest: HMAC over the canonical manifest without hmac; verify is keyed", () => {
  const m = manifestFor([{ path: "tasks/queue.json", content: "{}" }]);
  const { hmac, ...unsigned } = m;
  const expected = createHmac("sha256", deriveKey(SECRET, "backup-manifest")).update(canonicalJson(unsigned)).digest("hex");
  assert.equal(hmac, expected);
  assert.equal(verifyManifestHmac(m, SECRET), true);
  assert.equal(verifyManifestHmac(m, OTHER_SECRET), false);
  assert.equal(verifyManifestHmac({ ...m, host: "elsewhere" }, SECRET), false);
  assert.equal(verifyManifestHmac({ ...m, files: [{ ...m.files[0]!, mode: 0o644 }] }, SECRET), false);
  assert.equal(verifyManifestHmac({ ...m, hmac: "zz" }, SECRET), false);
  // Key order and formatting of the JSON text do not matter.
  const reordered = Object.fromEntries(Object.entries(m).reverse());
  const reparsed = parseManifest(JSON.stringify(reordered, null, 4));
  assert.ok(reparsed.ok);
  assert.equal(verifyManifestHmac(reparsed.manifest, SECRET), true);
  assert.deepEqual(signManifest(unsigned, SECRET), m);
});

test("key id: derived from the signing key, covered by the HMAC; a manifest without one is checked against every key", () => {
  const m = manifestFor([{ path: "tasks/queue.json", content: "{}" }]);
  const key = manifestKey(SECRET);
  assert.equal(m.keyId, key.keyId);
  assert.match(key.keyId, /^[0-9a-f]{16}$/);
  assert.equal(key.keyId, keyIdOf(deriveKey(SECRET, "backup-manifest")));
  assert.ok(!SECRET.includes(key.keyId) && !key.key.toString("hex").includes(key.keyId));
  assert.equal(verifyManifestHmac({ ...m, keyId: manifestKey(OTHER_SECRET).keyId }, SECRET), false);
  assert.equal(findSigningKey(m, [manifestKey(OTHER_SECRET), key]), key);
  assert.equal(findSigningKey({ ...m, keyId: manifestKey(OTHER_SECRET).keyId }, [manifestKey(OTHER_SECRET), key]), undefined);
  // Archives written before key ids: signed without one.
  const { hmac: _h, keyId: _k, ...rest } = m;
  const bare = { ...rest, formatVersion: 1 as const };
  const legacy = { ...bare, hmac: createHmac("sha256", key.key).update(canonicalJson(bare)).digest("hex") };
  const parsed = parseManifest(JSON.stringify(legacy));
  assert.ok(parsed.ok);
  assert.equal(parsed.manifest.keyId, undefined);
  assert.equal(findSigningKey(parsed.manifest, [manifestKey(OTHER_SECRET), key]), key);
  assert.equal(
    invalid((x) => (x.keyId = "XYZ")),
    "manifest.json is invalid: 'keyId' must be 16 lowercase hex digits",
  );
  assert.equal(
    invalid((x) => delete x.keyId),
    "manifest.json is invalid: the manifest has no 'keyId'",
  );
  assert.equal(
    invalid((x) => (x.formatVersion = 1)),
    "manifest.json is invalid: 'keyId' is not part of format version 1",
  );
});

function invalid(mutate: (m: Record<string, any>) => void): string {
  const m = JSON.parse(
    JSON.stringify(
      manifestFor([
        { path: "tasks/queue.json", content: "{}" },
        { path: "sessions/a/b.jsonl", content: "x\n" },
      ]),
    ),
  ) as Record<string, any>;
  mutate(m);
  const r = parseManifest(JSON.stringify(m));
  assert.equal(r.ok, false);
  if (r.ok) throw new Error("unreachable");
  assert.equal(r.kind, "manifest_invalid");
  return r.message;
}

test("parseManifest accepts a valid manifest", () => {
  const m = manifestFor([
    { path: "tasks/queue.json", content: "{}" },
    { path: "config/config.json", content: "{}" },
  ]);
  const r = parseManifest(Buffer.from(JSON.stringify(m)));
  assert.deepEqual(r, { ok: true, manifest: m as Manifest });
});

test("parseManifest rejects invalid manifests with a message naming the field", () => {
  const p = "manifest.json is invalid: ";
  assert.equal(
    invalid((m) => (m.format = "tar")),
    `${p}'format' must be "carapace-backup"`,
  );
  assert.equal(
    invalid((m) => (m.formatVersion = 0)),
    `${p}'formatVersion' must be a positive integer`,
  );
  assert.equal(
    invalid((m) => (m.extra = 1)),
    `${p}the manifest has an unknown field 'extra'`,
  );
  assert.equal(
    invalid((m) => delete m.host),
    `${p}the manifest has no 'host'`,
  );
  assert.equal(
    invalid((m) => (m.createdAt = "yesterday")),
    `${p}'createdAt' must be an ISO 8601 UTC time`,
  );
  assert.equal(
    invalid((m) => (m.caraVersion = 7)),
    `${p}'caraVersion' must be a string`,
  );
  assert.equal(
    invalid((m) => (m.host = "a\nb")),
    `${p}'host' has a control character`,
  );
  assert.equal(
    invalid((m) => (m.hmac = "ABC")),
    `${p}'hmac' must be 64 lowercase hex digits`,
  );
  assert.equal(
    invalid((m) => (m.files[0].path = "tasks/../../x")),
    `${p}files[0].path 'tasks/../../x' escapes the state directory`,
  );
  assert.equal(
    invalid((m) => (m.files[0].path = "/etc/passwd")),
    `${p}files[0].path '/etc/passwd' is an absolute path`,
  );
  assert.equal(
    invalid((m) => (m.files[0].path = "tasks/a\u0000b")),
    `${p}files[0].path 'tasks/a\\0b' has a NUL character in its name`,
  );
  assert.equal(
    invalid((m) => (m.files[0].path = "evil/x")),
    `${p}files[0].path 'evil/x' is outside every backup section`,
  );
  assert.equal(
    invalid((m) => (m.files[1].path = "tasks/queue.json")),
    `${p}'tasks/queue.json' is listed twice`,
  );
  assert.equal(
    invalid((m) => m.files.push({ ...m.files[0], path: "tasks/queue.json/x" })),
    `${p}'tasks/queue.json' is listed both as a file and as a directory`,
  );
  assert.equal(
    invalid((m) => (m.files[0].size = -1)),
    `${p}files[0].size must be a non-negative integer`,
  );
  assert.equal(
    invalid((m) => (m.files[0].size = 1.5)),
    `${p}files[0].size must be a non-negative integer`,
  );
  assert.equal(
    invalid((m) => (m.files[0].mode = 0o4755)),
    `${p}files[0].mode must be an integer from 0 to 0o777`,
  );
  assert.equal(
    invalid((m) => (m.files[0].sha256 = sha256("x").toUpperCase())),
    `${p}files[0].sha256 must be 64 lowercase hex digits`,
  );
  assert.equal(
    invalid((m) => (m.files[0].extra = true)),
    `${p}files[0] has an unknown field 'extra'`,
  );
  assert.equal(
    invalid((m) => (m.sections[0].files = 5)),
    `${p}section 'tasks' says 5 files / 2 bytes but the file list has 1 / 2`,
  );
  assert.equal(
    invalid((m) => m.sections.push({ ...m.sections[0] })),
    `${p}section 'tasks' is listed twice`,
  );
  assert.equal(
    invalid((m) => (m.sections[0].name = "plugins")),
    `${p}sections[0].name 'plugins' is not a known section (config, tasks, sessions, memory, cron, usage); made by a newer cara?`,
  );
  assert.equal(
    invalid((m) => m.sections.splice(1, 1)),
    `${p}files[1].path 'sessions/a/b.jsonl' is in section 'sessions', which 'sections' does not list`,
  );
  assert.equal(
    invalid((m) => (m.files = {})),
    `${p}'files' must be an array`,
  );

  const notJson = parseManifest("{nope");
  assert.equal(notJson.ok, false);
  if (!notJson.ok) assert.match(notJson.message, /^manifest\.json is not valid JSON \(/);
  const notUtf8 = parseManifest(Buffer.from([0x7b, 0xff, 0x7d]));
  assert.equal(notUtf8.ok, false);
});

test("parseManifest: a newer format version is version_unsupported", () => {
  const m = { ...manifestFor([]), formatVersion: 3, somethingNew: [] };
  assert.deepEqual(parseManifest(JSON.stringify(m)), {
    ok: false,
    kind: "version_unsupported",
    message: "manifest format version 3 is newer than this cara understands (2); upgrade cara to read this backup",
  });
});

test("parseManifest applies maxFileBytes", () => {
  const m = manifestFor([{ path: "tasks/big", content: "x".repeat(100) }]);
  const r = parseManifest(JSON.stringify(m), { maxFileBytes: 10 });
  assert.deepEqual(r, { ok: false, kind: "manifest_invalid", message: "manifest.json is invalid: files[0].size is 100, over the limit of 10" });
});
