import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package's own root and version, read once from the nearest package.json named carapace-cara. */
function readPackage(): { root: string; version: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "carapace-cara" && typeof pkg.version === "string") return { root: dir, version: pkg.version };
    } catch {
      // not here; look one level up
    }
    dir = dirname(dir);
  }
  return { root: dirname(fileURLToPath(import.meta.url)), version: "0.0.0-unknown" };
}

const PACKAGE = readPackage();
export const VERSION = PACKAGE.version;
/** Directory holding the running code's package.json (a git checkout, an npm install or `<install>/versions/<v>`). */
export const PACKAGE_ROOT = PACKAGE.root;
