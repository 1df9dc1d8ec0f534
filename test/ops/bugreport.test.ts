import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { writeBugreport } from "../../src/ops/bugreport.js";
import { runDoctor } from "../../src/ops/doctor.js";
import { statePaths } from "../../src/state/paths.js";
import { prepareStateDir } from "../../src/state/state-dir.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { tempDir } from "../helpers/cara.js";

const TOKEN = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZyyXXww";
const SECRET = "server-secret-that-must-never-leak-0123456789";
const API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD = "hunter2-correct-horse";
const PAYLOAD_TEXT = "the-private-payload-text-4711";

async function planted(): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = join(await tempDir(), "state");
  await prepareStateDir(dir);
  await writeFile(join(dir, "auth", "token"), `${TOKEN}\n`, { mode: 0o600 });
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ agent: { baseUrl: `https://ops:${PASSWORD}@llm.example/v1`, model: "m" }, note: { apiKey: API_KEY } }),
  );
  await writeFile(
    join(dir, "logs", "cara.log"),
    `${JSON.stringify({ level: "warn", time: "2026-12-05T10:00:00.000Z", component: "tasks", msg: `calling with ${TOKEN}`, header: `Bearer ${TOKEN}`, secret: SECRET })}\n`,
  );
  const store = await FileTaskStore.open({ dir: join(dir, "tasks") });
  await store.create({ payload: { kind: "systemEvent", text: `${PAYLOAD_TEXT} api_key=${API_KEY} ${SECRET}` } } as Parameters<typeof store.create>[0]);
  await store.close();
  return { dir, env: { CARAPACE_SERVER_SECRET: SECRET, CARAPACE_AGENT_API_KEY: API_KEY } };
}

async function unpack(file: string): Promise<string> {
  const out = await tempDir();
  execFileSync("tar", ["-xzf", file, "-C", out]);
  return execFileSync("sh", ["-c", `cat ${out}/*/*`], { encoding: "utf8" });
}

test("a bug report holds what an issue needs, 0600, with no token, secret, API key, password or payload inside", async () => {
  const { dir, env } = await planted();
  const paths = statePaths(dir);
  const doctor = await runDoctor({ paths, env, probes: { health: async () => ({ error: "down" }) } });
  const output = join(await tempDir(), "report.tar.gz");
  const res = await writeBugreport({ paths, env, output, doctor, version: "0.1.0" });
  assert.equal((await stat(output)).mode & 0o777, 0o600);
  assert.deepEqual(
    res.contains.map((c) => c.name),
    ["doctor.json", "logs.jsonl", "config.json", "versions.json", "update.json", "queue.json", "README.txt"],
  );
  assert.ok(res.leftOut.includes("task payloads (pass --include-payloads to include them, redacted)"));
  assert.ok(res.leftOut.includes("status.json: no server answered"));
  const all = await unpack(output);
  for (const secret of [TOKEN, SECRET, API_KEY, PASSWORD, PAYLOAD_TEXT]) assert.ok(!all.includes(secret), `${secret.slice(0, 12)}... leaked`);
  assert.match(all, /"total": 1/);
  assert.match(all, /calling with \[REDACTED\]/);
  assert.match(all, /Contains:\n {2}doctor\.json: the doctor report/);
});

test("--include-payloads adds the tasks, still redacted", async () => {
  const { dir, env } = await planted();
  const paths = statePaths(dir);
  const doctor = await runDoctor({ paths, env, probes: { health: async () => ({ error: "down" }) } });
  const output = join(await tempDir(), "report.tar.gz");
  const res = await writeBugreport({ paths, env, output, doctor, version: "0.1.0", includePayloads: true });
  assert.ok(res.contains.some((c) => c.name === "tasks.json"));
  const all = await unpack(output);
  assert.ok(all.includes(PAYLOAD_TEXT), "the payload is there on request");
  for (const secret of [API_KEY, SECRET, TOKEN]) assert.ok(!all.includes(secret), `${secret.slice(0, 12)}... leaked`);
});

test("the task database's password (config tasks.postgres.url or CARAPACE_DATABASE_URL) is in no file of the report, wherever it shows up", async () => {
  const { dir, env } = await planted();
  const configured = "db-pw-from-config-31337";
  const fromEnv = "db pw/from env 42";
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ tasks: { store: "postgres", postgres: { url: `postgres://cara:${configured}@db.example/cara` } } }),
  );
  await writeFile(
    join(dir, "logs", "cara.log"),
    `${JSON.stringify({ level: "warn", time: "2026-12-05T10:00:00.000Z", component: "tasks", msg: `odd text ${configured} and ${fromEnv}` })}\n`,
  );
  const paths = statePaths(dir);
  const withDb = { ...env, CARAPACE_DATABASE_URL: `postgres://cara:${encodeURIComponent(fromEnv)}@db.example/cara` };
  const doctor = await runDoctor({ paths, env: withDb, probes: { health: async () => ({ error: "down" }) } });
  const output = join(await tempDir(), "report.tar.gz");
  await writeBugreport({ paths, env: withDb, output, doctor, version: "0.1.0" });
  const all = await unpack(output);
  for (const secret of [configured, fromEnv, encodeURIComponent(fromEnv)]) assert.ok(!all.includes(secret), `${secret} leaked`);
  assert.match(all, /odd text \[REDACTED\] and \[REDACTED\]/);
});
