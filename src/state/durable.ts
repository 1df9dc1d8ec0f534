import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, unlink, mkdir, lstat, chmod, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** fsync a directory so that a rename or create inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The one durable-write helper: every durable file in the state dir is written through it.
 * temp file beside the target (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) -> write -> fsync -> rename over
 * the target -> fsync the directory. On any failure the temp file is removed, the target is left
 * as it was, and the error is thrown: the caller must not acknowledge the change.
 */
export async function writeFileDurable(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  // writeFile loops over short writes itself.
  await replaceDurably(path, options.mode ?? FILE_MODE, (handle) => handle.writeFile(data));
}

/**
 * writeFileDurable for a large file copied from `source` (a platform executable is ~100 MB: it is
 * streamed, never held in memory): the same temp file, exact mode, fsync, rename, fsync of the
 * directory. `source` is opened with O_NOFOLLOW. Returns the SHA-256 (hex) of the bytes written,
 * so a caller can prove the copy is the file it verified.
 */
export async function copyFileDurable(source: string, path: string, options: { mode?: number } = {}): Promise<string> {
  const input = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return await replaceDurably(path, options.mode ?? FILE_MODE, async (handle) => {
      const hash = createHash("sha256");
      const buf = Buffer.allocUnsafe(1024 * 1024);
      for (;;) {
        const { bytesRead } = await input.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        await writeFully(handle, chunk, null);
      }
      return hash.digest("hex");
    });
  } finally {
    await input.close();
  }
}

/** The body of both: `fill` writes the temp file, then mode, fsync, rename, directory fsync. */
async function replaceDurably<T>(path: string, mode: number, fill: (handle: FileHandle) => Promise<T>): Promise<T> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  // Opened before the try: a temp file this call did not create is never removed.
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  let renamed = false;
  try {
    let result: T;
    try {
      result = await fill(handle);
      // open() applies the umask; make the mode exact.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
    renamed = true;
    await fsyncDir(dir);
    return result;
  } catch (err) {
    throw withPath(err, path);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/**
 * Names the file in an I/O error that lacks it (errors from a file handle carry no path), so
 * that "no space left" can say where: the operator needs to know which filesystem to free.
 */
export function withPath(err: unknown, path: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof Error && e.path === undefined) e.path = path;
  return err;
}

/**
 * Writes all of `data` at `position` (or at the current position when null). A write may be
 * short: on a nearly full filesystem Linux writes what fits and reports the count without an
 * error; the next write then fails with ENOSPC. Ignoring the count would let a caller fsync and
 * acknowledge bytes that were never written, so this loops until everything is written or the
 * write fails. A zero-byte write is treated as the disk being full.
 */
export async function writeFully(handle: FileHandle, data: Uint8Array, position: number | null): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position === null ? null : position + done);
    if (bytesWritten <= 0) {
      throw Object.assign(new Error("ENOSPC: no space left on device, write (no bytes were written)"), { code: "ENOSPC", syscall: "write" });
    }
    done += bytesWritten;
  }
}

/** Appends bytes to a file and fsyncs it (journal writes). Creates the file 0600 when missing. */
export async function appendFileDurable(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, FILE_MODE);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates a private directory (0700) if missing and refuses one that is a symlink or not a
 * directory. Returns true when it was created.
 */
export async function ensurePrivateDir(path: string): Promise<boolean> {
  let created = false;
  try {
    await mkdir(path, { mode: DIR_MODE });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = await lstat(path);
  if (st.isSymbolicLink()) {
    throw new Error(`refusing to use ${path}: it is a symbolic link (remove it or point CARAPACE_STATE_DIR at the real directory)`);
  }
  if (!st.isDirectory()) throw new Error(`refusing to use ${path}: it exists and is not a directory`);
  if ((st.mode & 0o777) !== DIR_MODE) await chmod(path, DIR_MODE);
  if (created) await fsyncDir(dirname(path)).catch(() => undefined);
  return created;
}
