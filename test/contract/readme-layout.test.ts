// The README's layout table is how a newcomer finds code: every area of src/ and every service
// file is in it, and every path it names exists.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers/cara.js";
import { README } from "../helpers/readme.js";

const layout = README.slice(README.indexOf("### Layout: where to find things"), README.indexOf("`.ci/run` | what CI runs"));

test("README layout: every src/ area and service file is named, and every path named exists", () => {
  assert.ok(layout.length > 100, "the README has a layout table");
  const areas = readdirSync(join(ROOT, "src"), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => `src/${e.name}/`);
  for (const area of areas) assert.ok(layout.includes(`\`${area}`), `${area} is in the layout table`);
  for (const area of areas) {
    for (const f of readdirSync(join(ROOT, area))) {
      if (/service\.ts$/.test(f)) assert.ok(layout.includes(`\`${f}\``) || layout.includes(`${area}${f}`), `${area}${f} is named`);
    }
  }
  for (const [, path] of layout.matchAll(/`((?:src|test|proto|bench|monitoring|scripts)\/[^`<*]+?)`/g)) {
    assert.ok(existsSync(join(ROOT, path!)), `${path} exists`);
  }
});
