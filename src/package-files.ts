/**
 * Files shipped with cara that the code reads at run time (the pinned Sigstore trusted root, the
 * built console, the launcher script), by their path relative to the package root
 * ("assets/sigstore/trusted_root.json", "dist/web/index.html").
 *
 * From the tarball or a checkout they are files under PACKAGE_ROOT. A platform executable
 * (src/executable-form.ts) has no package directory: scripts/build-executable.mjs embeds each of
 * these files as a Node SEA asset whose key is that same relative path, and they are read with
 * node:sea. Code that reads such a file goes through here, so both forms read the same bytes.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as sea from "node:sea";
import { runningAsExecutable } from "./executable-form.js";
import { PACKAGE_ROOT } from "./package-info.js";

/** Where a shipped file is, for messages: a path, or the executable and the embedded name. */
export function packageFileLabel(rel: string): string {
  return runningAsExecutable() ? `${process.execPath} (embedded ${rel})` : join(PACKAGE_ROOT, rel);
}

/** The asset keys embedded in this executable (Node 24's sea.getAssetKeys; @types/node 20 does not declare it yet). */
function embeddedKeys(): string[] {
  const getAssetKeys = (sea as { getAssetKeys?: () => string[] }).getAssetKeys;
  if (!getAssetKeys) throw new Error("this Node has no sea.getAssetKeys(); cara executables are built on Node 24");
  return getAssetKeys();
}

/** A shipped file's bytes. A missing file fails with code ENOENT, in both forms. */
export async function readPackageFile(rel: string): Promise<Buffer> {
  if (!runningAsExecutable()) return readFile(join(PACKAGE_ROOT, rel));
  if (!embeddedKeys().includes(rel)) {
    throw Object.assign(new Error(`ENOENT: ${rel} is not embedded in ${process.execPath}`), { code: "ENOENT" });
  }
  // getAsset copies the bytes out of the executable's read-only section, so callers may keep them.
  return Buffer.from(sea.getAsset(rel));
}

/**
 * An embedded directory of this executable (e.g. "dist/web"), read like the directory on disk:
 * `read("assets/app.js")` gives a file's bytes (undefined when absent), `list("assets")` the names
 * of the files directly in a subdirectory. Only for a running executable.
 */
export interface EmbeddedDirectory {
  readonly label: string;
  read(rel: string): Promise<Buffer | undefined>;
  list(rel: string): Promise<string[]>;
}

export function embeddedDirectory(dir: string): EmbeddedDirectory {
  const keys = new Set(embeddedKeys());
  return {
    label: packageFileLabel(dir),
    read: async (rel) => (keys.has(`${dir}/${rel}`) ? Buffer.from(sea.getAsset(`${dir}/${rel}`)) : undefined),
    list: async (rel) => {
      const prefix = `${dir}/${rel}/`;
      return [...keys].filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes("/")).map((k) => k.slice(prefix.length));
    },
  };
}
