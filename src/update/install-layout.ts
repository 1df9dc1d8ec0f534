import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { pipeline } from "node:stream/promises";
import { constants, existsSync } from "node:fs";
import { lstat, mkdir, open, readFile, readdir, readlink, realpath, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
// tar is imported when a release is unpacked, not when the server starts (issue 17).
import type { ReadEntry } from "tar";
import { copyFileDurable, fsyncDir, writeFileDurable } from "../state/durable.js";
import { readLauncherScript } from "./launcher.js";
import { sortVersionsDescending } from "./release-versions.js";

const execFileAsync = promisify(execFile);

/**
 * The managed install layout (A/B), in one of the two release forms (../executable-form.ts):
 *   <install>/versions/<version>/   one release each: the unpacked tarball (package.json, bin/,
 *                                   dist/, node_modules/), or the platform executable `cara`
 *                                   (0755); both stamped with the artifact's SHA-256
 *   <install>/current -> versions/<v>   the version that runs (symlink, swapped atomically)
 *   <install>/previous -> versions/<v>  the version current pointed to before the last switch
 *   <install>/bin/cara                  the stable launcher: a copy of launcher.cjs (tarball form),
 *                                   or a copy of a platform executable, which acts as the
 *                                   launcher when it runs from there (executable form), with
 *                                   <install>/bin/.cara-launcher.json saying which protocol it has
 */
export type ReleaseForm = "tarball" | "executable";

/** The platform executable of an executable-form version: `versions/<v>/cara`. */
export const EXECUTABLE_FILE = "cara";
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
  const complete = names.filter((n) => !n.startsWith(".") && isInstalledVersion(join(installDir, "versions", n)));
  return sortVersionsDescending(complete);
}

/**
 * Whether a version directory holds a release of either form (a directory appears under
 * versions/ only by a rename of a complete, fsynced staging directory).
 */
function isInstalledVersion(dir: string): boolean {
  return existsSync(join(dir, EXECUTABLE_FILE)) || existsSync(join(dir, "bin", "cara.js"));
}

/** The form of an existing install, read from what `current` points to; undefined when there is none. */
export async function installForm(installDir: string): Promise<ReleaseForm | undefined> {
  let dir: string;
  try {
    dir = await realpath(join(installDir, "current"));
  } catch {
    return undefined;
  }
  if (existsSync(join(dir, EXECUTABLE_FILE))) return "executable";
  return existsSync(join(dir, "bin", "cara.js")) ? "tarball" : undefined;
}

/** Points `<install>/current` at a version atomically (symlink + rename), recording `previous`. */
export async function switchCurrent(installDir: string, version: string): Promise<{ from?: string; to: string }> {
  const target = join("versions", version);
  if (!isInstalledVersion(join(installDir, target))) throw new InstallError(`version v${version} is not installed in ${join(installDir, "versions")}`);
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

/** (Re)writes the stable launcher `<install>/bin/cara` of a tarball-form install. */
export async function writeLauncher(installDir: string): Promise<string> {
  const binDir = join(installDir, "bin");
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  const path = join(binDir, "cara");
  await writeFileDurable(path, await readLauncherScript(), { mode: 0o755 });
  return path;
}

/**
 * What `<install>/bin/.cara-launcher.json` records about an executable launcher. An executable's
 * launcher protocol cannot be read from its bytes (the bundler drops the protocol comment), so
 * the copy is described beside it; protocol 0 means "not known" (a copy made by `cara install`,
 * which did not run that executable): the first version that becomes ready replaces it.
 */
export interface ExecutableLauncherInfo {
  protocol: number;
  /** The version whose executable was copied. */
  version: string;
}

const LAUNCHER_INFO = ".cara-launcher.json";

/** The recorded protocol of an executable launcher (0 when unknown or unreadable: it is then refreshed). */
export async function executableLauncherInfo(installDir: string): Promise<ExecutableLauncherInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(join(installDir, "bin", LAUNCHER_INFO), "utf8")) as Partial<ExecutableLauncherInfo>;
    if (!Number.isSafeInteger(info.protocol) || typeof info.version !== "string") return undefined;
    return { protocol: info.protocol!, version: info.version };
  } catch {
    return undefined;
  }
}

/**
 * (Re)writes the launcher of an executable-form install: a durable copy of `executable` (a
 * version's `cara`, or the running executable) as `<install>/bin/cara` (0755), then the record of
 * what it is. Renamed into place, so a launcher that is running keeps its old file and a crash
 * leaves either launcher whole; the record is written second, so a crash between the two leaves
 * an understated protocol (refreshed again), never an overstated one.
 */
export async function writeExecutableLauncher(installDir: string, executable: string, info: ExecutableLauncherInfo): Promise<string> {
  const binDir = join(installDir, "bin");
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  const path = join(binDir, "cara");
  await copyFileDurable(executable, path, { mode: 0o755 });
  await writeFileDurable(join(binDir, LAUNCHER_INFO), `${JSON.stringify(info)}\n`, { mode: 0o644 });
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
  const tar = await import("tar");
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
            const type = (entry as ReadEntry).type;
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
    await renameIntoPlace(staging, dest, version);
    return { path: dest, reused: false };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Replaces `dest` (absent, unstamped or different) by the complete `staging` directory by
 * renames, so `dest` is missing only between two renames, never while a tree is being deleted.
 */
async function renameIntoPlace(staging: string, dest: string, version: string): Promise<void> {
  const versionsDir = dirname(dest);
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
}

/**
 * Installs a verified platform executable as `<install>/versions/<version>/cara` (0755): copied
 * into a hidden staging dir beside the target through one descriptor, hashed while it is copied
 * (it must still have `sha256`, the digest that was verified), stamped with that digest, fsynced
 * and renamed into place, as unpackRelease does for a tarball. An existing directory is reused
 * only when it holds the executable and its stamp equals `sha256` (resume after a crash).
 */
export async function stageExecutable(artifact: string, installDir: string, version: string, sha256: string): Promise<{ path: string; reused: boolean }> {
  const versionsDir = join(installDir, "versions");
  const dest = join(versionsDir, version);
  await mkdir(versionsDir, { recursive: true, mode: 0o755 });
  if ((await isExecutableFile(join(dest, EXECUTABLE_FILE))) && (await unpackedFrom(installDir, version)) === sha256) return { path: dest, reused: true };
  const staging = join(versionsDir, `.staging-${version}-${randomBytes(6).toString("hex")}`);
  await mkdir(staging, { mode: 0o755 });
  try {
    const actual = await copyFileDurable(artifact, join(staging, EXECUTABLE_FILE), { mode: 0o755 });
    if (actual !== sha256) throw new InstallError(`staged artifact changed between verify and apply (sha256 ${actual}, verified ${sha256})`);
    await requireReportedVersion(join(staging, EXECUTABLE_FILE), version);
    await writeFileDurable(join(staging, STAMP), `${sha256}\n`, { mode: 0o644 });
    await fsyncDir(staging);
    await renameIntoPlace(staging, dest, version);
    return { path: dest, reused: false };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The executable must be the version it is installed as. Its name (`cara-x86_64-linux`) carries
 * no version, and unlike the tarball (whose package.json is checked) nothing else ties it to one:
 * with a signing identity that does not pin the tag, a mirror could serve an older signed
 * release's executable under a newer version (a silent downgrade). The file is verified by now,
 * so running `version --json` runs signed code; it also proves the executable starts on this host
 * before anything switches to it.
 */
async function requireReportedVersion(executable: string, version: string): Promise<void> {
  let out: string;
  try {
    out = (await execFileAsync(executable, ["version", "--json"], { timeout: 60_000, maxBuffer: 64 * 1024, env: { PATH: process.env.PATH ?? "" } })).stdout;
  } catch (err) {
    throw new InstallError(
      `the executable of v${version} does not run on this host (\`cara version --json\` failed: ${(err as Error).message.split("\n")[0]})`,
    );
  }
  let reported: unknown;
  try {
    reported = (JSON.parse(out) as { version?: unknown }).version;
  } catch {
    reported = undefined;
  }
  if (reported !== version)
    throw new InstallError(
      `the executable published as v${version} reports ${typeof reported === "string" ? `v${reported}` : "no version"}; refusing it (a release must carry its own version's executable)`,
    );
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await lstat(path);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
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

/**
 * The executable form's ensureLayout: creates `versions/` and copies `version`'s executable as
 * `<install>/bin/cara` with protocol 0 (unknown: the first version that becomes ready replaces it
 * with itself, see UpdateManager.markHealthy) when the install has no launcher, or, for
 * `cara install` (`replaceUnknown`), when its launcher's protocol is not known. An update never
 * replaces an existing launcher with a version that has not yet become ready, and a launcher
 * with a known protocol is replaced only by a ready version with a newer one.
 */
export async function ensureExecutableLayout(installDir: string, version: string, options: { replaceUnknown: boolean }): Promise<void> {
  await mkdir(join(installDir, "versions"), { recursive: true, mode: 0o755 });
  if (await isExecutableFile(join(installDir, "bin", "cara"))) {
    if (!options.replaceUnknown) return;
    if (((await executableLauncherInfo(installDir))?.protocol ?? 0) > 0) return;
  }
  await writeExecutableLauncher(installDir, join(installDir, "versions", version, EXECUTABLE_FILE), { protocol: 0, version });
}
