/**
 * The stable launcher `<install>/bin/cara` of a managed install is the program in
 * ./launcher.cjs: a checked CommonJS file (allowJs + @ts-check) that needs only Node, copied into
 * the install by install-layout.ts writeLauncher and shipped in release tarballs as
 * dist/src/update/launcher.cjs. This module gives the rest of the updater its text and protocol.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { runningAsExecutable } from "../executable-form.js";
import { readPackageFile } from "../package-files.js";
import launcherModule from "./launcher.cjs";

/** What launcher.cjs exports when it is required rather than run. */
export interface LauncherModule {
  /** The launcher protocol; its `// cara-launcher-protocol: N` line says the same. */
  PROTOCOL: number;
  /** Exit code by which the server asks to be restarted. */
  RESTART: number;
  /** Options of `cara start` that take a value. */
  START_VALUE_OPTIONS: readonly string[];
  /** rollback.json `startupState` values the launcher reads or writes. */
  MARKER_STATES: Readonly<Record<"pending" | "started" | "rolledBack" | "rollbackFailed", string>>;
  stateDir(argv: readonly string[], env: NodeJS.ProcessEnv): string;
  startsServer(argv: readonly string[]): boolean;
  /** The file name of a version's platform executable (`versions/<v>/cara`). */
  EXECUTABLE: string;
  /**
   * Acts as the launcher of `installDir` for one command line (supervises a server start, runs
   * other commands on the current version); it ends the process itself. `hasNode` false: the
   * caller is a platform executable, which can run only executable versions.
   */
  launch(installDir: string, argv: string[], launcherFile: string, hasNode: boolean): void;
}

/** The launcher's file next to this module (src/ or dist/); a platform executable has none, it reads the embedded copy. */
export const LAUNCHER_FILE = fileURLToPath(new URL("./launcher.cjs", import.meta.url));
// A static import (not a require of LAUNCHER_FILE) so that a bundler follows it: the platform
// executable carries the launcher's logic inside itself (./executable-launcher.ts).
export const launcher: LauncherModule = launcherModule;
export const LAUNCHER_PROTOCOL = launcher.PROTOCOL;

/** The launcher program's text, as written to `<install>/bin/cara`. */
export async function readLauncherScript(): Promise<string> {
  // A platform executable carries the file as built into dist/ (scripts/build-executable.mjs).
  if (runningAsExecutable()) return (await readPackageFile("dist/src/update/launcher.cjs")).toString("utf8");
  return readFile(LAUNCHER_FILE, "utf8");
}

/** The protocol number written in a launcher script, 0 when it has none (the first launchers). */
export function launcherProtocolOf(script: string): number {
  const m = /^\/\/ cara-launcher-protocol: (\d+)$/m.exec(script);
  return m ? Number(m[1]) : 0;
}
