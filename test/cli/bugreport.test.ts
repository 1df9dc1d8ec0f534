// `cara bugreport` in this process: the archive's files and mode, what it prints, and a leak
// check with secrets planted in the config, the environment, the logs and the task payloads.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { formatBytes } from "../../src/format-bytes.js";
import { serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

const SECRET = "bugreport-server-secret-must-never-leak-0123";
const API_KEY = "sk-proj-bugreport0123456789abcdefghijklmnopq";
const PASSWORD = "hunter2-correct-horse-battery";
const PAYLOAD_TEXT = "the-private-payload-text-4711";
const env = { CARAPACE_SERVER_SECRET: SECRET, CARAPACE_AGENT_API_KEY: API_KEY };

/** A running server whose config, environment and queue hold secrets. */
async function plantedServer() {
  const s = await serveCara({ env, config: { agent: { baseUrl: `https://ops:${PASSWORD}@llm.example/v1`, model: "m" } } });
  const made = await runCli(
    [
      "task",
      "create",
      "--payload",
      JSON.stringify({ kind: "systemEvent", text: `${PAYLOAD_TEXT} api_key=${API_KEY}` }),
      "--port",
      String(s.port),
      "--state-dir",
      s.stateDir,
    ],
    { env },
  );
  assert.equal(made.code, 0, made.stderr);
  return s;
}

/** Every file of the archive, by name, as text. */
function unpack(file: string, into: string): { names: string[]; text: string } {
  const names = execFileSync("tar", ["-tzf", file], { encoding: "utf8" }).trim().split("\n");
  execFileSync("tar", ["-xzf", file, "-C", into]);
  const text = names
    .filter((n) => !n.endsWith("/"))
    .map((n) => execFileSync("cat", [join(into, n)], { encoding: "utf8" }))
    .join("\n");
  return { names, text };
}

test("a bug report of a running server: the files, mode 0600, what it prints, and no secret or payload inside", async () => {
  const s = await plantedServer();
  const out = join(await tempDir(), "report.tar.gz");
  const res = await runCli(["bugreport", "-o", out, "--state-dir", s.stateDir, "--port", String(s.port)], { env });
  assert.equal(res.stderr, "");
  assert.equal(res.code, 0);
  const st = await stat(out);
  assert.equal(st.mode & 0o777, 0o600);
  const { names, text } = unpack(out, await tempDir());
  assert.deepEqual(
    names.filter((n) => !n.endsWith("/")).sort(),
    ["config.json", "doctor.json", "logs.jsonl", "queue.json", "README.txt", "status.json", "update.json", "versions.json"].map((n) => `report/${n}`).sort(),
  );
  const token = (await readFile(join(s.stateDir, "auth", "token"), "utf8")).trim();
  for (const secret of [token, SECRET, API_KEY, PASSWORD, PAYLOAD_TEXT])
    assert.ok(!text.includes(secret), `${secret.slice(0, 12)}... leaked: ${text.split("\n").find((l) => l.includes(secret))}`);
  assert.ok(!res.stdout.includes(PASSWORD));
  assert.match(text, /"total": 1/);
  assert.match(text, /"CARAPACE_SERVER_SECRET": "\[REDACTED\]"/, "versions.json names the variables set, never their values");
  const logsLine = /the last \d+ log records \(from the server's ring\)/.exec(res.stdout)?.[0];
  assert.ok(logsLine, res.stdout);
  assert.equal(
    res.stdout,
    [
      `Wrote ${out} (${formatBytes(st.size)}, mode 0600)`,
      "",
      "Contains:",
      "  doctor.json    the doctor report (cara doctor --json)",
      "  status.json    the server's status (cara status --json)",
      `  logs.jsonl     ${logsLine}`,
      "  config.json    config.json, secrets redacted",
      "  versions.json  cara, Node.js, OS and architecture",
      "  update.json    the update transaction and rollback marker",
      "  queue.json     tasks per state",
      "  README.txt     this list",
      "",
      "Left out:",
      "  auth/ (token, server secret): never included",
      "  backups/ and the task store files themselves",
      "  task payloads (pass --include-payloads to include them, redacted)",
      "",
      "No token, secret, API key or task payload is inside; attach it to the issue with the exact steps that led there.",
      "",
    ].join("\n"),
  );
  await s.stop();
});

test("with the server down, the log files are read (secrets planted in them stay out); --include-payloads adds the tasks, redacted", async () => {
  const s = await plantedServer();
  await s.stop();
  const token = (await readFile(join(s.stateDir, "auth", "token"), "utf8")).trim();
  await writeFile(
    join(s.stateDir, "logs", "cara.log"),
    `${JSON.stringify({ level: "warn", time: new Date().toISOString(), component: "tasks", msg: `calling with ${token}`, header: `Bearer ${token}`, secret: SECRET, key: API_KEY })}\n`,
    { flag: "a" },
  );
  const out = join(await tempDir(), "down.tar.gz");
  const res = await runCli(["bugreport", "-o", out, "--include-payloads", "--state-dir", s.stateDir], { env });
  assert.equal(res.code, 0, res.stderr);
  assert.ok(res.stdout.includes("\n  tasks.json     every task with its payload (--include-payloads), redacted\n"), res.stdout);
  assert.ok(res.stdout.includes("\n  status.json: no server answered\n"));
  assert.match(res.stdout, /\n {2}logs\.jsonl {5}the last \d+ log records \(from the log files\)\n/);
  assert.ok(res.stdout.endsWith("\nTask payloads are inside (redacted): read them before you share the file.\n"));
  const { text } = unpack(out, await tempDir());
  assert.ok(text.includes(PAYLOAD_TEXT), "the payload is there on request");
  assert.match(text, /calling with \[REDACTED\]/);
  for (const secret of [token, SECRET, API_KEY, PASSWORD]) assert.ok(!text.includes(secret), `${secret.slice(0, 12)}... leaked`);
});

test("--json prints the summary; bad input is a usage error that writes nothing", async () => {
  const dir = await tempDir();
  const stateDir = join(dir, "state");
  const out = join(dir, "r.tar.gz");
  const json = await runCli(["bugreport", "--json", "-o", out, "--state-dir", stateDir]);
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(doc), ["path", "bytes", "contains", "leftOut"]);
  assert.equal(doc.path, out);
  assert.equal(doc.bytes, (await stat(out)).size);

  const before = await readFile(out);
  const again = await runCli(["bugreport", "-o", out, "--state-dir", stateDir]);
  assert.equal(again.code, 2);
  assert.equal(again.stderr, `Error: ${out} exists already; choose another file with -o, or remove it\nRun 'cara bugreport --help' for usage.\n`);
  assert.deepEqual(await readFile(out), before);

  for (const lines of ["0", "5001", "ten"]) {
    const bad = await runCli(["bugreport", "--lines", lines, "-o", join(dir, `n${lines}.tar.gz`), "--state-dir", stateDir]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, `Error: --lines must be from 1 to 5000 (got '${lines}')\nRun 'cara bugreport --help' for usage.\n`);
  }
  const missing = await runCli(["bugreport", "-o", join(dir, "nowhere", "r.tar.gz"), "--state-dir", stateDir]);
  assert.equal(missing.code, 2);
  assert.equal(
    missing.stderr,
    `Error: cannot write ${join(dir, "nowhere", "r.tar.gz")}: ${join(dir, "nowhere")} is not a directory\nRun 'cara bugreport --help' for usage.\n`,
  );
  assert.deepEqual(execFileSync("ls", [dir], { encoding: "utf8" }).trim().split("\n"), ["r.tar.gz"]);
});
