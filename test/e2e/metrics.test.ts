// GET /metrics after a known workload: exact values, a real parser (promtool), the access modes,
// and a series count that does not grow with the number of tasks.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";

const PROMTOOL = "/usr/bin/promtool";
const promtoolMissing = existsSync(PROMTOOL) ? false : "promtool not found (Debian package prometheus): the exposition is not checked by a real parser";
if (promtoolMissing) process.stdout.write(`NOTE: ${promtoolMissing}\n`);
const env = { CARAPACE_SERVER_SECRET: "metrics-test-secret-0123456789abcdefghij" };

async function scrape(
  s: CaraServer,
  headers: Record<string, string> = { authorization: `Bearer ${s.token}` },
): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(`${s.baseUrl}/metrics`, { headers });
  return { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() };
}

/** `name{labels} value` lines as a map (comments dropped). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function waitFor(s: CaraServer, done: (stats: Record<string, number>) => boolean): Promise<void> {
  for (;;) {
    const stats = (await connectJson(s, "carapace.tasks.v1.TasksService/GetQueueStats", {}, s.token)).json.stats.counts as Record<string, number>;
    if (done(stats)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("after a known workload every figure is exact, and the exposition parses", async () => {
  const s = await startCara({ env });
  // No token: 401 and nothing else.
  const anonymous = await scrape(s, {});
  assert.equal(anonymous.status, 401);
  assert.ok(!anonymous.text.includes("cara_"));
  assert.equal((await scrape(s, { authorization: "Bearer wrong" })).status, 401);

  for (let i = 0; i < 5; i++)
    assert.equal((await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: `t${i}` } } }, s.token)).status, 200);
  // Fails at once: an agentTurn may not name both a route and a model.
  assert.equal(
    (await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { agentTurn: { message: "hi", route: "r", model: "m" } } }, s.token)).status,
    200,
  );
  await waitFor(s, (c) => (c.done ?? 0) === 5 && (c.failed ?? 0) === 1);
  for (let i = 0; i < 3; i++) await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, `wrong-${i}`);
  await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {});
  const out = join(await tempDir(), "b.tar.gz");
  const backup = await runCara(["backup", "-o", out, "--json", "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(backup.code, 0, backup.stderr);
  const bytes = JSON.parse(backup.stdout).bytes as number;

  // Figures read from disk (last backup, update, checks) are refreshed every 5 s.
  let res = await scrape(s);
  for (let i = 0; i < 60 && samples(res.text).get("cara_backup_last_size_bytes") !== bytes; i++) {
    await new Promise((r) => setTimeout(r, 200));
    res = await scrape(s);
  }
  assert.equal(res.status, 200);
  assert.equal(res.type, "text/plain; version=0.0.4; charset=utf-8");
  const m = samples(res.text);
  const expect: Record<string, number> = {
    'cara_build_info{version="0.1.0"}': 1,
    'cara_tasks{state="done"}': 5,
    'cara_tasks{state="failed"}': 1,
    'cara_tasks{state="queued"}': 0,
    'cara_task_attempts_total{kind="systemEvent",outcome="done"}': 5,
    'cara_task_attempts_total{kind="agentTurn",outcome="failed"}': 1,
    'cara_task_attempt_duration_seconds_count{kind="systemEvent"}': 5,
    'cara_rpc_requests_total{service="carapace.tasks.v1.TasksService",method="CreateTask",protocol="connect",code="ok"}': 6,
    'cara_auth_failures_total{reason="mismatch"}': 3,
    'cara_auth_failures_total{reason="missing"}': 1,
    cara_auth_rate_limited_total: 0,
    'cara_backup_operations_total{operation="backup"}': 1,
    cara_backup_last_size_bytes: bytes,
    'cara_update_transaction_state{state="none"}': 1,
    'cara_health_check_status{check="tasks",status="ok"}': 1,
    'cara_health_check_status{check="server_secret",status="ok"}': 1,
    cara_task_oldest_queued_age_seconds: 0,
    cara_log_follow_streams: 0,
  };
  for (const [series, value] of Object.entries(expect)) assert.equal(m.get(series), value, series);
  const lastBackup = m.get("cara_backup_last_success_timestamp_seconds")!;
  assert.ok(Math.abs(lastBackup - Date.now() / 1000) < 60, `last backup at ${lastBackup}`);
  // The journal fsyncs are timed: every batch once.
  assert.ok(m.get("cara_task_journal_fsync_duration_seconds_count")! >= 1);
  assert.ok(m.get("cara_process_resident_memory_bytes")! > 10 * 1024 * 1024);
  assert.ok(m.has("cara_nodejs_eventloop_lag_p99_seconds"));
  assert.ok(m.has("cara_process_open_fds"));
  assert.ok(m.has('cara_nodejs_gc_duration_seconds_count{kind="minor"}') || [...m.keys()].some((k) => k.startsWith("cara_nodejs_gc_duration_seconds")));
  // Status reads the same numbers (one source).
  const status = (await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).json;
  assert.equal(status.tasks.countsByState.done, m.get('cara_tasks{state="done"}'));
  assert.equal(status.tasks.countsByState.failed, m.get('cara_tasks{state="failed"}'));
  for (const check of status.checks)
    assert.equal(m.get(`cara_health_check_status{check="${check.name}",status="${check.status.replace("CHECK_STATUS_", "").toLowerCase()}"}`), 1, check.name);

  // OpenMetrics when asked for.
  const om = await scrape(s, { authorization: `Bearer ${s.token}`, accept: "application/openmetrics-text; version=1.0.0" });
  assert.equal(om.type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
  assert.ok(om.text.endsWith("# EOF\n"));

  // Every metric the shipped alert rules and dashboard use is exposed.
  const { readFile } = await import("node:fs/promises");
  const monitoring = join(new URL("../../", import.meta.url).pathname, "monitoring");
  const used = new Set<string>();
  for (const f of ["cara-alerts.yml", "grafana-dashboard.json"])
    for (const name of (await readFile(join(monitoring, f), "utf8")).match(/cara_[a-z0-9_]+/g) ?? []) used.add(name);
  const exposed = new Set([...m.keys()].map((k) => k.replace(/\{.*$/, "")));
  for (const name of used) assert.ok(exposed.has(name), `${name} (used by the rules or the dashboard) is not exposed`);

  if (!promtoolMissing) {
    const checked = spawnSync(PROMTOOL, ["check", "metrics"], { input: res.text, encoding: "utf8" });
    assert.equal(checked.status, 0, `promtool check metrics: ${checked.stdout}${checked.stderr}`);
  }
  await s.stop();
});

test("server.metrics: open needs no token, off serves nothing", async () => {
  for (const [mode, expected] of [
    ["open", 200],
    ["off", 404],
  ] as const) {
    const stateDir = join(await tempDir(), "state");
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(join(stateDir, "config.json"), JSON.stringify({ server: { metrics: mode } }));
    const s = await startCara({ stateDir });
    const res = await scrape(s, {});
    assert.equal(res.status, expected, mode);
    if (mode === "off")
      assert.deepEqual(JSON.parse(res.text), {
        error: "no route for GET /metrics",
        see: "GET /health, GET /health/ready, or POST /<package>.<Service>/<Method>",
      });
    await s.stop();
  }
});

test("the series count stays the same while 1,000 tasks run (no task id or text in a label)", async () => {
  const s = await startCara();
  const create = (text: string) => connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text } } }, s.token);
  // Warm up: every label combination this workload uses exists once.
  await create("warm-up");
  await waitFor(s, (c) => c.done === 1);
  await connectJson(s, "carapace.tasks.v1.TasksService/GetQueueStats", {}, s.token);
  const count = (text: string) => [...samples(text).keys()].filter((k) => !k.startsWith("cara_nodejs_") && !k.startsWith("cara_process_")).length;
  const beforeText = (await scrape(s)).text;
  const before = count(beforeText);
  for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 100 }, (_, j) => create(`task ${i}-${j} with its own text`)));
  await waitFor(s, (c) => c.done === 1001);
  const after = (await scrape(s)).text;
  const names = (text: string) => [...samples(text).keys()].filter((k) => !k.startsWith("cara_nodejs_") && !k.startsWith("cara_process_"));
  const added = names(after).filter((k) => !names(beforeText).includes(k));
  assert.deepEqual(added, [], "no new series");
  assert.equal(count(after), before);
  assert.ok(!/task \d+-\d+/.test(after), "no payload text in a label");
  await s.stop();
});

test("the shipped alert rules are valid and fire as documented (promtool)", { skip: promtoolMissing }, () => {
  const dir = join(new URL("../../", import.meta.url).pathname, "monitoring");
  execFileSync(PROMTOOL, ["check", "rules", join(dir, "cara-alerts.yml")], { stdio: "pipe" });
  const tested = spawnSync(PROMTOOL, ["test", "rules", join(dir, "cara-alerts.test.yml")], { encoding: "utf8", cwd: dir });
  assert.equal(tested.status, 0, tested.stdout + tested.stderr);
});

test("the example scrape config is valid (promtool check config)", { skip: promtoolMissing }, async () => {
  const { copyFile, readFile } = await import("node:fs/promises");
  const dir = join(new URL("../../", import.meta.url).pathname, "monitoring");
  const tmp = await tempDir();
  await writeFile(join(tmp, "token"), "a-token\n");
  await copyFile(join(dir, "cara-alerts.yml"), join(tmp, "cara-alerts.yml"));
  await writeFile(
    join(tmp, "prometheus.yml"),
    (await readFile(join(dir, "prometheus.yml"), "utf8")).replace("/var/lib/carapace/auth/token", join(tmp, "token")),
  );
  const checked = spawnSync(PROMTOOL, ["check", "config", join(tmp, "prometheus.yml")], { encoding: "utf8" });
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);
});
