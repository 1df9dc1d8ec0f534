// Browser: a managed install (real signed test releases, local release server) updated and rolled
// back from the console's Update page; the console itself is served from the installed release.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runCara, startCara } from "../helpers/cara.js";
import { current, installDir, launcher, stateDir, status, useUpdateWorld } from "../e2e/update-world.js";
import { assertCleanPage, browserTest, openConsole, PHONE, screenshot, signIn } from "./browser.js";

useUpdateWorld();

test("update: check, install v0.9.1 with live phases and progress, see the transaction and rollback marker, roll back", browserTest, async () => {
  const installed = await runCara(["install", "--dir", installDir, "--version", "0.9.0", "--state-dir", stateDir], { timeoutMs: 60_000 });
  assert.equal(installed.code, 0, installed.stderr);
  const s = await startCara({ stateDir, bin: launcher });
  const c = await openConsole(s, { path: "/console/update" });
  const { page } = c;
  await signIn(page, s.token);
  await page.locator("[data-testid=current-version]", { hasText: "0.9.0" }).waitFor();
  await page.locator("#installation").getByText(`managed, in ${installDir}`).waitFor();

  await page.getByRole("button", { name: "Check now" }).click();
  await page.getByText("available: v0.9.0 → v0.9.1").waitFor();
  await page.getByRole("button", { name: "Update to v0.9.1…" }).click();
  await page.getByRole("button", { name: "Install v0.9.1 now" }).click();
  const result = page.locator(".start-update .notice");
  await result.waitFor();
  assert.equal(await result.locator(".notice-title").textContent(), "v0.9.1 applied");
  await result.getByText("Restart the server to run the new version.").waitFor();
  // The stream's phases all went by; the bar ends full (the last file downloaded).
  assert.deepEqual(await page.locator(".steps li.done").allTextContents(), ["created", "downloading", "downloaded", "verified", "applying"]);
  assert.equal(await page.locator(".steps li.current").textContent(), "applied");
  const bar = page.locator(".start-update progress");

  // (This file is type-checked without the DOM library: it shares the update tests' Node-only kit.)
  const [value, max] = await bar.evaluate((el) => [(el as unknown as { value: number }).value, (el as unknown as { max: number }).max]);
  assert.equal(value, max);
  assert.ok(max! > 1);
  assert.equal(await current(), "versions/0.9.1");

  // The transaction and the rollback marker, as the server reports them.
  const transaction = page.locator("#transaction");
  await transaction.getByText("applied", { exact: true }).first().waitFor();
  await transaction.getByText("v0.9.0 → v0.9.1").waitFor();
  const marker = page.locator("#rollback");
  await marker.getByText("pending", { exact: true }).waitFor();
  await screenshot(page, "update-applied-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate("document.documentElement.scrollWidth"), PHONE.width);
  await screenshot(page, "update-applied-375");
  await page.setViewportSize({ width: 1280, height: 860 });

  await marker.getByRole("button", { name: "Roll back to v0.9.0…" }).click();
  await marker.getByLabel(/^Reason/).fill("trying the console");
  await marker.getByRole("button", { name: "Roll back to v0.9.0" }).click();
  await marker.getByText("Switched back to v0.9.0").waitFor();
  assert.equal(await current(), "versions/0.9.0");
  const after = await status(s.port);
  assert.equal(after.currentVersion, "0.9.0");
  assertCleanPage(c, s.baseUrl);
  await c.context.close();
  await s.stop();
});
