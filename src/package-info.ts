import { readFileSync } from "node:fs";
import { getAsset } from "node:sea";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runningAsExecutable } from "./executable-form.js";

/** The package's own root and version, read once from the nearest package.json named carapace-cara. */
function readPackage(): { root: string; version: string } {
  if (runningAsExecutable()) {
    // The executable carries the package.json it was built with as an embedded asset (the build
    // writes the release's version into it, as release.mjs does into the tarball's). Its "root"
    // is the directory holding the executable: the executable's files are embedded, not there.
    const pkg = JSON.parse(getAsset("package.json", "utf8")) as { version: string };
    return { root: dirname(process.execPath), version: pkg.version };
  }
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
/**
 * Directory holding the running code's package.json (a git checkout, an npm install or
 * `<install>/versions/<v>`); for a platform executable, the directory holding the executable.
 */
export const PACKAGE_ROOT = PACKAGE.root;
