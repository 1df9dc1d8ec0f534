/**
 * What a backup contains: the sections of a state directory, what is never archived and why,
 * and the mapping between state-dir paths and archive paths.
 *
 * Section mapping (archive path ⇄ state-dir path):
 *
 *   section   kind   state dir            archive
 *   config    file   config.json          config/config.json
 *   tasks     dir    tasks/…              tasks/…        (queue.json, queue.journal, *.corrupt.*)
 *   sessions  dir    sessions/…           sessions/…
 *   memory    dir    memory/…             memory/…       (inside the state dir, unlike the
 *                                                         original Rust cara's home-based path)
 *   cron      dir    cron/…               cron/…
 *   usage     file   usage.json           usage/usage.json
 *
 * Every archive path starts with its section name, so a section is a prefix and a restore can
 * swap it as a unit. A "file" section holds exactly one file: `config/other` or `usage/x` is
 * outside every section (the original Rust cara's quirk of dropping any `usage/*` into the state
 * root is gone). A section is present in a backup when its file / directory exists, even with no files:
 * restoring an empty `tasks` section empties `tasks/`.
 *
 * Never archived (see EXCLUDED): `auth/`, `cara.lock`, `cara.address`, `updates/`, `backups/`, `logs/`, and the
 * temp files of in-progress durable writes. Any other top-level entry is not silently swept in:
 * it is reported as excluded ("unknown entry"), so `cara backup` tells the operator about it, and
 * becoming part of backups takes a new section (an explicit, reviewed decision).
 *
 * Only regular files are archived. A symbolic link, FIFO, socket or device inside a section (or
 * a section root that is a link) makes the listing fail, naming the path: it is neither followed
 * nor silently skipped.
 */
import { lstatSync, type Dirent, type Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

export type SectionName = "config" | "tasks" | "sessions" | "memory" | "cron" | "usage";

export interface SectionSpec {
  name: SectionName;
  /** "file": exactly one file; "dir": a directory tree of regular files. */
  kind: "file" | "dir";
  /** Path relative to the state dir: the file, or the directory. */
  statePath: string;
  /** Path inside the archive: the file (`config/config.json`), or the directory (`tasks`). */
  archivePath: string;
  /** For people: what the section holds. */
  description: string;
}

/** The sections, in archive order. */
export const SECTIONS: Readonly<Record<SectionName, SectionSpec>> = Object.freeze({
  config: { name: "config", kind: "file", statePath: "config.json", archivePath: "config/config.json", description: "server configuration" },
  tasks: { name: "tasks", kind: "dir", statePath: "tasks", archivePath: "tasks", description: "durable task queue (queue.json + journal)" },
  sessions: { name: "sessions", kind: "dir", statePath: "sessions", archivePath: "sessions", description: "session metadata and histories" },
  memory: { name: "memory", kind: "dir", statePath: "memory", archivePath: "memory", description: "memory stores" },
  cron: { name: "cron", kind: "dir", statePath: "cron", archivePath: "cron", description: "cron jobs" },
  usage: { name: "usage", kind: "file", statePath: "usage.json", archivePath: "usage/usage.json", description: "usage counters" },
});

/** Section names in archive order. */
export const SECTION_NAMES: readonly SectionName[] = Object.freeze(Object.keys(SECTIONS) as SectionName[]);

/** Archive entry names that are not section files. */
export const MARKER_NAME = ".carapace-backup";
export const MANIFEST_NAME = "manifest.json";

export interface Exclusion {
  /** Relative to the state dir; directories end with "/". */
  path: string;
  reason: string;
}

/** Top-level state-dir entries that a backup never contains, and why (printed by `cara backup`). */
export const EXCLUDED: readonly Exclusion[] = Object.freeze([
  { path: "auth/", reason: "secrets (token, server secret): never archived; back them up separately, a restore keeps the current ones" },
  { path: "cara.lock", reason: "lock file of the running server" },
  { path: "cara.address", reason: "where the running server listens" },
  { path: "updates/", reason: "update staging: downloaded releases and the update transaction" },
  { path: "backups/", reason: "backup archives themselves (never nested into a new backup)" },
  { path: "logs/", reason: "logs: not state needed by a restore" },
]);

export const TEMP_REASON = "temporary file of an in-progress write";
export const UNKNOWN_REASON = "unknown entry: not part of any backup section, not archived (copy it separately if you need it)";
export const NOT_SELECTED_REASON = "section not selected";

/** Temp files of writeFileDurable (`.<name>.tmp-<pid>-<hex>`) and of the lock (`.cara.lock.<pid>.<hex>`). */
const TEMP_FILE = /^\..+\.tmp-\d+-[0-9a-f]+$|^\.cara\.lock\.\d+\.[0-9a-f]+$/;

export function isSectionName(name: string): name is SectionName {
  return Object.hasOwn(SECTIONS, name);
}

/** A section name that is not one of SECTION_NAMES. */
export class UnknownSectionError extends Error {}

/** Throws for an unknown section name, listing the known ones (the message the API returns). */
export function checkSectionNames(names: readonly string[]): SectionName[] {
  const out: SectionName[] = [];
  for (const name of names) {
    if (!isSectionName(name)) throw new UnknownSectionError(`unknown backup section '${name}' (known: ${SECTION_NAMES.join(", ")})`);
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/** The section a (safe) archive file path belongs to, or undefined when it is outside every section. */
export function sectionOf(archivePath: string): SectionName | undefined {
  const slash = archivePath.indexOf("/");
  if (slash <= 0) return undefined;
  const head = archivePath.slice(0, slash);
  if (!isSectionName(head)) return undefined;
  const spec = SECTIONS[head];
  if (spec.kind === "file") return archivePath === spec.archivePath ? head : undefined;
  return archivePath.length > slash + 1 ? head : undefined;
}

/** True for a directory entry the reader tolerates: a directory section root or a directory inside one. */
export function isSectionDirectory(archivePath: string): boolean {
  const head = archivePath.split("/", 1)[0] ?? "";
  if (!isSectionName(head)) return false;
  const spec = SECTIONS[head];
  if (spec.kind === "file") return archivePath === head; // `config/` itself, harmless
  return true;
}

/** State-dir relative path (`/`-separated) of an archive file path; undefined outside sections. */
export function stateRelPath(archivePath: string): string | undefined {
  const section = sectionOf(archivePath);
  if (section === undefined) return undefined;
  const spec = SECTIONS[section];
  return spec.kind === "file" ? spec.statePath : archivePath; // dir sections: same path
}

/** Archive path of a state-dir relative path inside `section`. */
export function archivePathOf(section: SectionName, relPath: string): string {
  const spec = SECTIONS[section];
  return spec.kind === "file" ? spec.archivePath : relPath;
}

/** Escapes control characters for messages: `tasks/a\nb` → `tasks/a\nb` (literally backslash-n). */
export function displayPath(path: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  let out = path.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    const code = c.charCodeAt(0);
    if (code === 0) return "\\0";
    if (code === 10) return "\\n";
    if (code === 13) return "\\r";
    if (code === 9) return "\\t";
    return `\\x${code.toString(16).padStart(2, "0")}`;
  });
  if (out.length > max) out = `${out.slice(0, max)}…`;
  return out;
}

export const MAX_PATH_BYTES = 4096;

/**
 * The rule a path breaks ("escapes the state directory", "is an absolute path", ...), or
 * undefined for a clean relative path: no NUL or control characters, not invalid UTF-8, at most
 * 4096 bytes, no backslash, not absolute (nor a drive prefix), no `..`, no empty or `.` segments.
 */
export function unsafePathRule(path: string): string | undefined {
  if (path === "") return "has an empty name";
  if (path.includes("\u0000")) return "has a NUL character in its name";
  // eslint-disable-next-line no-control-regex
  if (/[\u0001-\u001f\u007f-\u009f]/.test(path)) return "has a control character in its name";
  if (path.includes("\uFFFD")) return "has a name that is not valid UTF-8";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `has a name longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes("\\")) return "contains a backslash";
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "is an absolute path";
  const segments = path.split("/");
  if (segments.includes("..")) return "escapes the state directory";
  if (segments.some((s) => s === "" || s === ".")) return "has an empty or '.' path segment";
  return undefined;
}

/** Like unsafePathRule, as a sentence naming the entry: "entry 'tasks/../../x' escapes the state directory". */
export function unsafePathReason(path: string): string | undefined {
  const rule = unsafePathRule(path);
  return rule === undefined ? undefined : `entry '${displayPath(path)}' ${rule}`;
}

export interface StateFile {
  section: SectionName;
  /** Relative to the state dir, `/`-separated (e.g. "config.json", "tasks/queue.json"). */
  relPath: string;
  /** Path inside the archive (e.g. "config/config.json", "tasks/queue.json"). */
  archivePath: string;
  absPath: string;
  size: number;
  /** Permission bits (mode & 0o777). */
  mode: number;
  mtimeMs: number;
}

export interface StateListing {
  /** Regular files, in archive order (section order, then path). */
  files: StateFile[];
  /** Sections present in the state dir (their file or directory exists), in archive order. */
  sections: SectionName[];
  /** What was left out and why (fixed exclusions present, unknown entries, temp files, unselected sections). */
  excluded: Exclusion[];
}

/** A state dir that cannot be backed up as it is; `problems` names every offending path. */
export class StateListingError extends Error {
  constructor(readonly problems: Exclusion[]) {
    const first = problems[0];
    super(`cannot back up ${first?.path ?? "state"}: ${first?.reason ?? "unknown problem"}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}`);
    this.name = "StateListingError";
  }
}

function kindOf(st: {
  isSymbolicLink(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isDirectory(): boolean;
}): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isDirectory()) return "a directory";
  return "not a regular file";
}

const NOT_REGULAR = "; backups contain only regular files and never follow links (replace it with a regular file or move it out of the state dir)";

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Lists the regular files of the selected sections (default: all) in `stateDir`, and what is
 * excluded. Throws StateListingError when a section holds a symlink or special file, or a name
 * the archive format refuses (control characters, backslashes). Files that vanish while listing
 * are skipped (the caller pauses writers for a consistent snapshot).
 */
export async function listStateFiles(stateDir: string, sections?: readonly string[]): Promise<StateListing> {
  const selected = new Set<SectionName>(sections === undefined || sections.length === 0 ? SECTION_NAMES : checkSectionNames(sections));
  const rootStat = await lstat(stateDir);
  if (!rootStat.isDirectory()) throw new StateListingError([{ path: stateDir, reason: `the state dir is ${kindOf(rootStat)}` }]);

  const files: StateFile[] = [];
  const excluded: Exclusion[] = [];
  const errors: Exclusion[] = [];
  const present: SectionName[] = [];
  const bySectionTop = new Map<string, SectionSpec>(SECTION_NAMES.map((n) => [SECTIONS[n].statePath, SECTIONS[n]]));
  const fixed = new Map<string, Exclusion>(EXCLUDED.map((e) => [e.path.replace(/\/$/, ""), e]));

  const top = await readdir(stateDir, { withFileTypes: true });
  top.sort((a, b) => compareBytes(a.name, b.name));
  const walks: Promise<void>[] = [];
  for (const entry of top) {
    const spec = bySectionTop.get(entry.name);
    if (spec) {
      if (!selected.has(spec.name)) {
        excluded.push({ path: spec.kind === "dir" ? `${entry.name}/` : entry.name, reason: `${NOT_SELECTED_REASON} (${spec.name})` });
        continue;
      }
      walks.push(collectSection(stateDir, spec, files, errors, excluded).then((ok) => void (ok && present.push(spec.name))));
      continue;
    }
    const fixedExclusion = fixed.get(entry.name);
    if (fixedExclusion) excluded.push(fixedExclusion);
    else if (TEMP_FILE.test(entry.name)) excluded.push({ path: entry.name, reason: TEMP_REASON });
    else excluded.push({ path: entry.isDirectory() ? `${entry.name}/` : entry.name, reason: UNKNOWN_REASON });
  }
  await Promise.all(walks);
  if (errors.length > 0) {
    errors.sort((a, b) => compareBytes(a.path, b.path));
    throw new StateListingError(errors);
  }
  const order = (s: SectionName) => SECTION_NAMES.indexOf(s);
  files.sort((a, b) => order(a.section) - order(b.section) || compareBytes(a.archivePath, b.archivePath));
  present.sort((a, b) => order(a) - order(b));
  excluded.sort((a, b) => compareBytes(a.path, b.path));
  return { files, sections: present, excluded };
}

/** Adds one section's files; returns false when the section is absent. */
async function collectSection(stateDir: string, spec: SectionSpec, files: StateFile[], errors: Exclusion[], excluded: Exclusion[]): Promise<boolean> {
  const rootAbs = join(stateDir, spec.statePath);
  const st = await lstatOrUndefined(rootAbs);
  if (!st) return false;
  if (spec.kind === "file") {
    if (!st.isFile()) {
      errors.push({ path: spec.statePath, reason: `it is ${kindOf(st)}${NOT_REGULAR}` });
      return true;
    }
    files.push({
      section: spec.name,
      relPath: spec.statePath,
      archivePath: spec.archivePath,
      absPath: rootAbs,
      size: st.size,
      mode: st.mode & 0o777,
      mtimeMs: st.mtimeMs,
    });
    return true;
  }
  if (!st.isDirectory()) {
    errors.push({ path: `${spec.statePath}/`, reason: `the section root is ${kindOf(st)}${NOT_REGULAR}` });
    return true;
  }
  const stack: string[] = [spec.statePath];
  let sliceStart = performance.now();
  while (stack.length > 0) {
    const relDir = stack.pop()!;
    let entries: Dirent[];
    try {
      entries = await readdir(join(stateDir, relDir), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    // lstat with synchronous calls (metadata of a directory just read is cached: microseconds
    // each), letting the event loop run every few milliseconds. Thousands of concurrent
    // promise-based lstats cost tens of MiB of memory and more time, while writes are held.
    for (const e of entries) {
      const rel = `${relDir}/${e.name}`;
      const s = e.isDirectory() || e.isFile() ? lstatSyncOrUndefined(join(stateDir, rel)) : undefined;
      if (performance.now() - sliceStart > 10) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
      const bad = unsafePathRule(rel);
      if (bad) {
        errors.push({ path: displayPath(rel), reason: `the archive format refuses its name (it ${bad})` });
        continue;
      }
      if (e.isDirectory()) {
        if (s?.isDirectory()) stack.push(rel);
        continue;
      }
      if (!e.isFile()) {
        errors.push({ path: rel, reason: `it is ${kindOf(e)}${NOT_REGULAR}` });
        continue;
      }
      if (!s) continue; // vanished
      if (!s.isFile()) {
        errors.push({ path: rel, reason: `it is ${kindOf(s)}${NOT_REGULAR}` });
        continue;
      }
      if (TEMP_FILE.test(e.name)) {
        excluded.push({ path: rel, reason: TEMP_REASON });
        continue;
      }
      files.push({ section: spec.name, relPath: rel, archivePath: rel, absPath: join(stateDir, rel), size: s.size, mode: s.mode & 0o777, mtimeMs: s.mtimeMs });
    }
  }
  return true;
}

function lstatSyncOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
