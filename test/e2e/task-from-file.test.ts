import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { serveCara, tempDir, type CaraEndpoint } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

/** `cara args` against `s`, in this process, in `cwd`. */
const cli = (s: CaraEndpoint, args: string[], options: { cwd?: string; stdin?: string } = {}) =>
  runCli([...args, "--port", String(s.port), "--state-dir", s.stateDir], options);

/** The total number of tasks the server holds. */
async function total(s: CaraEndpoint): Promise<number> {
  const r = await cli(s, ["task", "list", "--json", "--limit", "1"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).total as number;
}

const line = (o: unknown) => `${JSON.stringify(o)}\n`;

test("cara task create --from-file: every line created, in calls of up to 1,000; --json lists the ids; keys already used are counted as existing", async () => {
  const s = await serveCara();
  try {
    const dir = await tempDir();
    const text =
      line({ payload: { kind: "systemEvent", text: "one" }, priority: 5, labels: { team: "ops" }, idempotencyKey: "k1" }) +
      "\n" +
      line({ payload: { kind: "backup", keep: 3 }, policy: { maxAttempts: 2 }, nextRunAtMs: Date.now() + 3_600_000, idempotencyKey: "k2" });
    await writeFile(join(dir, "tasks.jsonl"), text);
    const first = await cli(s, ["task", "create", "--from-file", "tasks.jsonl"], { cwd: dir });
    assert.deepEqual(first, { code: 0, stdout: "Created 2 tasks.\n", stderr: "" });
    const again = await cli(s, ["task", "create", "--from-file", "tasks.jsonl"], { cwd: dir });
    assert.deepEqual(again, { code: 0, stdout: "Created 0 tasks; 2 existed already with the same idempotency key.\n", stderr: "" });

    const list = JSON.parse((await cli(s, ["task", "list", "--json", "--label", "team=ops"])).stdout);
    assert.deepEqual(
      list.tasks.map((t: { payload: unknown; priority: number; labels: unknown }) => [t.payload, t.priority, t.labels]),
      [[{ kind: "systemEvent", text: "one" }, 5, { team: "ops" }]],
    );

    const many = Array.from({ length: 1201 }, (_, i) => line({ payload: { kind: "systemEvent", text: `n${i}` } })).join("");
    const bulk = await cli(s, ["task", "create", "--from-file", "-", "--json"], { stdin: many });
    assert.equal(bulk.code, 0, bulk.stderr);
    assert.equal(bulk.stderr, "");
    const doc = JSON.parse(bulk.stdout);
    assert.deepEqual([Object.keys(doc), doc.created, doc.existing, new Set(doc.ids).size], [["created", "existing", "ids"], 1201, 0, 1201]);
    assert.equal(await total(s), 1203);
  } finally {
    await s.stop();
  }
});

test("cara task create --from-file: a bad line is refused before anything is sent, naming the line and the problem", async () => {
  const s = await serveCara();
  try {
    const ok = line({ payload: { kind: "systemEvent", text: "fine" } });
    const cases: [string, string][] = [
      [
        ok + ok + line({ payload: { kind: "systemEvent", text: "x" }, colour: "red" }),
        "stdin line 3: unknown field 'colour' (known: payload, policy, priority, labels, idempotencyKey, nextRunAtMs)",
      ],
      [ok + line({ priority: 1 }), 'stdin line 2: missing "payload"'],
      [line([1, 2]), 'stdin line 1: expected a JSON object like {"payload":{"kind":"systemEvent","text":"hi"}}'],
      [
        ok + line({ payload: { kind: "teleport" } }),
        "stdin line 2: invalid payload: unknown payload kind 'teleport' (known: systemEvent, agentTurn, backup, updateCheck)",
      ],
      [ok + line({ payload: { kind: "systemEvent", text: "x" }, priority: 1.5 }), "stdin line 2: priority must be an integer from -2147483648 to 2147483647"],
      [ok + line({ payload: { kind: "systemEvent", text: "x" }, labels: { a: 1 } }), 'stdin line 2: labels must be an object of strings, like {"team":"ops"}'],
      [ok + line({ payload: { kind: "systemEvent", text: "x" }, idempotencyKey: 7 }), "stdin line 2: idempotencyKey must be a string"],
      [ok + line({ payload: { kind: "systemEvent", text: "x" }, nextRunAtMs: -1 }), "stdin line 2: nextRunAtMs must be a whole number of ms from 0"],
      ["\n\n", "stdin has no tasks (one JSON object per line)"],
    ];
    for (const [stdin, message] of cases) {
      const r = await cli(s, ["task", "create", "--from-file", "-"], { stdin });
      assert.deepEqual(r, { code: 2, stdout: "", stderr: `Error: ${message}\nRun 'cara task create --help' for usage.\n` });
    }
    const badJson = await cli(s, ["task", "create", "--from-file", "-", "--json"], { stdin: `${ok}{nope\n` });
    assert.equal(badJson.code, 2);
    assert.match(JSON.parse(badJson.stdout).error.message, /^stdin line 2: invalid JSON: /);
    const badPolicy = await cli(s, ["task", "create", "--from-file", "-"], {
      stdin: line({ payload: { kind: "systemEvent", text: "x" }, policy: { maxAttempts: "many" } }),
    });
    assert.equal(badPolicy.code, 2);
    assert.match(badPolicy.stderr, /^Error: stdin line 1: invalid policy: /);
    assert.equal(await total(s), 0);

    const both = await cli(s, ["task", "create", "--from-file", "-", "--payload", "{}", "--priority", "3"], { stdin: ok });
    assert.deepEqual(both, {
      code: 2,
      stdout: "",
      stderr: "Error: --from-file takes each task's fields from the file: leave out --payload, --priority\nRun 'cara task create --help' for usage.\n",
    });
    const dir = await tempDir();
    const missing = await cli(s, ["task", "create", "--from-file", "nope.jsonl"], { cwd: dir });
    assert.deepEqual(missing, {
      code: 1,
      stdout: "",
      stderr: `Error: cannot read nope.jsonl: ENOENT: no such file or directory, open '${join(dir, "nope.jsonl")}'\n`,
    });
    const neither = await cli(s, ["task", "create"]);
    assert.deepEqual(neither, { code: 2, stdout: "", stderr: "Error: missing required option --payload <json>\nRun 'cara task create --help' for usage.\n" });
    assert.equal(await total(s), 0);
  } finally {
    await s.stop();
  }
});
