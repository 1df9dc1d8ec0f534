// Browser: create and download a backup (both ways the page can save it) and verify the file
// with `cara backup verify`; upload an archive and see it verified; restore with dry run first.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { SECRET } from "../backup/fixtures.js";
import { connectJson, serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { assertCleanPage, browserTest, goTo, openConsole, PHONE, screenshot, signIn } from "./browser.js";

const env = { CARAPACE_SERVER_SECRET: SECRET };

/**
 * Stands in for the user's "Save as" choice: the File System Access picker answers with a file in
 * the origin-private file system (the same FileSystemFileHandle / createWritable the real picker
 * gives), so the page's streaming path runs for real and the test can read the file back.
 */
const PICKER_TO_OPFS = `
  window.showSaveFilePicker = async ({ suggestedName }) => {
    const root = await navigator.storage.getDirectory();
    window.__savedAs = suggestedName;
    return root.getFileHandle(suggestedName, { create: true });
  };`;

test("backups: create and download through the File System Access API (streamed to the file), then `cara backup verify` passes", browserTest, async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "info" }));
  const c = await openConsole(s, { init: PICKER_TO_OPFS });
  const { page } = c;
  await signIn(page, s.token);
  await goTo(page, "Backups");
  await page.getByRole("button", { name: "Create and download" }).click();
  await page.getByText("Written straight to the file you chose.").waitFor();
  const sha = (await page.locator("[data-testid=download-sha256]").textContent()) ?? "";
  assert.match(sha, /^[0-9a-f]{64}$/);
  const saved = await page.evaluate(async () => {
    const name = (window as unknown as { __savedAs: string }).__savedAs;
    const root = await navigator.storage.getDirectory();
    const bytes = new Uint8Array(await (await (await root.getFileHandle(name)).getFile()).arrayBuffer());
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return { name, base64: btoa(bin) };
  });
  assert.match(saved.name, /^carapace-backup-\d{8}T\d{6}Z\.tar\.gz$/);
  const file = join(await tempDir(), saved.name);
  await writeFile(file, Buffer.from(saved.base64, "base64"));
  const { createHash } = await import("node:crypto");
  assert.equal(
    createHash("sha256")
      .update(await readFile(file))
      .digest("hex"),
    sha,
  );
  const verify = await runCli(["backup", "verify", file, "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /^OK: .* is a complete, untampered backup of this deployment\n/);
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("backups: without that API the archive becomes a browser download; `cara backup verify` passes on the downloaded file", browserTest, async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "info" }));
  // Firefox and Safari have no showSaveFilePicker.
  const c = await openConsole(s, { init: "window.showSaveFilePicker = undefined;" });
  const { page } = c;
  await signIn(page, s.token);
  await goTo(page, "Backups");
  await page.getByLabel("tasks").check();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Create and download" }).click()]);
  assert.match(download.suggestedFilename(), /^carapace-backup-\d{8}T\d{6}Z\.tar\.gz$/);
  const file = join(await tempDir(), download.suggestedFilename());
  await download.saveAs(file);
  await page.getByText("Handed to the browser's downloads.").waitFor();
  const target = ["--port", String(s.port), "--state-dir", s.stateDir];
  const verify = await runCli(["backup", "verify", file, ...target], { env });
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /^OK: .* is a complete, untampered backup of this deployment\n/);
  const inspect = await runCli(["backup", "inspect", file, "--json", ...target], { env });
  assert.deepEqual(
    JSON.parse(inspect.stdout).manifest.sections.map((x: { name: string }) => x.name),
    ["tasks"],
  );
  await screenshot(page, "backups-downloaded-desktop");
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("backups: an archive picked on this computer is uploaded and verified; a damaged one shows its problems", browserTest, async () => {
  const s = await serveCara({ env });
  const dir = await tempDir();
  const good = join(dir, "good.tar.gz");
  const made = await runCli(["backup", "--output", good, "--port", String(s.port), "--state-dir", s.stateDir], { env });
  assert.equal(made.code, 0, made.stderr);
  const bad = join(dir, "bad.tar.gz");
  const bytes = await readFile(good);
  await writeFile(bad, bytes.subarray(0, Math.floor(bytes.length / 2)));

  const c = await openConsole(s, { path: "/console/backups" });
  const { page } = c;
  await signIn(page, s.token);
  await page.locator("#upload-backup input[type=file]").setInputFiles(good);
  await page.getByRole("button", { name: "Upload and verify" }).click();
  const verify = page.locator("#verify");
  await verify.getByText("Verified: the archive is complete and was made by this deployment.").waitFor();
  // This state dir has no config.json: the archive's sections are tasks (and whatever else it has).
  await verify
    .getByText(/^(config|tasks) \(\d+ files/)
    .first()
    .waitFor();
  const name = ((await verify.getByRole("heading").textContent()) ?? "").replace(/^Verify /, "");
  assert.match(name, /^upload-\d{8}T\d{6}Z-[0-9a-f]{4}\.tar\.gz$/);
  assert.deepEqual(await readFile(join(s.stateDir, "backups", name)), bytes);
  await page.locator(`[data-backup="${name}"]`, { hasText: "upload" }).waitFor();
  await screenshot(page, "backups-verified-desktop");

  await page.locator("#upload-backup input[type=file]").setInputFiles(bad);
  await page.getByRole("button", { name: "Upload and verify" }).click();
  await page.locator("#verify .notice.fail", { hasText: /^Not valid: \d+ problem/ }).waitFor();
  await page.locator("#verify", { hasText: "corrupt_archive" }).waitFor();
  await screenshot(page, "backups-damaged-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "backups-375");
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});

test("backups: restore shows the dry-run difference first and needs the archive's name typed; then the state is restored", browserTest, async () => {
  const s = await serveCara({ env });
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "info" }));
  // An archive in the backups dir (a backup task writes one), then the config changes.
  const task = await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", { payload: { backup: { keep: 3 } } }, s.token);
  const taskId = task.json.task.id as string;
  let archive = "";
  for (;;) {
    const t = (await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id: taskId }, s.token)).json.task;
    if (t.state === "TASK_STATE_DONE") {
      archive = /\/(scheduled-[^/ ]+\.tar\.gz)/.exec(t.result)![1]!;
      break;
    }
    assert.ok(t.state !== "TASK_STATE_FAILED", JSON.stringify(t));
  }
  await writeFile(join(s.stateDir, "config.json"), JSON.stringify({ logLevel: "debug" }));

  const c = await openConsole(s, { path: "/console/backups" });
  const { page } = c;
  await signIn(page, s.token);
  const row = page.locator(`[data-backup="${archive}"]`);
  await row.getByRole("button", { name: "Restore…" }).click();
  const panel = page.locator("#restore");
  await panel.getByLabel("tasks").uncheck();
  await panel.getByRole("button", { name: "Preview changes (dry run)" }).click();
  const configRow = panel.locator('tr[data-section="config"]');
  await configRow.waitFor();
  assert.deepEqual(await configRow.locator("td").allTextContents(), ["0", "1", "0", "0"]);
  assert.equal(await panel.locator("tr[data-section]").count(), 1);
  // Config by key path, never by value; no task list since tasks are not restored.
  // biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText, which keeps the rendered line breaks.
  assert.equal(await panel.locator('[data-changes="config"]').innerText(), "Config keys (values not shown)\n\nReverted to the backup's value: 1\n~ logLevel");
  assert.equal(await panel.locator('[data-changes="tasks"]').count(), 0);
  // The dry run changed nothing.
  assert.equal(await readFile(join(s.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "debug" }));
  const restore = panel.getByRole("button", { name: "Restore now" });
  assert.ok(await restore.isDisabled());
  await panel.getByLabel(/To restore, type the archive's name/).fill(archive.slice(0, -1));
  assert.ok(await restore.isDisabled());
  await screenshot(page, "backups-restore-preview-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "backups-restore-preview-375");
  await page.setViewportSize({ width: 1280, height: 860 });
  await panel.getByLabel(/To restore, type the archive's name/).fill(archive);
  await restore.click();
  await panel.getByText("Restored config.").waitFor();
  await panel.getByText(/pre-restore-.*\.tar\.gz/).waitFor();
  assert.equal(await readFile(join(s.stateDir, "config.json"), "utf8"), JSON.stringify({ logLevel: "info" }));
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});
