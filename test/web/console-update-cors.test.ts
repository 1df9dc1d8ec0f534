// Browser: the Update page offline, and Connect-Web pages on other origins (allowed vs not).
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { build } from "esbuild";
import { ROOT, serveCara, tempDir } from "../helpers/cara.js";
import { assertCleanPage, browserTest, goTo, launchChromium, openConsole, PHONE, screenshot, signIn } from "./browser.js";

const servers: http.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function stateWithConfig(config: unknown): Promise<string> {
  const stateDir = join(await tempDir(), "state");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(join(stateDir, "config.json"), JSON.stringify(config), { mode: 0o600 });
  return stateDir;
}

test("update: the page shows the running version and, with the release source unreachable, a clear error", browserTest, async () => {
  const port = await closedPort();
  const s = await serveCara({
    stateDir: await stateWithConfig({ update: { releasesUrl: `http://127.0.0.1:${port}/repos/o/r`, trustRefresh: false, maxAttempts: 1 } }),
  });
  const c = await openConsole(s, { path: "/console/update" });
  const { page } = c;
  await signIn(page, s.token);
  await page.locator("[data-testid=current-version]", { hasText: "0.1.0" }).waitFor();
  await page
    .locator("#installation")
    .getByText(/^not managed: running from a git checkout/)
    .waitFor();
  await page.getByText("No update transaction.").waitFor();
  await page.getByText("No rollback marker: no update is on probation.").waitFor();
  await page.getByRole("button", { name: "Check now" }).click();
  const error = page.locator("[data-testid=check-error]");
  await error.waitFor();
  const text = (await error.textContent()) ?? "";
  assert.match(
    text,
    /^failed to fetch release info: cannot reach 127\.0\.0\.1:\d+ \(connection refused\)\. The release source did not answer: this machine may be offline\. Nothing was changed; try again later\.$/,
    text,
  );
  await page.getByText("Could not check for updates", { exact: true }).waitFor();
  assert.ok(!text.includes("[object"), text);
  // Nothing to install and nothing claims otherwise.
  assert.equal(await page.getByRole("button", { name: /^Update to/ }).count(), 0);
  await screenshot(page, "update-offline-desktop");
  await page.setViewportSize(PHONE);
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), PHONE.width);
  await screenshot(page, "update-offline-375");
  await goTo(page, "Overview");
  assertCleanPage(c, s.baseUrl, [/status of 503 \(Service Unavailable\)/]);
  await c.context.close();
  await s.stop();
});

/** Serves a page that loads a Connect-Web client bundle (built here with esbuild) on its own origin. */
async function thirdPartyPage(bundle: string): Promise<{ origin: string }> {
  const html = '<!doctype html><meta charset="utf-8"><title>third party</title><script src="/client.js"></script><p>another origin</p>';
  const server = http.createServer((req, res) => {
    if (req.url === "/client.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(bundle);
    } else {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(html);
    }
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test(
  "CORS: a Connect-Web page on an allowed origin uses the API (Connect and gRPC-Web, unary and streaming); one on another origin is refused by the browser",
  browserTest,
  async () => {
    const out = await build({
      entryPoints: [join(ROOT, "test", "web", "fixtures", "cross-origin-client.ts")],
      bundle: true,
      format: "iife",
      write: false,
      platform: "browser",
      target: "es2022",
      logLevel: "silent",
    });
    const bundle = out.outputFiles[0]!.text;
    const allowed = await thirdPartyPage(bundle);
    const other = await thirdPartyPage(bundle);
    const s = await serveCara({ stateDir: await stateWithConfig({ server: { cors: { allowedOrigins: [allowed.origin] } } }) });
    const browser = await launchChromium();
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    type Outcome = { ok: boolean; version?: string; followed?: boolean; code?: number; message?: string };
    const call = (token: string, protocol: "connect" | "grpc-web") =>
      page.evaluate(([base, t, p]) => (window as unknown as { callCara: (b: string, t: string, p: string) => Promise<unknown> }).callCara(base, t, p), [
        s.baseUrl,
        token,
        protocol,
      ] as const) as Promise<Outcome>;

    await page.goto(`${allowed.origin}/`);
    assert.deepEqual(await call(s.token, "connect"), { ok: true, version: "0.1.0", followed: true });
    assert.deepEqual(await call(s.token, "grpc-web"), { ok: true, version: "0.1.0", followed: true });
    // Errors are readable across origins too (status headers are exposed): a wrong token is Unauthenticated.
    for (const protocol of ["connect", "grpc-web"] as const) {
      const denied = await call("wrong", protocol);
      assert.equal(denied.ok, false);
      assert.equal(denied.code, 16, `${protocol}: ${JSON.stringify(denied)}`);
      assert.equal(denied.message, "invalid bearer token");
    }

    await page.goto(`${other.origin}/`);
    const refused = await call(s.token, "connect");
    assert.equal(refused.ok, false);
    // The browser stops it at the preflight: the page learns nothing but a network failure.
    assert.notEqual(refused.code, 16);
    assert.match(refused.message ?? "", /Failed to fetch/);
    assert.ok(
      errors.some((e) => /has been blocked by CORS policy/.test(e)),
      errors.join("\n"),
    );
    // The server saw no call from it: no authentication failure was logged for the refused origin.
    const rejected = s.lines.filter((l) => l.includes("rejected an RPC: authentication failed")).length;
    assert.equal(rejected, 2, "only the two deliberate wrong-token calls from the allowed origin");
    await context.close();
    await s.stop();
  },
);
