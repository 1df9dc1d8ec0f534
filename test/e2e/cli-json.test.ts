import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { until } from "../helpers/wait.js";

// One JSON shape for every command (numbers as numbers, lower-case enum names, no library
// internals) and counted nouns in the human text.

const cli = (s: CaraEndpoint, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir]);

/** Every value in `doc` that is a string of digits (an int64 left as a string), with its path. */
function numericStrings(doc: unknown, path = "$"): string[] {
  if (typeof doc === "string") return /^-?\d+$/.test(doc) ? [path] : [];
  if (Array.isArray(doc)) return doc.flatMap((v, i) => numericStrings(v, `${path}[${i}]`));
  if (doc && typeof doc === "object") return Object.entries(doc).flatMap(([k, v]) => numericStrings(v, `${path}.${k}`));
  return [];
}

test("--json: numbers as numbers, enums by their CLI names, no $typeName; task get and task watch print the same record", async () => {
  const s = await serveCara();
  const status = await cli(s, ["status", "--json"]);
  assert.equal(status.code, 0, status.stderr);
  assert.ok(!status.stdout.includes("$typeName"));
  const doc = JSON.parse(status.stdout);
  assert.deepEqual(numericStrings(doc), []);
  assert.equal(typeof doc.status.diagnostics.memoryRssBytes, "number");
  assert.equal(typeof doc.status.logs.lastSeq, "number");
  assert.equal(doc.status.secretSource, "generated");
  assert.equal(doc.status.overall, "degraded");

  const created = JSON.parse((await cli(s, ["task", "create", "--payload", '{"kind":"systemEvent","text":"hello"}', "--json"])).stdout);
  const id = created.task.id;
  await until("the task is done", async () => JSON.parse((await cli(s, ["task", "get", id, "--json"])).stdout).task.state === "done");
  const got = await cli(s, ["task", "get", id, "--json"]);
  const watched = await cli(s, ["task", "watch", id, "--json"]);
  assert.equal(watched.code, 0, watched.stderr);
  const lines = watched.stdout.trimEnd().split("\n");
  assert.deepEqual(JSON.parse(lines.at(-1)!), JSON.parse(got.stdout));
  assert.equal(JSON.parse(got.stdout).task.state, "done");
  assert.equal(typeof JSON.parse(got.stdout).task.createdAtMs, "number");

  const list = JSON.parse((await cli(s, ["task", "list", "--json"])).stdout);
  assert.deepEqual(list.tasks, [JSON.parse(got.stdout).task]);
  assert.equal(list.total, 1);

  const archive = join(await tempDir(), "b.tar.gz");
  const backup = await cli(s, ["backup", "-o", archive, "--json"]);
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(!backup.stdout.includes("$typeName"), backup.stdout);
  assert.deepEqual(JSON.parse(backup.stdout).excluded[0], {
    path: "auth/",
    reason: "secrets (token, server secret): never archived; back them up separately, a restore keeps the current ones",
  });
  for (const args of [
    ["backup", "inspect", archive, "--json"],
    ["backup", "list", "--json"],
    ["restore", archive, "--dry-run", "--json"],
    ["update", "--status", "--json"],
    ["logs", "--json"],
  ]) {
    const r = await cli(s, args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.ok(!r.stdout.includes("$typeName"), args.join(" "));
    // Hashes are hex text and a file mode is octal text ("600"), as people write them; no number is a string.
    const text = (p: string) => /\.(sha256|archiveSha256|mode)$/.test(p);
    for (const line of args[0] === "logs" ? r.stdout.trimEnd().split("\n") : [r.stdout])
      assert.deepEqual(
        numericStrings(JSON.parse(line)).filter((p) => !text(p)),
        [],
        args.join(" "),
      );
  }

  const missing = await cli(s, ["task", "get", "no-such-task", "--json"]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "");
  assert.deepEqual(JSON.parse(missing.stdout), { error: { code: "not_found", message: "Task not found", details: { reason: "TASK_NOT_FOUND" } } });
  await s.stop();
});

test("counted nouns and sizes in human text: 1 task, 1 file, log sizes in units", async () => {
  const s = await serveCara({ config: { logLevel: "info" } });
  const created = await cli(s, ["task", "create", "--payload", '{"kind":"systemEvent","text":"one"}', "--next-run-at-ms", String(Date.now() + 3_600_000)]);
  assert.equal(created.code, 0, created.stderr);
  // The status answer is shared for half a second: wait for one taken after the create.
  const checks = await until("status counts the task", async () => {
    const all = JSON.parse((await cli(s, ["status", "--json"])).stdout).status.checks as { name: string; message: string }[];
    return all.find((c) => c.name === "tasks")!.message.startsWith("0 ") ? undefined : all;
  });
  const message = (name: string) => checks.find((c) => c.name === name)!.message;
  assert.equal(message("tasks"), "1 task (1 queued, 0 running, 0 blocked); worker 0/4 busy");
  assert.match(message("logs"), new RegExp(`^${join(s.stateDir, "logs", "cara.log")} \\(\\d+(\\.\\d)? (B|KiB), rotates at 10\\.0 MiB, keeps 5 files\\)$`));

  const out = join(await tempDir(), "config-only.tar.gz");
  const backup = await cli(s, ["backup", "-o", out, "--sections", "config"]);
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(backup.stdout.includes("  Included: config (1 file)\n"), backup.stdout);
  const verify = await cli(s, ["backup", "verify", out]);
  assert.match(verify.stdout, /\n {2}Sections: config \(1 file, \d+ B\)\n {2}Files: {4}1 file, \d+ B uncompressed\n/);
  await s.stop();
});
