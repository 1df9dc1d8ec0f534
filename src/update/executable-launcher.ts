/**
 * The launcher of an executable-form install is a copy of a platform executable at
 * `<install>/bin/cara` (install-layout.ts writeExecutableLauncher). The executable has no separate
 * launcher program, so it decides at start what it is: run from `<install>/bin/cara` of a managed
 * install, it is that install's launcher and runs launcher.cjs's logic (the same supervision and
 * rollback protocol as the script launcher), starting `versions/<v>/cara`; run from anywhere else
 * (`versions/<v>/cara` itself, a download), it is cara.
 */
import { existsSync, lstatSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { runningAsExecutable } from "../executable-form.js";
import { launcher } from "./launcher.js";

/**
 * The install dir when `executable` (resolved through symlinks, so a `/usr/local/bin/cara` link
 * to it counts) is `<install>/bin/cara` of a managed install: `<install>/versions/` exists and
 * `<install>/current` is a symlink.
 */
export function launcherInstallDir(executable: string): string | undefined {
  let real: string;
  try {
    real = realpathSync(executable);
  } catch {
    return undefined;
  }
  const bin = dirname(real);
  if (basename(real) !== "cara" || basename(bin) !== "bin") return undefined;
  const installDir = dirname(bin);
  try {
    if (!lstatSync(join(installDir, "current")).isSymbolicLink()) return undefined;
  } catch {
    return undefined;
  }
  return existsSync(join(installDir, "versions")) ? installDir : undefined;
}

/**
 * When this process is a platform executable running as an install's launcher, acts as that
 * launcher for `argv` and returns true; the launcher then ends the process itself (after the
 * supervised server stops, or with the command it hands over to). Returns false otherwise.
 */
export function runAsInstallLauncher(argv: string[]): boolean {
  if (!runningAsExecutable()) return false;
  const installDir = launcherInstallDir(process.execPath);
  if (!installDir) return false;
  launcher.launch(installDir, argv, join(installDir, "bin", "cara"), false);
  return true;
}
