// Runs every test/**/*.test.ts with node:test (Node 20 has no glob support in --test).
// Extra arguments are passed to node, e.g. `npm test -- --test-name-pattern=status`.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith(".test.ts") ? [join(dir, e.name)] : [],
  );
}
const only = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const flags = process.argv.slice(2).filter((a) => a.startsWith("-"));
const files = only.length > 0 ? only : find("test").sort();
const result = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=240000", ...flags, ...files], { stdio: "inherit" });
process.exit(result.status ?? 1);
