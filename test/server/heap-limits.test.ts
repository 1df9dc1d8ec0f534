import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { limitHeapGrowth } from "../../src/server/heap-limits.js";

const MODULE = fileURLToPath(new URL("../../src/server/heap-limits.ts", import.meta.url));

/** Runs a fresh node that (maybe) limits its heap, allocates 100+ MiB of short-lived garbage, and reports its new space. */
function newSpaceAfterGarbage(limit: boolean, nodeArgs: string[] = []): { flags: string[]; newSpaceMiB: number } {
  const script = `
    import v8 from "node:v8";
    import { limitHeapGrowth } from ${JSON.stringify(MODULE)};
    const flags = ${limit} ? limitHeapGrowth(process.execArgv, process.env.NODE_OPTIONS) : [];
    const keep = [];
    for (let i = 0; i < 2e6; i++) { const o = { a: i, b: [i, i + 1], s: "x" + i }; if (i % 50 === 0) keep.push(o); if (keep.length > 20000) keep.length = 0; }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    console.log(JSON.stringify({ flags, newSpaceMiB: ns.space_size / 1048576 }));`;
  const out = execFileSync(process.execPath, ["--import", "tsx", ...nodeArgs, "--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, NODE_OPTIONS: "" },
  });
  return JSON.parse(out.trim().split("\n").at(-1) as string);
}

test("limitHeapGrowth keeps the young generation at its initial size even when set after the heap exists", () => {
  const unlimited = newSpaceAfterGarbage(false);
  const limited = newSpaceAfterGarbage(true);
  assert.deepEqual(limited.flags, ["--semi-space-growth-factor=1", "--heap-growing-percent=50"]);
  assert.ok(unlimited.newSpaceMiB >= 16, `without the limit the new space grows (${unlimited.newSpaceMiB} MiB)`);
  // Whatever it grew to before the call (loading the TypeScript loader may double it once), no further.
  assert.ok(limited.newSpaceMiB <= 4, `with the limit it stays at 2 to 4 MiB (${limited.newSpaceMiB} MiB)`);
});

test("limitHeapGrowth leaves the heap alone when the operator chose heap flags", () => {
  assert.deepEqual(limitHeapGrowth(["--max-semi-space-size=32"], undefined), []);
  assert.deepEqual(limitHeapGrowth([], "--max-old-space-size=4096 --enable-source-maps"), []);
  assert.deepEqual(limitHeapGrowth(["--optimize_for_size"], undefined), []);
  const chosen = newSpaceAfterGarbage(true, ["--max-semi-space-size=8"]);
  assert.deepEqual(chosen.flags, []);
  assert.ok(chosen.newSpaceMiB >= 8, `the operator's semi-space size is kept (${chosen.newSpaceMiB} MiB)`);
});
