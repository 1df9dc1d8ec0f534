#!/usr/bin/env node
// Builds the browser console: src/web/ -> dist/web/ (part of `npm run build`).
//
//   dist/web/index.html                 the page (not cached: it names the current files)
//   dist/web/assets/app-<hash>.js|css   the bundle, content-hashed (cached for a year, immutable)
//   dist/web/assets/favicon-<hash>.svg
//   every text file also as .gz and .br (compressed here, once, at the highest levels)
//
// Files are replaced atomically (temp file + rename) and stale ones removed only afterwards, so a
// server starting while another build runs (the test suite builds in parallel) always finds a
// complete console; content-hashed names of unchanged sources are simply rewritten in place.
// Deterministic: the same sources give the same bytes (esbuild output depends only on its
// inputs; gzip is written without name or timestamp). Prints the first-load size, gzipped.
// Usage: node scripts/build-web.mjs [--out DIR]
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants as zc, gzipSync } from "node:zlib";
import { build } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "src", "web");
// `--out DIR` builds elsewhere (the determinism test builds twice into temp dirs).
const outArg = process.argv.indexOf("--out");
const OUT = outArg > 0 && process.argv[outArg + 1] ? resolve(process.argv[outArg + 1]) : join(ROOT, "dist", "web");
const ASSETS = join(OUT, "assets");
/** The budget for everything the first load transfers (gzipped). */
const FIRST_LOAD_BUDGET = 150 * 1024;

/** `<name>-<8 chars of base32 SHA-256>.<ext>`: the same scheme esbuild uses for the bundle. */
function hashedName(name, ext, data) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const digest = createHash("sha256").update(data).digest();
  let hash = "";
  for (let i = 0; i < 8; i++) hash += alphabet[digest[i] % 32];
  return `${name}-${hash}.${ext}`;
}

/** Writes a file by temp + rename: readers see the old or the new file, never half of one. */
async function writeAtomic(path, data) {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function main() {
  await mkdir(ASSETS, { recursive: true });
  /** Every file this build produces (relative to OUT), with its bytes. */
  const files = new Map();

  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { app: join(SRC, "main.tsx") },
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022", "chrome109", "firefox115", "safari16"],
    platform: "browser",
    jsx: "automatic",
    jsxImportSource: "preact",
    outdir: ASSETS,
    write: false,
    entryNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    charset: "utf8",
    legalComments: "none",
    sourcemap: false,
    metafile: true,
    logLevel: "warning",
    define: { "process.env.NODE_ENV": '"production"' },
    tsconfig: join(SRC, "tsconfig.json"),
  });
  const outputs = result.outputFiles.map((f) => f.path);
  const script = outputs.find((p) => p.endsWith(".js"));
  const style = outputs.find((p) => p.endsWith(".css"));
  if (!script || !style || outputs.length !== 2)
    throw new Error(`esbuild did not produce one .js and one .css (got ${outputs.map((p) => relative(ROOT, p)).join(", ")})`);
  for (const f of result.outputFiles) files.set(relative(OUT, f.path), Buffer.from(f.contents));

  const favicon = readFileSync(join(SRC, "favicon.svg"));
  const faviconName = hashedName("favicon", "svg", favicon);
  files.set(`assets/${faviconName}`, favicon);

  const url = (p) => `/assets/${relative(ASSETS, p)}`;
  const template = await readFile(join(SRC, "index.html"), "utf8");
  const html = template.replace("{{favicon}}", `/assets/${faviconName}`).replace("{{style}}", url(style)).replace("{{script}}", url(script));
  if (/\{\{\w+\}\}/.test(html)) throw new Error("src/web/index.html has a placeholder the build does not fill");
  files.set("index.html", Buffer.from(html));

  // Precompress every text file (the server picks br, gzip or identity per Accept-Encoding).
  const sizes = new Map();
  for (const [name, data] of [...files]) {
    const gz = gzipSync(data, { level: zc.Z_BEST_COMPRESSION });
    const br = brotliCompressSync(data, { params: { [zc.BROTLI_PARAM_QUALITY]: zc.BROTLI_MAX_QUALITY, [zc.BROTLI_PARAM_SIZE_HINT]: data.length } });
    files.set(`${name}.gz`, gz);
    files.set(`${name}.br`, br);
    sizes.set(name, { raw: data.length, gz: gz.length, br: br.length });
  }
  // The page last: by the time it names the new files they are all in place.
  for (const [name, data] of [...files].sort(([a], [b]) => (a.startsWith("index.html") ? 1 : 0) - (b.startsWith("index.html") ? 1 : 0)))
    await writeAtomic(join(OUT, name), data);
  for (const entry of await readdir(ASSETS)) if (!files.has(`assets/${entry}`)) await rm(join(ASSETS, entry), { force: true });
  const total = [...sizes.values()].reduce((a, s) => ({ raw: a.raw + s.raw, gz: a.gz + s.gz, br: a.br + s.br }), { raw: 0, gz: 0, br: 0 });
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  const lines = [...sizes].map(([name, s]) => `  ${name.padEnd(34)} ${kb(s.raw).padStart(10)}  gzip ${kb(s.gz).padStart(9)}  br ${kb(s.br).padStart(9)}`);
  const shown = relative(ROOT, OUT).startsWith("..") ? OUT : relative(ROOT, OUT);
  process.stdout.write(
    `console -> ${shown}/ (first load: ${kb(total.gz)} gzipped, ${kb(total.br)} brotli; budget ${kb(FIRST_LOAD_BUDGET)})\n${lines.join("\n")}\n`,
  );
  if (total.gz > FIRST_LOAD_BUDGET) throw new Error(`the console's first load is ${kb(total.gz)} gzipped, over the ${kb(FIRST_LOAD_BUDGET)} budget`);
}

main().catch((err) => {
  process.stderr.write(`build-web: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
