// Browser: sign-in (wrong token, 429 wait, sign-out), the overview's checks, doctor and bug
// report, live logs.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { connectJson, serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { assertCleanPage, browserTest, openConsole, PHONE, screenshot, signIn } from "./browser.js";

const EXPECTED_401 = /status of 401/;

test("sign in: a wrong token shows 'token rejected'; the right one is kept in sessionStorage only; sign out forgets it", browserTest, async () => {
  const s = await serveCara();
  const c = await openConsole(s);
  const { page } = c;
  await page.locator("#token").waitFor();
  await screenshot(page, "sign-in-desktop");
  await page.locator("#token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Token rejected: the server did not accept this token.").waitFor();
  assert.equal(await page.locator("#token").getAttribute("aria-invalid"), "true");
  await screenshot(page, "sign-in-rejected-desktop");
  // Enter submits; the token goes to sessionStorage and nowhere else.
  await page.locator("#token").fill(s.token);
  await page.locator("#token").press("Enter");
  await page.locator("h1#page-title", { hasText: "Overview" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("cara.token")), s.token);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.deepEqual(await c.context.cookies(), []);
  assert.ok(!page.url().includes(s.token));
  // A reload keeps the session (same tab); a new tab does not have it.
  await page.reload();
  await page.locator("h1#page-title", { hasText: "Overview" }).waitFor();
  const other = await c.context.newPage();
  await other.goto(s.baseUrl);
  await other.locator("#token").waitFor();
  await other.close();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("Signed out. The token was removed from this tab.").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("cara.token")), null);
  assertCleanPage(c, s.baseUrl, [EXPECTED_401]);
  // The token never reached a log line (the helper also checks every server's log at the end).
  assert.ok(!s.lines.some((l) => l.includes(s.token)));
  await c.context.close();
  await s.stop();
});

test("sign in: after too many wrong tokens the form shows the server's wait (429 Retry-After); the right token still signs in", browserTest, async () => {
  const s = await serveCara();
  // Nine failures from this address through the API, the tenth through the page.
  for (let i = 0; i < 9; i++) assert.equal((await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, `wrong-${i}`)).status, 401);
  const c = await openConsole(s);
  const { page } = c;
  await page.locator("#token").fill("wrong-again");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Token rejected: the server did not accept this token.").waitFor();
  await page.locator("#token").fill("wrong-once-more");
  await page.getByRole("button", { name: "Sign in" }).click();
  const error = page.locator("#token-error");
  await error
    .filter({ hasText: /^Too many failed sign-in attempts: wrong tokens are refused for \d+ s more \(the right token is still accepted\)\.$/ })
    .waitFor();
  const seconds = Number(/for (\d+) s/.exec((await error.textContent()) ?? "")?.[1]);
  assert.ok(seconds >= 30 && seconds <= 60, `wait ${seconds}`);
  // Not signed in: the wrong token was not stored.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("cara.token")), null);
  await screenshot(page, "sign-in-429-desktop");
  // The right token is accepted even now (a guesser sharing the address cannot lock the operator out).
  await page.locator("#token").fill(s.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForFunction(() => sessionStorage.getItem("cara.token") !== null);
  assertCleanPage(c, s.baseUrl, [EXPECTED_401, /status of 429/]);
  await c.context.close();
  await s.stop();
});

test(
  "overview: every check of GetStatus with its status and message, the server-secret warning, live uptime; readable at 375 px and in dark mode",
  browserTest,
  async () => {
    const s = await serveCara();
    const status = (await connectJson(s, "carapace.ops.v1.OpsService/GetStatus", {}, s.token)).json;
    const c = await openConsole(s);
    const { page } = c;
    await signIn(page, s.token);
    for (const check of status.checks as { name: string; status: string; message: string }[]) {
      const row = page.locator(`[data-check="${check.name}"]`);
      await row.waitFor();
      const word = { CHECK_STATUS_OK: "ok", CHECK_STATUS_WARN: "warn", CHECK_STATUS_FAIL: "fail" }[check.status];
      assert.equal(await row.locator(".badge").textContent(), word, check.name);
      // Messages with numbers that move (disk free, log size) are compared by their stable start.
      const text = (await row.locator(".check-message").textContent()) ?? "";
      assert.equal(text.replace(/\d[\d.,]*/g, "N"), check.message.replace(/\d[\d.,]*/g, "N"), check.name);
    }
    assert.equal(await page.locator("[data-check]").count(), status.checks.length);
    assert.deepEqual(
      (await page.locator("[data-check]").evaluateAll((els) => els.map((e) => e.getAttribute("data-check")))).sort(),
      status.checks.map((x: { name: string }) => x.name).sort(),
    );
    // No CARAPACE_SERVER_SECRET: the warning is the first thing on the page.
    const warning = page.locator(".notice.warn", { hasText: "Set CARAPACE_SERVER_SECRET in production" });
    await warning.waitFor();
    assert.match((await page.locator("[data-testid=verdict]").textContent()) ?? "", /^DEGRADED \(1 warning\)carapace 0\.1\.0 at 127\.0\.0\.1:\d+, up \d+s/);
    // Uptime moves without a reload.
    const uptime = async () => Number(/up (\d+)s/.exec((await page.locator("[data-testid=verdict]").textContent()) ?? "")?.[1]);
    const first = await uptime();
    await page.waitForFunction((n) => Number(/up (\d+)s/.exec(document.querySelector("[data-testid=verdict]")?.textContent ?? "")?.[1]) > n, first);
    await screenshot(page, "overview-desktop");

    await page.setViewportSize(PHONE);
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width, "no horizontal scrolling at 375 px");
    await screenshot(page, "overview-375");

    // Dark mode follows prefers-color-scheme.
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(light, dark);
    assert.equal(dark, "rgb(13, 17, 23)");
    await page.setViewportSize({ width: 1280, height: 860 });
    await screenshot(page, "overview-dark-desktop");
    assertCleanPage(c, s.baseUrl);
    await c.context.close();
    await s.stop();
  },
);

test("keyboard: skip link first, then the pages in order, focus visible; a page change focuses its heading", browserTest, async () => {
  const s = await serveCara();
  const c = await openConsole(s);
  const { page } = c;
  await signIn(page, s.token);
  // Start from the top of the document (the page focused its heading, and the Overview has
  // buttons after it: Run doctor, Download bug report).
  await page.evaluate(() => {
    document.body.setAttribute("tabindex", "-1");
    document.body.focus();
    document.body.removeAttribute("tabindex");
  });
  const order: string[] = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press("Tab");
    order.push(await page.evaluate(() => (document.activeElement?.textContent ?? "").trim()));
  }
  assert.deepEqual(order.slice(0, 8), ["Skip to content", "ccara console", "Overview", "Logs", "Tasks", "Backups", "Update", "Sign out"]);
  // The focused element shows an outline.
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
  assert.equal(outline, "solid");
  // Enter on a nav link changes the page and moves focus to its heading.
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Enter");
  await page.locator("h1#page-title", { hasText: "Backups" }).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === "page-title");
  assert.equal(new URL(page.url()).pathname, "/console/backups");
  // Back goes back, without a reload.
  await page.goBack();
  await page.locator("h1#page-title", { hasText: "Overview" }).waitFor();
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("logs: a line logged after the page loaded appears live; filters, pause/resume, copy a line; bounded; phone width", browserTest, async () => {
  const s = await serveCara();
  const c = await openConsole(s, { path: "/console/logs" });
  const { page, context } = c;
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: s.baseUrl });
  await signIn(page, s.token);
  await page.locator("h1#page-title", { hasText: "Logs" }).waitFor();
  await page.locator(".stream-state.live").waitFor();
  await page.locator(".log-row", { hasText: "listening on" }).waitFor();

  // A system event task logs "system event" with its text: it shows up without a reload.
  const created = await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text: "hello from the browser test" } } },
    s.token,
  );
  assert.equal(created.status, 200);
  const row = page.locator(".log-row", { hasText: "system event" });
  await row.waitFor();
  await row.click();
  const details = page.getByRole("region", { name: "Selected line" });
  await details.getByText('"event": "hello from the browser test"').waitFor();
  await details.getByRole("button", { name: "Copy line" }).click();
  await details.getByText("Copied.").waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(copied, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO tasks: system event \{.*"event":"hello from the browser test".*\}$/);

  // Level filter: warn and above hides the info lines and keeps the warnings.
  await page.getByLabel("Level").selectOption({ label: "warn and above" });
  await page.locator(".log-row", { hasText: "set CARAPACE_SERVER_SECRET in production" }).waitFor();
  await page.locator(".log-row", { hasText: "system event" }).waitFor({ state: "detached" });
  assert.equal(await page.locator(".log-row .log-level.info").count(), 0);
  // Text filter (server side, case-sensitive).
  await page.getByLabel("Level").selectOption({ label: "all levels" });
  await page.locator(".log-row", { hasText: "listening on" }).waitFor();
  await page.getByLabel(/Contains/).fill("system event");
  // The stream restarts with the filter (after typing settles): only the matching line is left.
  await page.locator(".log-row", { hasText: "listening on" }).waitFor({ state: "detached" });
  await row.waitFor();
  assert.equal(await page.locator(".log-row").count(), 1);

  // Pause: a new line does not appear; resume: it does (picked up from where the page stopped).
  await page.getByRole("button", { name: "Pause" }).click();
  await page.locator(".stream-state.paused").waitFor();
  await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: "while paused" } } }, s.token);
  await waitForLog(s, "while paused");
  assert.equal(await page.locator(".log-row").count(), 1);
  await page.getByRole("button", { name: "Resume" }).click();
  await page.locator(".stream-state.live").waitFor();
  await page.locator(".log-row").nth(1).waitFor();
  assert.equal(await page.locator(".log-row").count(), 2);
  await page.getByLabel(/Contains/).fill("");
  await page.locator(".log-row", { hasText: "listening on" }).waitFor();

  // Keyboard: the list takes focus, arrows select, Enter copies.
  await page.locator(".log-viewport").focus();
  await page.keyboard.press("End");
  await page.keyboard.press("ArrowUp");
  await page.keyboard.press("Enter");
  await details.getByText("Copied.").waitFor();
  await screenshot(page, "logs-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "logs-375");
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("logs: the page keeps at most the ring's capacity of lines and renders only the visible rows", browserTest, async () => {
  // A small ring (100, the minimum) and a burst of 400 lines.
  const { mkdir, writeFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const { tempDir } = await import("../helpers/cara.js");
  const stateDir = join(await tempDir(), "state");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify({ logs: { ringCapacity: 100 } }));
  const s = await serveCara({ stateDir });
  const c = await openConsole(s, { path: "/console/logs" });
  const { page } = c;
  await signIn(page, s.token);
  await page.locator(".stream-state.live").waitFor();
  await Promise.all(
    Array.from({ length: 400 }, (_, i) =>
      connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { systemEvent: { text: `burst ${i}` } } }, s.token),
    ),
  );
  // All 400 ran (each logged its line).
  for (;;) {
    const stats = await connectJson(s, "carapace.tasks.v1.TasksService/GetQueueStats", {}, s.token);
    if ((stats.json.stats?.counts?.done ?? 0) >= 400) break;
  }
  // The count of kept lines settles at the ring size, never above it.
  await page.waitForFunction(() => /^100 lines kept \(at most 100/.test(document.querySelector(".log-meta")?.textContent ?? ""));
  const kept = await page.evaluate(() => document.querySelector(".log-meta")?.textContent ?? "");
  assert.match(kept, /^100 lines kept \(at most 100, like the server's ring\)/);
  // Only the visible rows are in the DOM.
  assert.ok((await page.locator(".log-row").count()) < 60);
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

/** Waits until the server logged a system event with this text (each check is one API call). */
async function waitForLog(s: { baseUrl: string; token: string }, text: string): Promise<void> {
  for (;;) {
    const res = await connectJson(s, "carapace.ops.v1.OpsService/TailLogs", { limit: 5000, filter: { contains: "system event" } }, s.token);
    if ((res.json.entries ?? []).some((e: { fields?: { event?: string } }) => e.fields?.event === text)) return;
  }
}

test(
  "overview: Run doctor shows every step with its next action, the verdict and the restore command; Download bug report saves the .tar.gz",
  browserTest,
  async () => {
    const env = { CARAPACE_SERVER_SECRET: "console-doctor-secret-0123456789abcdefghij" };
    const s = await serveCara({ env });
    const archive = join(s.stateDir, "backups", "first.tar.gz");
    assert.equal((await runCli(["backup", "-o", archive, "--port", String(s.port), "--state-dir", s.stateDir], { env })).code, 0);
    // An agentTurn task and no provider: the agent step fails, so the restore command is offered.
    assert.equal(
      (
        await runCli(
          ["task", "create", "--payload", '{"kind":"agentTurn","message":"private words 4711"}', "--port", String(s.port), "--state-dir", s.stateDir],
          { env },
        )
      ).code,
      0,
    );
    const c = await openConsole(s);
    const { page } = c;
    await signIn(page, s.token);
    await page.getByRole("button", { name: "Run doctor" }).click();
    const agent = page.locator('[data-step="agent"]');
    await agent.waitFor();
    assert.equal(await agent.locator(".badge").textContent(), "fail");
    assert.equal(
      await agent.locator(".check-message").textContent(),
      `1 agentTurn task waits for a provider, but agent.baseUrl, agent.model and CARAPACE_AGENT_API_KEY are not set→ set agent.baseUrl and agent.model in ${s.stateDir}/config.json (and CARAPACE_AGENT_API_KEY if the endpoint needs one), restart, then cara task resume <id>`,
    );
    assert.equal(await page.locator("[data-step]").count(), 13);
    assert.equal(await page.locator('[data-step="secret"] .badge').textContent(), "ok");
    assert.match((await page.locator("[data-testid=doctor-verdict]").textContent()) ?? "", /^FAIL \(1 step failing(, \d+ warnings?)?\)$/);
    assert.equal(
      await page.locator("[data-testid=restore-command]").textContent(),
      `cara restore ${archive} --dry-run --state-dir ${s.stateDir}   (then again with --force)`,
    );
    await screenshot(page, "overview-doctor-desktop");

    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download bug report" }).click()]);
    assert.match(download.suggestedFilename(), /^cara-bugreport-\d{8}T\d{6}Z\.tar\.gz$/);
    const file = join(await tempDir(), download.suggestedFilename());
    await download.saveAs(file);
    const top = download.suggestedFilename().replace(/\.tar\.gz$/, "");
    const names = execFileSync("tar", ["-tzf", file], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter((n) => !n.endsWith("/"));
    assert.deepEqual(
      names.sort(),
      ["doctor.json", "status.json", "logs.jsonl", "versions.json", "update.json", "queue.json", "README.txt"].map((n) => `${top}/${n}`).sort(),
    );
    const text = execFileSync("tar", ["-xzOf", file], { encoding: "utf8" });
    for (const secret of [s.token, env.CARAPACE_SERVER_SECRET, "private words 4711"])
      assert.ok(!text.includes(secret), `${secret.slice(0, 10)}... is in the bug report`);
    const summary = page.locator("[data-testid=bugreport-summary]");
    await summary.getByText(`Downloaded ${download.suggestedFilename()}`).waitFor();
    await summary.getByText("task payloads (pass --include-payloads to include them, redacted)").waitFor();
    await screenshot(page, "overview-bugreport-desktop");
    assertCleanPage(c, s.baseUrl);
    await c.context.close();
    await s.stop();
  },
);
