// npm run test:reliability: the crash, disk-full, hostile-input, connection and auth rounds
// (test/reliability) plus the update crash tests, seeded (RELIABILITY_SEED, fixed default) and
// one file at a time (they measure memory and timeouts). Prints what was tried and what held,
// and writes it to test-output/reliability/summary.md for the README's Reliability table.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = join("test-output", "reliability");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const seed = process.env.RELIABILITY_SEED ?? "20261205";
const files = [
  ...readdirSync(join("test", "reliability"))
    .filter((n) => n.endsWith(".test.ts"))
    .sort()
    .map((n) => join("test", "reliability", n)),
  join("test", "e2e", "update-crash.test.ts"),
];
const started = Date.now();
const result = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", "--test-timeout=600000", ...process.argv.slice(2), ...files], {
  stdio: "inherit",
  env: { ...process.env, RELIABILITY_SEED: seed },
});
const rows = readdirSync(out)
  .filter((n) => n.endsWith(".json"))
  .flatMap((n) => JSON.parse(readFileSync(join(out, n), "utf8")).rows);
const minutes = ((Date.now() - started) / 60_000).toFixed(1);
const table = [
  `Seed ${seed}, ${new Date().toISOString().slice(0, 10)}, ${minutes} min, Node ${process.version}.`,
  "",
  "| area | tried | held | what |",
  "|---|---:|---:|---|",
  ...rows.map((r) => `| ${r.area} | ${r.tried} | ${r.held} | ${r.unit} |`),
].join("\n");
writeFileSync(join(out, "summary.md"), `${table}\n`);
process.stdout.write(`\n${table}\n\n(update crash rounds: test/e2e/update-crash.test.ts, pass/fail above)\n`);
process.exit(result.status ?? 1);
