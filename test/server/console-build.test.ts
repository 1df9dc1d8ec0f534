// The built console (npm run build -> dist/web): budget, no inline code, deterministic output.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, tempDir } from "../helpers/cara.js";

const WEB = join(ROOT, "dist", "web");

test("first load: index.html and every file it names, gzipped, stays under 150 KB; nothing is loaded from elsewhere", async () => {
  const html = await readFile(join(WEB, "index.html"), "utf8");
  const named = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  assert.deepEqual(named.map((n) => n.replace(/-[A-Z0-9]{8}\./, "-HASH.")).sort(), ["/assets/app-HASH.css", "/assets/app-HASH.js", "/assets/favicon-HASH.svg"]);
  let total = (await stat(join(WEB, "index.html.gz"))).size;
  for (const n of named) total += (await stat(join(WEB, `${n}.gz`))).size;
  assert.ok(total < 150 * 1024, `first load is ${total} bytes gzipped`);
  // No inline script or style (the CSP forbids them), no external URL in the page or stylesheet.
  assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/);
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i);
  const css = await readFile(join(WEB, named.find((n) => n.endsWith(".css"))!.slice(1)), "utf8");
  assert.doesNotMatch(html + css, /https?:\/\/|url\(\s*["']?\/\//);
  assert.doesNotMatch(css, /@import/);
});

test("the build is deterministic: two builds give the same files, byte for byte", async () => {
  const a = await tempDir("cara-web-a-");
  const b = await tempDir("cara-web-b-");
  for (const out of [a, b]) {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts", "build-web.mjs"), "--out", out], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^console -> .* \(first load: [\d.]+ KiB gzipped/);
  }
  const list = async (dir: string) => (await readdir(dir, { recursive: true })).sort();
  const files = await list(a);
  assert.deepEqual(files, await list(b));
  assert.ok(files.includes("index.html.br"));
  for (const f of files) {
    if ((await stat(join(a, f))).isDirectory()) continue;
    assert.deepEqual(await readFile(join(a, f)), await readFile(join(b, f)), f);
  }
});
