import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { createLogPipeline, type LineSink } from "../../src/ops/log-pipeline.js";
import type { LogEntry } from "../../src/ops/log-ring.js";
import { createLogger } from "../../src/ops/logger.js";
import { tempDir } from "../helpers/cara.js";
import { KNOWN_SECRETS, REDACTION_TABLE, SERVER_TOKEN } from "./redaction-table.js";

type Line = Record<string, unknown>;

function collector(): LineSink & { lines: string[]; records(): Line[] } {
  const lines: string[] = [];
  return { lines, write: (l: string) => void lines.push(l), records: () => lines.map((l) => JSON.parse(l) as Line) };
}

async function setup(options: { knownSecrets?: readonly string[]; ringCapacity?: number; maxLineLength?: number } = {}) {
  const dir = await tempDir();
  const stdout = collector();
  const path = join(dir, "logs", "cara.log");
  const pipeline = createLogPipeline({ ...options, stdout, file: { path } });
  const logger = createLogger("trace", pipeline.destination);
  const fileRecords = async () => {
    pipeline.flush();
    return (await readFile(path, "utf8"))
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
  };
  return { pipeline, logger, stdout, path, fileRecords };
}

test("the redaction table holds on stdout, in the file and in the ring (message and field)", async () => {
  const { pipeline, logger, stdout, fileRecords } = await setup({ knownSecrets: KNOWN_SECRETS });
  const log = logger.child({ component: "redaction" });
  for (const c of REDACTION_TABLE) log.info({ detail: c.input }, c.input);
  const fromFile = await fileRecords();
  const fromStdout = stdout.records();
  const fromRing = pipeline.ring.tail({ limit: 1000 }).entries;
  assert.equal(fromStdout.length, REDACTION_TABLE.length);
  assert.equal(fromFile.length, REDACTION_TABLE.length);
  assert.equal(fromRing.length, REDACTION_TABLE.length);
  REDACTION_TABLE.forEach((c, i) => {
    const expected = c.expected ?? c.input;
    assert.equal(fromStdout[i]?.msg, expected, `stdout msg: ${c.name}`);
    assert.equal(fromStdout[i]?.detail, expected, `stdout field: ${c.name}`);
    assert.equal(fromFile[i]?.msg, expected, `file msg: ${c.name}`);
    assert.equal(fromFile[i]?.detail, expected, `file field: ${c.name}`);
    assert.equal(fromRing[i]?.message, expected, `ring message: ${c.name}`);
    assert.equal(fromRing[i]?.fields.detail, expected, `ring field: ${c.name}`);
  });
  const everything = stdout.lines.join("") + JSON.stringify(fromFile) + JSON.stringify(fromRing);
  for (const secret of KNOWN_SECRETS) assert.equal(everything.includes(secret), false);
  pipeline.close();
});

test("secret field names are redacted on all outputs, token counts kept", async () => {
  const { pipeline, logger, stdout, fileRecords } = await setup();
  logger
    .child({ component: "llm" })
    .info({ max_tokens: 100, tokenCount: 3, token: "abc", headers: { authorization: "Bearer x", accept: "json" }, apiKey: "k-1" }, "call");
  const expected = { max_tokens: 100, tokenCount: 3, token: "[REDACTED]", headers: { authorization: "[REDACTED]", accept: "json" }, apiKey: "[REDACTED]" };
  const { level, time, pid, component, msg, ...stdoutFields } = stdout.records()[0] as Line;
  assert.deepEqual([level, typeof time, pid, component, msg], ["info", "string", process.pid, "llm", "call"]);
  assert.deepEqual(stdoutFields, expected);
  const { level: _l, time: _t, pid: _p, component: _c, msg: _m, ...fileFields } = (await fileRecords())[0] as Line;
  assert.deepEqual(fileFields, expected);
  assert.deepEqual(pipeline.ring.tail().entries[0]?.fields, expected);
  pipeline.close();
});

test("ring entries: seq from 1, time in ms, level label, component, message, other fields", async () => {
  const { pipeline, logger, stdout } = await setup();
  logger.child({ component: "tasks" }).warn({ taskId: "t-1", attempt: 2 }, "task retried");
  logger.info("no component");
  const [a, b] = pipeline.ring.tail().entries as [LogEntry, LogEntry];
  const iso = (stdout.records()[0] as Line).time as string;
  assert.deepEqual(a, { seq: 1, time: Date.parse(iso), level: "warn", component: "tasks", message: "task retried", fields: { taskId: "t-1", attempt: 2 } });
  assert.deepEqual([b.seq, b.level, b.component, b.message, b.fields], [2, "info", "", "no component", {}]);
  pipeline.close();
});

test("clean lines go to stdout byte for byte; known secrets can be set after start", async () => {
  const { pipeline, logger, stdout } = await setup();
  logger.info({ n: 1 }, `before ${SERVER_TOKEN}`);
  pipeline.setKnownSecrets(KNOWN_SECRETS);
  logger.info({ n: 2 }, `after ${SERVER_TOKEN}`);
  logger.info({ n: 3 }, "plain");
  const records = stdout.records();
  assert.equal(records[0]?.msg, `before ${SERVER_TOKEN}`, "not known yet");
  assert.equal(records[1]?.msg, "after [REDACTED]");
  assert.match(stdout.lines[2] ?? "", /^\{"level":"info","time":"[^"]+","pid":\d+,"n":3,"msg":"plain"\}\n$/);
  pipeline.close();
});

test("an over-long line is bounded after redaction", async () => {
  const { pipeline, logger, stdout } = await setup({ maxLineLength: 2048 });
  logger.info({ blob: `token=${"A1".repeat(3000)}`, small: "ok" }, "big");
  const line = stdout.lines[0] ?? "";
  assert.ok(line.length <= 2048 + 200, `line length ${line.length}`);
  const r = JSON.parse(line) as Line;
  assert.equal(r.blob, "token=[REDACTED]");
  assert.equal(r.small, "ok");
  logger.info({ blob: "b".repeat(5000) }, "m".repeat(5000));
  const r2 = JSON.parse(stdout.lines[1] ?? "") as Line;
  assert.equal(r2.blob, `${"b".repeat(512)}…[4488 more characters]`);
  assert.equal(pipeline.ring.tail().entries[1]?.fields.blob, r2.blob);
  pipeline.close();
});

test("followers receive new lines and end when the pipeline closes; later lines reach stdout only", async () => {
  const { pipeline, logger, stdout, path } = await setup();
  const sub = pipeline.ring.follow({ tail: 0, filter: { minLevel: "warn" } });
  logger.info("quiet");
  logger.error({ code: 7 }, "loud");
  const first = await sub.next();
  assert.equal((first.value as LogEntry).message, "loud");
  pipeline.close();
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
  logger.error("after close");
  assert.equal(stdout.records().at(-1)?.msg, "after close");
  assert.equal(pipeline.ring.stats().lastSeq, 2);
  assert.equal((await readFile(path, "utf8")).includes("after close"), false);
});

test("when the log file cannot be written, stdout and the ring keep going and say so", async () => {
  const dir = await tempDir();
  await writeFile(join(dir, "logs"), "a file where the directory should be");
  const stdout = collector();
  const pipeline = createLogPipeline({ stdout, file: { path: join(dir, "logs", "cara.log") } });
  const logger = createLogger("info", pipeline.destination);
  logger.info("still logged");
  await new Promise((r) => setImmediate(r));
  assert.equal(pipeline.file?.status().writable, false);
  const messages = pipeline.ring.tail().entries.map((e) => `${e.level} ${e.component} ${e.message}`);
  assert.deepEqual(messages, ["warn logs log file is not writable; logging continues on stdout and in memory", "info  still logged"]);
  assert.deepEqual(
    stdout.records().map((r) => r.msg),
    ["log file is not writable; logging continues on stdout and in memory", "still logged"],
  );
  pipeline.close();
});
