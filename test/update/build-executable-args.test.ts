import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers/cara.js";

// The build itself is tested by npm run test:executable; its usage errors fail before any build,
// so they are checked here, in npm test.
const SCRIPT = join(ROOT, "scripts", "build-executable.mjs");
const run = (args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { cwd: ROOT, encoding: "utf8" });

test("build-executable.mjs: usage errors exit 2 with one line, before building anything", () => {
  const cases: [string[], string][] = [
    [["--out", "x"], "--version is required"],
    [["--version", "1.2.3"], "--out is required"],
    [["--version"], "--version needs a value"],
    [["--version", "1.2.3", "--out", "x", "--bogus"], "unknown argument --bogus"],
    [["--version", "v1.2.3", "--out", "x", "--no-build"], 'version "v1.2.3" is not a valid semver version (e.g. 1.2.3, no leading v)'],
    [["--version", "1.2.3", "--out", "x", "--platform", "darwin-arm64", "--no-build"], 'unknown platform "darwin-arm64" (one of linux-x64, linux-arm64)'],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.deepEqual([r.status, r.stdout, r.stderr], [2, "", `build-executable: ${message}\n`], args.join(" "));
  }
  const help = run(["--help"]);
  assert.deepEqual(
    [help.status, help.stdout],
    [0, "Usage: node scripts/build-executable.mjs --version V --out DIR [--platform linux-x64|linux-arm64] [--no-build]\n"],
  );
});
