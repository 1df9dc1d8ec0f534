// Runs every test/**/*.test.ts with node:test (Node 20 has no glob support in --test).
// Extra arguments are passed to node, e.g. `npm test -- --test-name-pattern=status`.
// `--browser-only` (npm run test:browser) runs only the browser tests (test/web) and fails when
// Chromium is missing; a plain run skips them then, and says so first.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";

// test/reliability is its own run (npm run test:reliability): minutes of crash and flood rounds.
// test/executable too (npm run test:executable): it builds and runs the platform executables,
// which embed the pinned Node 24, so it runs once, not once per Node version like npm test.
const OWN_RUNS = [join("test", "reliability"), join("test", "executable")];
function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (OWN_RUNS.includes(join(dir, e.name)) ? [] : find(join(dir, e.name))) : e.name.endsWith(".test.ts") ? [join(dir, e.name)] : [],
  );
}
const args = process.argv.slice(2);
const browserOnly = args.includes("--browser-only");
const only = args.filter((a) => !a.startsWith("-"));
const flags = args.filter((a) => a.startsWith("-") && a !== "--browser-only");
// Two files run at a time. The longest start first, so that neither worker is left alone with a
// long file at the end (per-test times: --test-reporter=spec): the end-to-end and browser tests,
// longest first, then the long unit tests, then the rest by name. The release script's test
// rebuilds dist/, which the end-to-end tests run: it starts after them.
const LONGEST_FIRST = [
  "test/e2e/update-crash.test.ts",
  "test/e2e/update.test.ts",
  "test/web/console-overview-logs.test.ts",
  "test/web/console-backups.test.ts",
  "test/web/console-update-install.test.ts",
  "test/e2e/backup.test.ts",
  "test/e2e/tasks.test.ts",
  "test/web/console-tasks.test.ts",
  "test/e2e/restore-writes.test.ts",
  "test/e2e/server.test.ts",
  "test/e2e/*",
  "test/web/*",
  "test/update/release-script.test.ts",
  "test/contract/breaking.test.ts",
].map((f) => join(...f.split("/")));
function rank(file) {
  const exact = LONGEST_FIRST.indexOf(file);
  if (exact >= 0) return exact;
  const group = LONGEST_FIRST.indexOf(join(dirname(file), "*"));
  return group >= 0 ? group : LONGEST_FIRST.length;
}
const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const files = only.length > 0 ? only : find(browserOnly ? join("test", "web") : "test").sort((a, b) => rank(a) - rank(b) || byName(a, b));

const chromium = process.env.CARA_CHROMIUM ?? "/usr/bin/chromium";
const env = { ...process.env };
if (browserOnly) {
  if (!existsSync(chromium)) {
    process.stderr.write(`npm run test:browser: Chromium not found at ${chromium}. Install it (apt-get install chromium) or set CARA_CHROMIUM.\n`);
    process.exit(1);
  }
  env.CARA_BROWSER_TESTS = "required";
} else if (!existsSync(chromium) && files.some((f) => f.startsWith(join("test", "web")))) {
  process.stdout.write(
    `NOTE: Chromium not found at ${chromium}: the browser tests in test/web are SKIPPED (install it with apt-get install chromium; npm run test:browser fails without it).\n`,
  );
}
const result = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=480000", ...flags, ...files], {
  stdio: "inherit",
  env,
});
process.exit(result.status ?? 1);
