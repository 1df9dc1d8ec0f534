import { isSea } from "node:sea";

/**
 * The two forms cara ships in (issue 18):
 * - the tarball `carapace-<v>.tar.gz` (JavaScript + node_modules), run by the host's Node;
 * - a platform executable `cara-<arch>-<os>` (a Node single-executable application: the bundled
 *   CLI and server injected into the official Node 24 binary), which needs no Node on the host.
 * The asset names follow the original Rust cara's (`cara-x86_64-linux`, `cara-aarch64-darwin`).
 */

/** True when this process is a platform executable (a Node SEA), not `node bin/cara.js`. */
export function runningAsExecutable(): boolean {
  try {
    return isSea();
  } catch {
    return false;
  }
}

const ARCH_NAMES: Record<string, string> = { x64: "x86_64", arm64: "aarch64" };
const OS_NAMES: Record<string, string> = { linux: "linux", darwin: "darwin" };

/**
 * The release asset name of the executable for a Node `platform`/`arch` pair
 * (`linux`/`x64` -> `cara-x86_64-linux`), or undefined for a platform cara is not built for.
 */
export function executableAssetName(platform: string = process.platform, arch: string = process.arch): string | undefined {
  const a = ARCH_NAMES[arch];
  const o = OS_NAMES[platform];
  return a && o ? `cara-${a}-${o}` : undefined;
}
