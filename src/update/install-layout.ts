import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { constants, existsSync } from "node:fs";
import { lstat, mkdir, open, readFile, readdir, readlink, realpath, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
import * as tar from "tar";
import { fsyncDir, writeFileDurable } from "../state/durable.js";
import { readLauncherScript } from "./launcher.js";
import { sortVersionsDescending } from "./release-versions.js";

/**
 * The managed install layout (A/B):
 *   <install>/versions/<version>/   one unpacked release each (package.json, bin/, dist/, node_modules/)
 *   <install>/current -> versions/<v>   the version that runs (symlink, swapped atomically)
 *   <install>/previous -> versions/<v>  the version current pointed to before the last switch
 *   <install>/bin/cara                  the stable launcher (a copy of launcher.cjs)
 */
export type InstallInfo = { managed: true; installDir: string; runningVersion: string } | { managed: false; reason: string };

export class InstallError extends Error {}

/** Where the running code lives decides whether self-update applies. */
export async function detectInstall(packageRoot: string): Promise<InstallInfo> {
  let root: string;
  try {
    root = await realpath(packageRoot);
  } catch {
    root = packageRoot;
  }
  const versionsDir = dirname(root);
  const installDir = dirname(versionsDir);
  if (basename(versionsDir) === "versions" && existsSync(join(installDir, "bin", "cara")) && (await isSymlink(join(installDir, "current")))) {
    return { managed: true, installDir, runningVersion: basename(root) };
  }
  if (existsSync(join(root, ".git"))) {
    return {
      managed: false,
      reason: `running from a git checkout (${root}); update with \`git pull && npm ci && npm run build\`, or make a managed install with \`cara install --dir DIR\``,
    };
  }
  if (root.split(sep).includes("node_modules")) {
    return {
      managed: false,
      reason: `installed with npm (${root}); update with \`npm install -g carapace-cara@latest\`, or make a managed install with \`cara install --dir DIR\``,
    };
  }
  return { managed: false, reason: `not a managed install (${root}); make one with \`cara install --dir DIR\`` };
}

async function isSymlink(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSymbolicLink();
  } catch {
    return false;
  }
}

async function linkTarget(path: string): Promise<string | undefined> {
  try {
    return basename(await readlink(path));
  } catch {
    return undefined;
  }
}

export function currentVersion(installDir: string): Promise<string | undefined> {
  return linkTarget(join(installDir, "current"));
}

export function previousVersion(installDir: string): Promise<string | undefined> {
  return linkTarget(join(installDir, "previous"));
}

/** Complete versions under `<install>/versions/`, newest first. */
export async function installedVersions(installDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(join(installDir, "versions"));
  } catch {
    return [];
  }
  const complete = names.filter((n) => !n.startsWith(".") && existsSync(join(installDir, "versions", n, "bin", "cara.js")));
  return sortVersionsDescending(complete);
}

/** Points `<install>/current` at a version atomically (symlink + rename), recording `previous`. */
export async function switchCurrent(installDir: string, version: string): Promise<{ from?: string; to: string }> {
  const target = join("versions", version);
  if (!existsSync(join(installDir, target, "bin", "cara.js")))
    throw new InstallError(`version v${version} is not installed in ${join(installDir, "versions")}`);
  const from = await currentVersion(installDir);
  // previous first: a crash between the two leaves previous right and current unchanged.
  if (from && from !== version) await replaceLink(installDir, "previous", join("versions", from));
  await replaceLink(installDir, "current", target);
  await fsyncDir(installDir);
  return { ...(from ? { from } : {}), to: version };
}

async function replaceLink(dir: string, name: string, target: string): Promise<void> {
  const tmp = join(dir, `.${name}-${randomBytes(6).toString("hex")}`);
  await symlink(target, tmp);
  try {
    await rename(tmp, join(dir, name));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** (Re)writes the stable launcher `<install>/bin/cara`. */
export async function writeLauncher(installDir: string): Promise<string> {
  const binDir = join(installDir, "bin");
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  const path = join(binDir, "cara");
  await writeFileDurable(path, await readLauncherScript(), { mode: 0o755 });
  return path;
}

/** Entry types a release tarball may contain. */
const ALLOWED_TYPES = new Set(["File", "OldFile", "Directory"]);

/** The artifact SHA-256 a version directory was unpacked from (stamp written before it was renamed into place). */
export async function unpackedFrom(installDir: string, version: string): Promise<string | undefined> {
  try {
    return (await readFile(join(installDir, "versions", version, STAMP), "utf8")).trim();
  } catch {
    return undefined;
  }
}

const STAMP = ".artifact-sha256";

/**
 * Unpacks a verified release artifact into `<install>/versions/<version>/`: the file is read once
 * through one descriptor, hashed while it is extracted (it must still have `sha256`, the digest
 * that was verified), into a hidden staging dir beside the target; checked (top directory
 * `carapace-<version>/`, regular files and directories only, package.json names that version,
 * bin/cara.js present), stamped with the digest, every file fsynced, then renamed into place.
 * An existing directory is reused only when its stamp equals `sha256` (resume after a crash).
 */
export async function unpackRelease(artifact: string, installDir: string, version: string, sha256: string): Promise<{ path: string; reused: boolean }> {
  const versionsDir = join(installDir, "versions");
  const dest = join(versionsDir, version);
  await mkdir(versionsDir, { recursive: true, mode: 0o755 });
  if ((await isCompleteVersion(dest, version)) && (await unpackedFrom(installDir, version)) === sha256) return { path: dest, reused: true };
  const staging = join(versionsDir, `.staging-${version}-${randomBytes(6).toString("hex")}`);
  await mkdir(staging, { mode: 0o755 });
  try {
    const top = `carapace-${version}/`;
    let refused: string | undefined;
    const handle = await open(artifact, constants.O_RDONLY | constants.O_NOFOLLOW);
    const hash = createHash("sha256");
    try {
      const source = handle.createReadStream({ autoClose: false, highWaterMark: 1024 * 1024 });
      source.on("data", (chunk) => hash.update(chunk as Buffer));
      await pipeline(
        source,
        tar.x({
          cwd: staging,
          strip: 1,
          strict: true,
          preserveOwner: false,
          filter: (path, entry) => {
            const type = (entry as tar.ReadEntry).type;
            if (!path.startsWith(top) && path !== top.slice(0, -1)) refused ??= `entry '${path}' is outside ${top}`;
            else if (!ALLOWED_TYPES.has(type)) refused ??= `entry '${path}' is a ${type} (only files and directories are allowed)`;
            return refused === undefined;
          },
        }),
      );
    } finally {
      await handle.close();
    }
    const actual = hash.digest("hex");
    if (actual !== sha256) throw new InstallError(`staged artifact changed between verify and apply (sha256 ${actual}, verified ${sha256})`);
    if (refused) throw new InstallError(`refusing release artifact: ${refused}`);
    if (!(await isCompleteVersion(staging, version)))
      throw new InstallError(`release artifact for v${version} is not a carapace release (package.json version or bin/cara.js missing)`);
    await writeFileDurable(join(staging, STAMP), `${sha256}\n`, { mode: 0o644 });
    await fsyncTree(staging);
    // Replace an existing (unstamped or different) copy by renames, so `dest` is missing only
    // between two renames, never while a tree is being deleted.
    const aside = join(versionsDir, `.old-${version}-${randomBytes(6).toString("hex")}`);
    const hadOld = await rename(dest, aside).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return false;
        throw err;
      },
    );
    await rename(staging, dest);
    await fsyncDir(versionsDir);
    if (hadOld) await rm(aside, { recursive: true, force: true });
    return { path: dest, reused: false };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

async function isCompleteVersion(dir: string, version: string): Promise<boolean> {
  try {
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
    return pkg.name === "carapace-cara" && pkg.version === version && existsSync(join(dir, "bin", "cara.js"));
  } catch {
    return false;
  }
}

/** fsync every file and directory of a freshly unpacked tree (so a crash cannot leave a torn version). */
async function fsyncTree(root: string): Promise<void> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const paths = [root, ...entries.map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))];
  const queue = [...paths];
  const worker = async () => {
    for (let p = queue.pop(); p !== undefined; p = queue.pop()) {
      const handle = await open(p, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

/** Creates `versions/` and (re)writes the launcher. */
export async function ensureLayout(installDir: string): Promise<void> {
  await mkdir(join(installDir, "versions"), { recursive: true, mode: 0o755 });
  await writeLauncher(installDir);
}
