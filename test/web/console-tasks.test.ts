// Browser: the Tasks page (create with inline validation, watch to done, cancel, retry, edit policy).
import assert from "node:assert/strict";
import { test } from "node:test";
import { connectJson, serveCara } from "../helpers/cara.js";
import { assertCleanPage, browserTest, goTo, openConsole, PHONE, screenshot, signIn } from "./browser.js";

test("tasks: create a task from the editor (errors inline, the server's too) and watch it reach done; the list and counts follow", browserTest, async () => {
  const s = await serveCara();
  const c = await openConsole(s);
  const { page } = c;
  await signIn(page, s.token);
  await goTo(page, "Tasks");
  await page.getByText("No tasks yet.").waitFor();
  await page.getByRole("link", { name: "New task" }).click();
  await page.getByRole("heading", { name: "New task" }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/console/tasks/new");

  // Inline validation while typing: bad JSON, unknown kind, a required field, a policy bound.
  const editor = page.getByLabel(/^Payload/);
  const error = page.locator("#payload-error");
  await editor.fill('{"kind":"systemEvent","text":');
  await error.filter({ hasText: /^Not valid JSON: / }).waitFor();
  assert.equal(await editor.getAttribute("aria-invalid"), "true");
  await editor.fill('{"kind":"sendMail"}');
  await error.filter({ hasText: 'Unknown payload kind "sendMail": use one of systemEvent, agentTurn, backup, updateCheck.' }).waitFor();
  await editor.fill('{"kind":"systemEvent","text":"  "}');
  await error.filter({ hasText: "Invalid task payload: text is required" }).waitFor();
  await page.getByLabel(/^Max attempts/).fill("20000");
  await page.getByText("invalid policy.maxAttempts: must be between 1 and 10000").waitFor();
  await screenshot(page, "tasks-create-errors-desktop");
  // Nothing was sent while the form was invalid.
  await page.getByRole("button", { name: "Create task" }).click();
  assert.equal((await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", {}, s.token)).json.total ?? 0, 0);

  // A refusal only the server makes (the 128 KiB payload limit) shows under the editor too.
  await page.getByLabel(/^Max attempts/).fill("3");
  await editor.fill(JSON.stringify({ kind: "systemEvent", text: "x".repeat(140_000) }));
  await page.getByRole("button", { name: "Create task" }).click();
  await error.filter({ hasText: "Invalid task payload: larger than 131072 bytes" }).waitFor();
  assert.equal((await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", {}, s.token)).json.total ?? 0, 0);

  await editor.fill('{"kind":"systemEvent","text":"made in the console"}');
  await error.filter({ hasText: /^$/ }).waitFor();
  await page.getByRole("button", { name: "Create task" }).click();
  // The details open on the new task and follow it live to done.
  await page.waitForURL(/\/console\/tasks\/[0-9a-f-]{36}$/);
  const id = new URL(page.url()).pathname.split("/").pop()!;
  await page.locator("[data-testid=task-state]", { hasText: "done" }).waitFor();
  const stored = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token)).json.task;
  assert.equal(stored.state, "TASK_STATE_DONE");
  assert.equal(stored.policy.maxAttempts, 3);
  assert.deepEqual(stored.payload, { systemEvent: { text: "made in the console" } });
  const details = page.locator("#task-details");
  await details.getByText('"text": "made in the console"').waitFor();
  await details.getByText("3 attempts, 7d 0h in total, 25 turns, 10m 0s per run").waitFor();
  await page.locator(`[data-task="${id}"]`, { hasText: "done" }).waitFor();
  await page.locator('[data-state="done"] .num', { hasText: "1" }).waitFor();
  assert.ok(await details.getByRole("button", { name: "Cancel" }).isDisabled());
  await screenshot(page, "tasks-done-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "tasks-done-375");
  assertCleanPage(c, s.baseUrl, [/status of 400 \(Bad Request\)/]);
  await c.context.close();
  await s.stop();
});

test("tasks: cancel a queued task, filter by state, edit its policy (bounds checked inline), retry it to done", browserTest, async () => {
  const s = await serveCara();
  // Due in an hour: it stays queued.
  const queued = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text: "later" } }, nextRunAtMs: String(Date.now() + 3_600_000) },
    s.token,
  );
  const id = queued.json.task.id as string;
  const c = await openConsole(s, { path: `/console/tasks/${id}` });
  const { page } = c;
  await signIn(page, s.token);
  const details = page.locator("#task-details");
  await page.locator("[data-testid=task-state]", { hasText: "queued" }).waitFor();
  await page.locator('[data-state="queued"] .num', { hasText: "1" }).waitFor();
  await screenshot(page, "tasks-queued-desktop");

  await details.getByLabel(/^Reason/).fill("not needed today");
  await details.getByRole("button", { name: "Cancel" }).click();
  await page.locator("[data-testid=task-state]", { hasText: "cancelled" }).waitFor();
  await details.getByText("not needed today").waitFor();
  let task = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token)).json.task;
  assert.equal(task.state, "TASK_STATE_CANCELLED");
  assert.equal(task.lastError, "not needed today");
  await page.locator('[data-state="cancelled"] .num', { hasText: "1" }).waitFor();
  // The state filter shows it under cancelled, not under queued.
  await page.locator('[data-state="cancelled"]').click();
  await page.locator(`[data-task="${id}"]`).waitFor();
  await page.locator('[data-state="cancelled"]').click();
  await page.locator('[data-state="queued"]').click();
  await page.locator(`[data-task="${id}"]`).waitFor({ state: "detached" });
  await page.getByText("No tasks in these states.").waitFor();
  await page.locator('[data-state="queued"]').click();

  // Edit policy: a value past the bound is refused inline; a good one is stored.
  await details.getByRole("button", { name: "Edit policy…" }).click();
  await details.getByLabel(/^Max turns/).fill("5000");
  await details.getByText("invalid policy.maxTurns: must be between 1 and 1000").waitFor();
  assert.ok(await details.getByRole("button", { name: "Save policy" }).isDisabled());
  await details.getByLabel(/^Max turns/).fill("7");
  await details.getByRole("button", { name: "Save policy" }).click();
  await details.getByText(/ 7 turns, /).waitFor();
  task = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token)).json.task;
  assert.equal(task.policy.maxTurns, 7);

  // Retry brings it back (and it runs to done, watched live again).
  await details.getByRole("button", { name: "Retry" }).click();
  await page.locator("[data-testid=task-state]", { hasText: "done" }).waitFor();
  await screenshot(page, "tasks-retried-desktop");

  // Done is final: the actions that do not apply are disabled.
  const done = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token)).json.task;
  assert.equal(done.state, "TASK_STATE_DONE");
  for (const name of ["Cancel", "Retry", "Resume", "Edit policy…"]) assert.ok(await details.getByRole("button", { name }).isDisabled(), name);
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("tasks: a blocked task (no LLM provider) shows why; raise its attempts and resume it", browserTest, async () => {
  const s = await serveCara();
  const created = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { agentTurn: { message: "summarize" } }, policy: { maxAttempts: 1 } },
    s.token,
  );
  const id = created.json.task.id as string;
  const c = await openConsole(s, { path: `/console/tasks/${id}` });
  const { page } = c;
  await signIn(page, s.token);
  const details = page.locator("#task-details");
  await page.locator("[data-testid=task-state]", { hasText: "blocked" }).waitFor();
  await details.getByText("no LLM provider configured").first().waitFor();
  assert.ok(await details.getByRole("button", { name: "Cancel" }).isEnabled());
  await details.getByRole("button", { name: "Edit policy…" }).click();
  await details.getByLabel(/^Max attempts/).fill("5");
  await details.getByRole("button", { name: "Save policy" }).click();
  await details.getByText("1 of 5").waitFor();
  await details.getByRole("button", { name: "Resume" }).click();
  // Resumed: the worker runs it again (and, still without a provider, it is blocked again).
  await details.getByText("2 of 5").waitFor();
  await page.locator("[data-testid=task-state]", { hasText: "blocked" }).waitFor();
  const task = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id }, s.token)).json.task;
  assert.deepEqual([task.attempts, task.state, task.blockedReason], [2, "TASK_STATE_BLOCKED", "BLOCKED_REASON_CONFIG_MISSING"]);
  await screenshot(page, "tasks-resumed-desktop");
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("tasks: the schedules list (rule, zone, state, next due, last run); pause, resume, and run now opens the task it created", browserTest, async () => {
  const s = await serveCara();
  const call = (method: string, body: unknown) => connectJson(s, `carapace.tasks.v1.SchedulesService/${method}`, body, s.token);
  const nightly = await call("CreateSchedule", { name: "nightly-backup", cron: "0 3 * * *", template: { payload: { backup: { keep: 7 } } } });
  assert.equal(nightly.status, 200, JSON.stringify(nightly.json));
  const tick = await call("CreateSchedule", {
    name: "tick",
    intervalMs: "900000",
    timezone: "Europe/Berlin",
    template: { payload: { systemEvent: { text: "tick" } } },
    paused: true,
  });
  assert.equal(tick.status, 200, JSON.stringify(tick.json));
  const c = await openConsole(s, { path: "/console/tasks" });
  const { page } = c;
  await signIn(page, s.token);
  const panel = page.locator("#schedules");
  const nightlyRow = panel.locator('[data-schedule="nightly-backup"]');
  const tickRow = panel.locator('[data-schedule="tick"]');
  await nightlyRow.waitFor();
  assert.equal(await nightlyRow.getByTestId("schedule-rule").textContent(), "0 3 * * * (UTC)");
  await nightlyRow.getByText("enabled", { exact: true }).waitFor();
  await nightlyRow.getByText("backup (keep 7)").waitFor();
  assert.match((await nightlyRow.getByTestId("schedule-next").textContent())!, /^Next due: \d{4}-\d\d-\d\d \d\d:00:00 \(in .+\)$/);
  await nightlyRow.getByText("no run yet").waitFor();
  assert.equal(await tickRow.getByTestId("schedule-rule").textContent(), "every 15m");
  await tickRow.getByText("paused", { exact: true }).first().waitFor();
  assert.equal(await tickRow.getByTestId("schedule-next").textContent(), "Next due: paused");

  // Pause and resume go to the server.
  await nightlyRow.getByRole("button", { name: "Pause" }).click();
  await nightlyRow.getByRole("button", { name: "Resume" }).waitFor();
  assert.equal((await call("GetSchedule", { id: "nightly-backup" })).json.schedule.enabled ?? false, false);
  assert.equal(await nightlyRow.getByTestId("schedule-next").textContent(), "Next due: paused");
  await tickRow.getByRole("button", { name: "Resume" }).click();
  await tickRow.getByRole("button", { name: "Pause" }).waitFor();
  assert.equal((await call("GetSchedule", { id: "tick" })).json.schedule.enabled, true);
  await tickRow
    .getByTestId("schedule-next")
    .filter({ hasText: /^Next due: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in 1[45]m \d+s\)$/ })
    .waitFor();
  await screenshot(page, "tasks-schedules-desktop");

  // Run now creates a task and opens it; the row shows the run and links to that task.
  await tickRow.getByRole("button", { name: "Run now" }).click();
  await page.waitForURL(/\/console\/tasks\/[0-9a-f-]{36}$/);
  const taskId = new URL(page.url()).pathname.split("/").pop()!;
  const run = (await call("GetSchedule", { id: "tick" })).json.schedule.lastRun;
  assert.deepEqual([run.taskId, run.outcome, run.manual], [taskId, "SCHEDULE_RUN_OUTCOME_CREATED", true]);
  await page.locator("[data-testid=task-state]", { hasText: "done" }).waitFor();
  await page.locator("#task-details").getByText('"text": "tick"').waitFor();
  const last = tickRow.getByTestId("schedule-last-run");
  await last.filter({ hasText: "created" }).filter({ hasText: "(run now)" }).filter({ hasText: "done" }).waitFor();
  assert.equal(await tickRow.getByTestId("schedule-last-task").getAttribute("href"), `/console/tasks/${taskId}`);
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "tasks-schedules-375");

  // The link from the last run opens its task.
  await page.goto(`${s.baseUrl}/console/tasks`);
  await tickRow.getByTestId("schedule-last-task").click();
  await page.waitForURL(`${s.baseUrl}/console/tasks/${taskId}`);
  await page.locator("[data-testid=task-state]", { hasText: "done" }).waitFor();
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});
