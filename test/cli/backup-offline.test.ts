/**
 * `cara backup verify` and `cara backup inspect` without a server (the secret read locally), and
 * `--allow-foreign`, which checks everything but authenticity and says so; `cara restore` with
 * no server points at --offline.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { backupBlocks, END, LEGIT, OTHER_SECRET, SECRET, sha256 } from "../backup/fixtures.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/cara.js";

async function freePort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, "close");
  return port;
}

/** A state dir holding SECRET as its server secret, and a directory with archives. */
async function setup() {
  const root = await tempDir();
  const state = join(root, "state");
  await mkdir(join(state, "auth"), { recursive: true });
  await writeFile(join(state, "auth", "server-secret"), `${SECRET}\n`, { mode: 0o600 });
  const ours = gzipSync(Buffer.concat([backupBlocks(LEGIT), END]));
  const foreign = gzipSync(Buffer.concat([backupBlocks(LEGIT, { secret: OTHER_SECRET }), END]));
  // The second file's bytes changed after signing (same size): its hash no longer matches.
  const blocks = backupBlocks(LEGIT, { secret: OTHER_SECRET });
  blocks.write('{"tasks":[0]', blocks.indexOf('{"tasks":[]}'), "latin1");
  const tampered = gzipSync(Buffer.concat([blocks, END]));
  await writeFile(join(root, "ours.tar.gz"), ours);
  await writeFile(join(root, "foreign.tar.gz"), foreign);
  await writeFile(join(root, "tampered.tar.gz"), tampered);
  return { root, state, oursSha: sha256(ours), foreignSha: sha256(foreign) };
}

const summary = (sha: string) => [
  "  Created:  2026-01-02T03:04:05.678Z on test-host by cara 0.1.0 (format v2)",
  "  Sections: config (1 file, 15 B), tasks (1 file, 13 B)",
  "  Files:    2 files, 28 B uncompressed",
  `  SHA-256:  ${sha}`,
];

test("backup verify --offline reads the secret from <state>/auth/server-secret or CARAPACE_SERVER_SECRET", async () => {
  const { root, state, oursSha } = await setup();
  const r = await runCli(["backup", "verify", "ours.tar.gz", "--offline"], { cwd: root, env: { CARAPACE_STATE_DIR: state } });
  assert.deepEqual(r, {
    code: 0,
    stdout: ["OK: ours.tar.gz is a complete, untampered backup of this deployment", ...summary(oursSha), ""].join("\n"),
    stderr: `(reading the archive here, with the server secret from ${join(state, "auth", "server-secret")})\n`,
  });
  const env = await runCli(["backup", "verify", "ours.tar.gz", "--offline"], {
    cwd: root,
    env: { CARAPACE_STATE_DIR: join(root, "elsewhere"), CARAPACE_SERVER_SECRET: SECRET },
  });
  assert.deepEqual([env.code, env.stderr], [0, "(reading the archive here, with the server secret from CARAPACE_SERVER_SECRET)\n"]);
  assert.ok(!env.stdout.includes(SECRET) && !env.stderr.includes(SECRET));
  const none = await runCli(["backup", "verify", "ours.tar.gz", "--offline"], { cwd: root, env: { CARAPACE_STATE_DIR: join(root, "elsewhere") } });
  assert.deepEqual(none, {
    code: 1,
    stdout: "",
    stderr:
      "Error: no server secret to check the backup's authenticity with: set CARAPACE_SERVER_SECRET, or pass the deployment's --state-dir (it holds auth/server-secret); or pass --allow-foreign to check everything but authenticity\n",
  });
});

test("no server answers on this machine: verify and inspect read the archive here, and say so", async () => {
  const { root, state, oursSha, foreignSha } = await setup();
  const port = await freePort();
  const env = { CARAPACE_STATE_DIR: state };
  const note = `(no server answers at 127.0.0.1:${port}: reading the archive here, with the server secret from ${join(state, "auth", "server-secret")})\n`;
  const inspect = await runCli(["backup", "inspect", "ours.tar.gz", "--port", String(port)], { cwd: root, env });
  assert.deepEqual(inspect, {
    code: 0,
    stdout: [
      "OK: ours.tar.gz is a complete, untampered backup of this deployment",
      ...summary(oursSha),
      "  0600         15  config/config.json",
      "  0600         13  tasks/queue.json",
      "",
    ].join("\n"),
    stderr: note,
  });
  const foreign = await runCli(["backup", "verify", "foreign.tar.gz", "--port", String(port)], { cwd: root, env });
  assert.deepEqual(foreign, {
    code: 1,
    stdout: [
      "NOT OK: foreign.tar.gz failed verification",
      ...summary(foreignSha),
      "  problem: manifest is signed with key id 33c35d4efd5dd1d6, which is neither this deployment's server secret nor a previous one: the backup was made by another deployment or with a secret this state dir never used (give that secret with --secret-file), or manifest.json was changed after signing",
      "",
    ].join("\n"),
    stderr: note,
  });
  const json = await runCli(["backup", "verify", "ours.tar.gz", "--port", String(port), "--json"], { cwd: root, env });
  const doc = JSON.parse(json.stdout);
  // The key id names the signing key (a digest of it, not the secret).
  assert.match(doc.manifest.keyId, /^[0-9a-f]{16}$/);
  assert.deepEqual(doc, {
    ok: true,
    authenticityChecked: true,
    manifest: {
      caraVersion: "0.1.0",
      createdAt: "2026-01-02T03:04:05.678Z",
      host: "test-host",
      foreign: false,
      keyId: doc.manifest.keyId,
      signedWithPreviousSecret: false,
      sections: [
        { name: "config", files: 1, bytes: 15 },
        { name: "tasks", files: 1, bytes: 13 },
      ],
      totalFiles: 2,
      totalBytes: 28,
      archiveSha256: oursSha,
    },
    problems: [],
  });
});

test("--allow-foreign checks marker, manifest and every hash, and says plainly that authenticity was not checked", async () => {
  const { root, foreignSha } = await setup();
  const env = { CARAPACE_STATE_DIR: join(root, "no-state") };
  const ok = await runCli(["backup", "verify", "foreign.tar.gz", "--allow-foreign"], { cwd: root, env });
  assert.deepEqual(ok, {
    code: 0,
    stdout: [
      "OK: foreign.tar.gz is complete and intact (marker, manifest and every file's SHA-256 match)",
      ...summary(foreignSha),
      "  Authenticity NOT checked (--allow-foreign): the manifest's HMAC was not verified, so anyone could have made this archive.",
      "",
    ].join("\n"),
    stderr: "",
  });
  const bad = await runCli(["backup", "verify", "tampered.tar.gz", "--allow-foreign"], { cwd: root, env });
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^NOT OK: tampered\.tar\.gz failed verification\n/);
  assert.match(bad.stdout, /\n {2}problem: entry 'tasks\/queue\.json' does not match its SHA-256 in the manifest\n/);
  assert.match(bad.stdout, /\n {2}Authenticity NOT checked \(--allow-foreign\)/);
});

test("cara restore with no server suggests --offline, with the command to run", async () => {
  const { root, state } = await setup();
  const port = await freePort();
  const r = await runCli(["restore", "ours.tar.gz", "--port", String(port), "--force"], { cwd: root, env: { CARAPACE_STATE_DIR: state } });
  assert.deepEqual(r, {
    code: 1,
    stdout: "",
    stderr: `Error: Could not connect to carapace at 127.0.0.1:${port} (connection refused). Is 'cara start' running? If the server cannot start, restore offline: cara restore ${join(root, "ours.tar.gz")} --offline --state-dir ${state} --force\n`,
  });
});
