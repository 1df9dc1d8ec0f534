import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./cara.js";

/** The README's text. */
export const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The body of the first ```lang block after `marker` in the README (so tests run what it shows). */
export function readmeBlock(marker: string, lang: string): string {
  const at = README.indexOf(marker);
  if (at < 0) throw new Error(`README has no '${marker}'`);
  const open = README.indexOf(`\`\`\`${lang}\n`, at);
  const close = README.indexOf("\n```", open + 1);
  if (open < 0 || close < 0) throw new Error(`README has no ${lang} block after '${marker}'`);
  return README.slice(open + lang.length + 4, close + 1);
}
