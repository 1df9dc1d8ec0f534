// Real-browser harness: Debian's Chromium driven by playwright-core, against a real `cara start`.
// `npm test` skips these (saying so) when Chromium is missing; `npm run test:browser` sets
// CARA_BROWSER_TESTS=required and fails instead.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { ROOT, type CaraServer } from "../helpers/cara.js";

export const CHROMIUM = process.env.CARA_CHROMIUM ?? "/usr/bin/chromium";
const REQUIRED = process.env.CARA_BROWSER_TESTS === "required";
export const SCREENSHOTS = join(ROOT, "test-output", "screenshots");

/**
 * Options for node:test: a plain skip message when there is no Chromium (and the run does not
 * require one). With CARA_BROWSER_TESTS=required the tests run and fail at launch instead.
 */
export const browserTest: { skip?: string; timeout: number } =
  existsSync(CHROMIUM) || REQUIRED
    ? { timeout: 180_000 }
    : { skip: `Chromium not found at ${CHROMIUM}: browser tests skipped (apt-get install chromium, or set CARA_CHROMIUM)`, timeout: 180_000 };

let browser: Promise<Browser> | undefined;

/** One headless Chromium per test file (Playwright gives each launch a fresh temporary --user-data-dir). */
export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set CARA_CHROMIUM`);
  browser ??= chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  return browser;
}

after(async () => {
  if (browser) await (await browser).close();
});

export const DESKTOP = { width: 1280, height: 860 };
export const PHONE = { width: 375, height: 740 };

export interface ConsolePage {
  page: Page;
  context: BrowserContext;
  /** Every URL the page requested. */
  requests: string[];
  /** Console errors and CSP violations the page reported. */
  errors: string[];
}

/** A fresh browser context (own storage) with one page on the server's console. */
export async function openConsole(
  server: Pick<CaraServer, "baseUrl">,
  options: { viewport?: { width: number; height: number }; path?: string; colorScheme?: "light" | "dark"; init?: string } = {},
): Promise<ConsolePage> {
  const b = await launchChromium();
  const context = await b.newContext({
    viewport: options.viewport ?? DESKTOP,
    acceptDownloads: true,
    colorScheme: options.colorScheme ?? "light",
    reducedMotion: "reduce",
  });
  if (options.init) await context.addInitScript(options.init);
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  await page.goto(`${server.baseUrl}${options.path ?? "/"}`);
  return { page, context, requests, errors };
}

export async function signIn(page: Page, token: string): Promise<void> {
  await page.locator("#token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".shell main h1#page-title").waitFor();
}

export async function goTo(page: Page, label: "Overview" | "Logs" | "Tasks" | "Backups" | "Update"): Promise<void> {
  await page.getByRole("navigation", { name: "Console pages" }).getByRole("link", { name: label }).click();
  await page.locator("h1#page-title", { hasText: label }).waitFor();
}

/** A full-page screenshot under test-output/screenshots/. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * What every console test checks at the end: the page made no request to another origin, put
 * no token in a URL, broke no CSP rule and threw nothing (`allowed`: expected console errors,
 * e.g. the 401 of a deliberately wrong token).
 */
export function assertCleanPage(c: ConsolePage, origin: string, allowed: RegExp[] = []): void {
  for (const url of c.requests) {
    assert.ok(url.startsWith(`${origin}/`) || url.startsWith("blob:") || url.startsWith("data:"), `request to another origin: ${url}`);
    assert.ok(!/token|authorization/i.test(new URL(url).search), `a URL carries a token: ${url}`);
  }
  const unexpected = c.errors.filter((e) => !allowed.some((re) => re.test(e)));
  assert.deepEqual(unexpected, [], "console errors");
}
