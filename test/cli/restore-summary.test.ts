import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli, type CliOptions } from "../helpers/cli.js";
import { SECRET } from "../backup/fixtures.js";

// The restore summary speaks of tasks (by id, per state) and config keys (never values), the
// restore keeps copies of corrupt files, and on a terminal it asks before changing anything.

const env = { CARAPACE_SERVER_SECRET: SECRET };
/** The upload's progress on a terminal: redrawn in place, then one summary line. */
const UPLOAD = "(?:\\r\\x1b\\[2KUploading \\d+ B / \\d+ B \\(\\d+%\\) [\\d.]+ (?:B|KiB|MiB|GiB)/s)+\\r\\x1b\\[2KUploaded \\d+ B in \\d+\\.\\d s\\n";
const cli = (s: CaraEndpoint, args: string[], options: CliOptions = {}) =>
  runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir], { env, ...options });

async function createTask(s: CaraEndpoint, text: string): Promise<string> {
  const res = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text } }, nextRunAtMs: String(Date.now() + 3_600_000) },
    s.token,
  );
  return res.json.task.id as string;
}
const listTasks = async (s: CaraEndpoint) =>
  ((await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000 }, s.token)).json.tasks ?? [])
    .map((t: { id: string; state: string }) => `${t.id} ${t.state}`)
    .sort();

/**
 * A server whose backup holds tasks a, b (queued) and config {logLevel: info, agent.model}; since
 * then b was cancelled, c was created and the config changed.
 */
async function drifted() {
  const s = await serveCara({ env, config: { logLevel: "info", agent: { model: "m1" } } });
  const a = await createTask(s, "a");
  const b = await createTask(s, "b");
  const archive = join(await tempDir(), "b.tar.gz");
  assert.equal((await cli(s, ["backup", "-o", archive])).code, 0);
  await connectJson(s, "carapace.tasks.v1.TasksService/CancelTask", { id: b }, s.token);
  const c = await createTask(s, "c");
  await writeFile(
    join(s.stateDir, "config.json"),
    JSON.stringify({ logLevel: "debug", agent: { model: "m1", baseUrl: "http://secret-host.example" }, tasks: { concurrency: 2 } }),
  );
  return { s, archive, a, b, c };
}

test("the dry run reports tasks by id and per state and config keys by path, never values", async () => {
  const { s, archive, b, c } = await drifted();
  const before = await listTasks(s);
  const dry = await cli(s, ["restore", archive, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(
    dry.stdout,
    "Dry run: nothing was changed. The restore would do this:\n" +
      "  config: 0 keys added, 2 removed, 1 reverted to the backup's values (values not shown)\n" +
      "    - agent.baseUrl\n" +
      "    - tasks.concurrency\n" +
      "    ~ logLevel\n" +
      "  tasks: 0 added, 1 removed, 1 changed, 1 unchanged\n" +
      `    - ${c}\n` +
      `    ~ ${b}\n` +
      "    by state: queued 2 → 2, cancelled 1 → 0\n",
  );
  const json = await cli(s, ["restore", archive, "--dry-run", "--json"]);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual(doc.tasks, {
    added: [],
    removed: [c],
    changed: [b],
    addedCount: 0,
    removedCount: 1,
    changedCount: 1,
    unchangedCount: 1,
    states: [
      { state: "queued", before: 2, after: 2 },
      { state: "cancelled", before: 1, after: 0 },
    ],
    currentUnreadable: false,
  });
  assert.deepEqual(doc.config, {
    added: [],
    removed: ["agent.baseUrl", "tasks.concurrency"],
    changed: ["logLevel"],
    addedCount: 0,
    removedCount: 2,
    changedCount: 1,
  });
  assert.doesNotMatch(json.stdout + dry.stdout, /secret-host|debug/);
  assert.deepEqual(await listTasks(s), before, "the dry run changed nothing");
  await s.stop();
});

test("offline restore keeps the .corrupt copy the store promised and names the config keys it reverts", async () => {
  const { s, archive, a, b } = await drifted();
  await s.stop();
  await writeFile(join(s.stateDir, "tasks", "queue.json"), "[{ corrupt");
  // The refused start keeps a copy of the corrupt file, as its error says.
  await assert.rejects(serveCara({ env, stateDir: s.stateDir }), /A copy was kept at .*queue\.json\.corrupt\.\d+\./);
  const [copy] = (await readdir(join(s.stateDir, "tasks"))).filter((n) => n.includes(".corrupt."));
  assert.ok(copy);
  const res = await runCli(["restore", archive, "--offline", "--force", "--state-dir", s.stateDir], { env });
  assert.equal(res.code, 0, res.stderr);
  assert.match(
    res.stdout,
    new RegExp(
      "^Restore completed successfully\\n" +
        "  config: 0 keys added, 2 removed, 1 reverted \\(values not shown\\)\\n" +
        "    - agent\\.baseUrl\\n    - tasks\\.concurrency\\n    ~ logLevel\\n" +
        "  tasks: 2 added, 0 removed, 0 changed, 0 unchanged\\n" +
        "    \\(the current queue could not be read: every task of the backup counts as added\\)\\n" +
        `    \\+ ${[a, b].sort().join("\\n    \\+ ")}\\n` +
        "    by state: queued 0 → 2\\n" +
        `    kept tasks/${copy.replaceAll(".", "\\.")} \\(a copy of a corrupt file\\)\\n` +
        "  Restored: config, tasks\\n",
    ),
  );
  assert.equal(await readFile(join(s.stateDir, "tasks", copy), "utf8"), "[{ corrupt", "the copy is still there");
  const again = await serveCara({ env, stateDir: s.stateDir });
  assert.deepEqual(await listTasks(again), [`${a} TASK_STATE_QUEUED`, `${b} TASK_STATE_QUEUED`].sort());
  await again.stop();
});

test("on a terminal restore shows the dry run and asks; --yes skips the question; without a terminal it needs --force", async () => {
  const { s, archive, b, c } = await drifted();
  const before = await listTasks(s);
  const no = await cli(s, ["restore", "--path", archive], { ttyInput: true, stdin: "n\n" });
  assert.equal(no.code, 1);
  assert.equal(no.stdout, "");
  assert.match(no.stderr, new RegExp(`^${UPLOAD}Dry run: nothing was changed\\. The restore would do this:\\n {2}config: 0 keys added, 2 removed, 1 reverted`));
  assert.ok(
    no.stderr.endsWith(
      `    by state: queued 2 → 2, cancelled 1 → 0\nRestore ${archive} into the running server's state? [y/N] Not restoring: nothing was changed.\n`,
    ),
    no.stderr,
  );
  const ended = await cli(s, ["restore", archive], { ttyInput: true });
  assert.equal(ended.code, 1, "input that ends answers no");
  assert.deepEqual(await listTasks(s), before);

  const piped = await cli(s, ["restore", "--path", archive]);
  assert.equal(piped.code, 1);
  assert.match(
    piped.stderr,
    /restore would overwrite or remove \d+ existing files? in config, tasks; review with --dry-run, then pass --force \(a pre-restore backup is taken first\)\. There is no terminal to ask for confirmation, so pass --force \(or --yes\) to restore\.\n$/,
  );
  assert.deepEqual(await listTasks(s), before);
  const json = await cli(s, ["restore", archive, "--json"], { ttyInput: true });
  assert.equal(json.code, 1);
  assert.match(json.stdout, /With --json nothing is asked, so pass --force \(or --yes\) to restore\."/);
  assert.deepEqual(await listTasks(s), before);

  const yes = await cli(s, ["restore", "--path", archive], { ttyInput: true, stdin: "y\n" });
  assert.equal(yes.code, 0, yes.stderr);
  assert.match(yes.stdout, /^Restore completed successfully\n/);
  assert.match(yes.stderr, new RegExp(`\\? \\[y/N\\] ${UPLOAD}$`), "the restore's upload ends with its summary line");
  assert.ok(!(await listTasks(s)).some((t: string) => t.startsWith(c)), "c is gone");
  assert.ok((await listTasks(s)).includes(`${b} TASK_STATE_QUEUED`));

  // --yes on a terminal: no question.
  const quiet = await cli(s, ["restore", archive, "--yes"], { ttyInput: true });
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.match(quiet.stderr, new RegExp(`^${UPLOAD}$`), "no question, only the upload's progress");
  assert.match(quiet.stdout, /^Restore completed successfully\n/);
  await s.stop();
});
