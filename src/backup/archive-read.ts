/**
 * Reading a backup archive back with every safety check, in one streaming pass, optionally
 * staging the files of the selected sections as they stream (archive-staging.ts).
 *
 * One ArchiveReader per archive: its fields are what the pass has learnt so far (the problems,
 * the manifest, the paths seen, the verified files), and each stage of the pass is one method:
 * the tar headers (entries), the marker, the manifest, the checks of a file entry's path, type,
 * section and manifest listing, the file's content (hashed, and staged when selected), and at the
 * end the entries the manifest lists but the archive lacks.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import {
  DEFAULT_LIMITS,
  MARKER_RE,
  MAX_MARKER_BYTES,
  MiB,
  RESTORED_FILE_MODE,
  formatLimit,
  problem,
  type ArchiveLimits,
  type Problem,
} from "./archive-limits.js";
import { ByteSource, GzipInput, NOT_GZIP, Stop, readMetaHeader, truncated, type PendingMeta } from "./archive-input.js";
import { SYNC_WRITE_MAX, Stager } from "./archive-staging.js";
import { findSigningKey, manifestKey, parseManifest, type Manifest, type ManifestFile, type VerificationKey } from "./manifest.js";
import {
  MANIFEST_NAME,
  MARKER_NAME,
  SECTION_NAMES,
  checkSectionNames,
  displayPath,
  isSectionDirectory,
  sectionOf,
  unsafePathRule,
  type SectionName,
} from "./sections.js";
import { BLOCK, TarFormatError, decodeHeader, describeType, isZeroBlock, paddingOf } from "./tar.js";

export interface ReadBackupOptions {
  /** Server secret: verifies the manifest HMAC. */
  secret: string;
  /**
   * Verification keys of earlier server secrets (see previous-secrets.ts): a manifest one of them
   * verifies is not foreign; `signedBy.previous` says so.
   */
  previousKeys?: readonly VerificationKey[];
  /** Accept a manifest whose HMAC does not verify (foreign: true, no FOREIGN problem). */
  allowForeign?: boolean;
  /**
   * An existing directory (created by the caller on the state dir's filesystem, ideally empty)
   * that receives the files of the selected sections as they stream, under their archive paths
   * (`config/config.json`, `tasks/queue.json`, ...): files O_EXCL|O_NOFOLLOW created 0600 (the
   * manifest's mode is recorded, never applied: state files are private whatever the archive
   * says), directories 0700. Writing stops at the
   * first problem; on ANY problem (or a thrown error) the caller must discard the whole
   * directory. Nothing is ever written outside it.
   */
  stagingDir?: string;
  /** Sections to stage (default: all in the archive). Every entry is verified regardless. */
  sections?: readonly string[];
  limits?: Partial<ArchiveLimits>;
  /** fsync staged files and directories (for a restore that renames them into place). */
  fsync?: boolean;
  /**
   * Read only the first two entries, the marker and manifest.json, then stop (listing archives
   * without decompressing them whole). The marker, the manifest and its HMAC are checked as
   * usual; no file entry is read, so `files` is empty, `ok` says nothing about the files, and
   * archiveSha256/archiveBytes are absent. Not with stagingDir.
   */
  headOnly?: boolean;
}

export interface VerifiedFile extends ManifestFile {
  section: SectionName;
  /** Absolute path of the staged copy, when staged. */
  stagedPath?: string;
}

export interface ReadBackupResult {
  /** No problems (a foreign archive without allowForeign has a FOREIGN problem). */
  ok: boolean;
  /** The manifest when it was readable and valid (also for a foreign archive). */
  manifest?: Manifest;
  problems: Problem[];
  /** More problems existed than limits.maxProblems; reading stopped there. */
  problemsTruncated: boolean;
  /** The manifest HMAC verifies with neither this secret nor a previous one. */
  foreign: boolean;
  /** The key that verified the manifest: this secret's, or a previous one's (`previous: true`). */
  signedBy?: { keyId: string; previous: boolean };
  /** Entries whose size and SHA-256 match the manifest, in archive order. */
  files: VerifiedFile[];
  /** SHA-256 and size of the compressed input; absent when reading stopped before its end. */
  archiveSha256?: string;
  archiveBytes?: number;
}

/** Files up to this size are read whole (and staged in one write); larger ones stream. */
const SMALL_FILE_BYTES = 1 * MiB;

/**
 * Reads a backup archive from `input` in one streaming pass and verifies it (see ReadBackupResult
 * and the problem kinds): marker first, manifest second and valid, HMAC (FOREIGN unless
 * allowForeign), every entry's path, type, uniqueness, section, manifest membership, size and
 * SHA-256, nothing missing, and the size / ratio limits. Problems are returned, not thrown; some
 * (corrupt or truncated gzip, limits, no marker) stop reading, and then `input` is destroyed.
 * Throws only for invalid options, an `input` error, or a staging filesystem error
 * (StagingError). With `stagingDir`, see ReadBackupOptions: the caller discards the staging dir
 * unless the result is ok.
 */
export async function readBackupArchive(input: Readable, options: ReadBackupOptions): Promise<ReadBackupResult> {
  const limits: ArchiveLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const selected = new Set<SectionName>(options.sections && options.sections.length > 0 ? checkSectionNames(options.sections) : SECTION_NAMES);
  if (options.headOnly && options.stagingDir !== undefined) throw new Error("readBackupArchive: headOnly cannot stage files");
  const stager = options.stagingDir !== undefined ? await Stager.open(options.stagingDir, options.fsync ?? false) : undefined;
  return new ArchiveReader(input, options, limits, selected, stager).read();
}

/** A tar entry, its pax / GNU long-name overrides applied. */
interface Entry {
  path: string;
  size: number;
  type: string;
  linkpath: string;
}

/** A regular file entry that passed the checks: its path (no trailing slash), section and manifest listing. */
interface FileTarget {
  path: string;
  section: SectionName;
  listed: ManifestFile;
}

class ArchiveReader {
  private readonly gz: GzipInput;
  private readonly source: ByteSource;
  private readonly problems: Problem[] = [];
  private problemsTruncated = false;
  private manifest: Manifest | undefined;
  private manifestFiles: Map<string, ManifestFile> | undefined;
  private foreign = false;
  private signedBy: { keyId: string; previous: boolean } | undefined;
  private markerCreated: string | undefined;
  /** Read to the end-of-archive marker. */
  private complete = false;
  /** headOnly: the marker and the manifest were read, reading stopped there. */
  private headRead = false;
  /** File paths seen (and the marker and manifest). */
  private readonly seen = new Set<string>();
  /** Directory entries seen (files and directories share one namespace). */
  private readonly seenDirs = new Set<string>();
  private readonly verified: VerifiedFile[] = [];

  constructor(
    input: Readable,
    private readonly options: ReadBackupOptions,
    private readonly limits: ArchiveLimits,
    private readonly selected: ReadonlySet<SectionName>,
    private readonly stager: Stager | undefined,
  ) {
    this.gz = new GzipInput(input, limits.maxArchiveBytes, options.headOnly ?? false);
    this.source = new ByteSource(this.gz.gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>, () => this.gz.compressed, limits);
  }

  async read(): Promise<ReadBackupResult> {
    let thrown: unknown;
    try {
      await this.entries();
      this.complete = !this.headRead;
    } catch (err) {
      thrown = this.stopped(err);
    } finally {
      thrown = await this.settle(thrown);
    }
    if (thrown !== undefined) throw thrown;
    if (this.gz.error !== undefined) throw this.gz.error;
    this.missingEntries();
    return this.result();
  }

  /** Records a problem; past maxProblems reading stops. */
  private add(p: Problem): void {
    if (this.problems.length >= this.limits.maxProblems) {
      this.problemsTruncated = true;
      throw new Stop();
    }
    this.problems.push(p);
  }

  /** The tar headers, one after the other, up to the end-of-archive marker (or the head, with headOnly). */
  private async entries(): Promise<void> {
    let index = 0;
    let pending: PendingMeta = {};
    let last = "the first header";
    for (;;) {
      const block = await this.source.readExact(BLOCK, `the header after ${last}`);
      if (block === undefined) {
        throw new Stop(problem("corrupt_archive", "", `archive is truncated: it ends after ${last} without the end-of-archive marker`));
      }
      if (isZeroBlock(block)) return this.endOfArchive(pending, last);
      let header;
      try {
        header = decodeHeader(block);
      } catch (err) {
        if (!(err instanceof TarFormatError)) throw err;
        throw new Stop(problem("corrupt_archive", "", `archive is corrupt: the tar header after ${last} is invalid (${err.message})`));
      }
      if (["x", "g", "L", "K"].includes(header.type)) {
        await readMetaHeader(this.source, header.type, header.size, pending, last);
        continue;
      }
      const entry: Entry = {
        path: pending.path ?? header.name,
        size: pending.size ?? header.size,
        type: header.type,
        linkpath: pending.linkpath ?? header.linkname,
      };
      pending = {};
      if (index >= this.limits.maxEntries) throw new Stop(problem("too_large", "", `archive has more than ${this.limits.maxEntries} entries`));
      await this.entry(entry, index++);
      last = `entry '${displayPath(entry.path)}'`;
      if (this.options.headOnly && index === 2) {
        this.headRead = true;
        return;
      }
    }
  }

  /** The first zero block: nothing may be pending and only zero bytes may follow. */
  private async endOfArchive(pending: PendingMeta, last: string): Promise<void> {
    if (pending.path !== undefined || pending.size !== undefined) throw truncated(`the extended header of the entry after ${last}`);
    if (!(await this.source.restIsZero())) throw new Stop(problem("corrupt_archive", "", `archive has data after its end-of-archive marker`));
  }

  private skipBody(e: { size: number; path: string }): Promise<void> {
    return this.source.skip(e.size + paddingOf(e.size), `entry '${displayPath(e.path)}'`);
  }

  private async readBody(e: { size: number; path: string }, copy = true): Promise<Buffer> {
    const what = `entry '${displayPath(e.path)}'`;
    const data = e.size === 0 ? Buffer.alloc(0) : await this.source.readExact(e.size, what, copy);
    if (data === undefined) throw truncated(what);
    await this.source.skip(paddingOf(e.size), what);
    return data;
  }

  private async entry(e: Entry, index: number): Promise<void> {
    if (index === 0) return this.marker(e);
    if (index === 1 && e.path === MANIFEST_NAME) return this.manifestEntry(e);
    if (index === 1) this.add(problem("manifest_invalid", e.path, `manifest.json must be the second entry (found '${displayPath(e.path)}')`));
    const target = this.fileTarget(e, index);
    if (!target) return this.skipBody(e);
    return this.fileContent(e, target);
  }

  /** The first entry: the marker, its format version and creation time. */
  private async marker(e: Entry): Promise<void> {
    if (e.path !== MARKER_NAME) {
      throw new Stop(
        problem(
          "marker_invalid",
          e.path,
          `archive does not start with the '${MARKER_NAME}' marker (first entry is '${displayPath(e.path)}'): not a cara backup`,
        ),
      );
    }
    this.seen.add(MARKER_NAME);
    if (e.type !== "0") {
      this.add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' is ${describeType(e.type)}, not a regular file`));
      return this.skipBody(e);
    }
    if (e.size > MAX_MARKER_BYTES) {
      this.add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' is ${e.size} bytes, over the ${formatLimit(MAX_MARKER_BYTES)} limit`));
      return this.skipBody(e);
    }
    const m = MARKER_RE.exec((await this.readBody(e)).toString("utf8"));
    if (!m) {
      this.add(problem("marker_invalid", e.path, `marker '${MARKER_NAME}' does not say "carapace-backup v1" and "created=<time>"`));
    } else if (m[1] !== "1") {
      this.add(
        problem("version_unsupported", e.path, `marker says backup format v${m[1]}, newer than this cara understands (v1); upgrade cara to read this backup`),
      );
    } else {
      this.markerCreated = m[2];
    }
  }

  /** The second entry: manifest.json, parsed, its HMAC checked, its creation time and total size too. */
  private async manifestEntry(e: Entry): Promise<void> {
    this.seen.add(MANIFEST_NAME);
    if (e.type !== "0") {
      this.add(problem("manifest_invalid", e.path, `manifest.json is ${describeType(e.type)}, not a regular file`));
      return this.skipBody(e);
    }
    if (e.size > this.limits.maxManifestBytes) {
      this.add(problem("too_large", e.path, `manifest.json is ${e.size} bytes, over the ${formatLimit(this.limits.maxManifestBytes)} limit`));
      return this.skipBody(e);
    }
    const parsed = parseManifest(await this.readBody(e));
    if (!parsed.ok) return this.add(problem(parsed.kind, e.path, parsed.message));
    const manifest = parsed.manifest;
    this.manifest = manifest;
    const current = manifestKey(this.options.secret);
    const signer = findSigningKey(manifest, [current, ...(this.options.previousKeys ?? [])]);
    this.foreign = signer === undefined;
    if (signer) this.signedBy = { keyId: signer.keyId, previous: signer.keyId !== current.keyId };
    if (this.foreign && !this.options.allowForeign) {
      const unknownKey =
        manifest.keyId !== undefined && manifest.keyId !== current.keyId && !(this.options.previousKeys ?? []).some((k) => k.keyId === manifest.keyId);
      const why = unknownKey
        ? `manifest is signed with key id ${manifest.keyId}, which is neither this deployment's server secret nor a previous one: the backup was made by another deployment or with a secret this state dir never used (give that secret with --secret-file), or manifest.json was changed after signing`
        : "manifest HMAC does not match this deployment's key: the backup was made by another deployment, or manifest.json was changed after signing";
      this.add(problem("foreign", e.path, why));
    }
    if (this.markerCreated !== undefined && this.markerCreated !== manifest.createdAt) {
      this.add(
        problem(
          "manifest_invalid",
          e.path,
          `manifest.json createdAt (${manifest.createdAt}) differs from the marker's (${displayPath(this.markerCreated, 60)})`,
        ),
      );
    }
    const declared = manifest.files.reduce((sum, f) => sum + f.size, 0);
    if (declared > this.limits.maxTotalBytes) {
      throw new Stop(problem("too_large", e.path, `manifest.json lists ${declared} bytes, over the ${formatLimit(this.limits.maxTotalBytes)} limit`));
    }
    this.manifestFiles = new Map(manifest.files.map((f) => [f.path, f]));
  }

  /**
   * Every check of an entry after the first two (its path, type, uniqueness, size limit, section,
   * manifest listing and size): the file to read, or undefined when its body is to be skipped.
   */
  private fileTarget(e: Entry, index: number): FileTarget | undefined {
    if (e.path === MARKER_NAME || e.path === MANIFEST_NAME) {
      if (this.seen.has(e.path)) this.add(problem("duplicate_path", e.path, `entry '${e.path}' appears more than once`));
      else
        this.add(
          problem(
            e.path === MARKER_NAME ? "marker_invalid" : "manifest_invalid",
            e.path,
            `entry '${e.path}' must be entry number ${e.path === MARKER_NAME ? 1 : 2}, not ${index + 1}`,
          ),
        );
      return undefined;
    }
    const isDir = e.type === "5";
    const path = isDir && e.path.endsWith("/") ? e.path.slice(0, -1) : e.path;
    const rule = unsafePathRule(path);
    if (rule) return void this.add(problem("unsafe_path", e.path, `entry '${displayPath(e.path)}' ${rule}`));
    if (isDir) return void this.directory(e, path);
    if (e.type !== "0") {
      const to = e.type === "1" || e.type === "2" ? ` (to '${displayPath(e.linkpath, 100)}')` : "";
      return void this.add(problem("unsafe_type", e.path, `entry '${displayPath(e.path)}' is ${describeType(e.type)}${to}; only regular files are allowed`));
    }
    if (e.size > this.limits.maxFileBytes) {
      throw new Stop(
        problem("too_large", e.path, `entry '${displayPath(e.path)}' is ${e.size} bytes, over the ${formatLimit(this.limits.maxFileBytes)} per-file limit`),
      );
    }
    if (this.seen.has(path) || this.seenDirs.has(path))
      return void this.add(problem("duplicate_path", e.path, `entry '${displayPath(path)}' appears more than once`));
    this.seen.add(path);
    const section = sectionOf(path);
    if (section === undefined) {
      return void this.add(problem("outside_sections", e.path, `entry '${displayPath(path)}' is outside every backup section (${SECTION_NAMES.join(", ")})`));
    }
    if (!this.manifestFiles) return undefined; // no usable manifest: nothing to compare with
    const listed = this.manifestFiles.get(path);
    if (!listed) return void this.add(problem("entry_unexpected", e.path, `entry '${displayPath(path)}' is not listed in the manifest`));
    if (e.size !== listed.size)
      return void this.add(problem("size_mismatch", e.path, `entry '${displayPath(path)}' is ${e.size} bytes but the manifest says ${listed.size}`));
    return { path, section, listed };
  }

  /** A directory entry: only its path counts (a directory and a file at one path, either order, is a duplicate). */
  private directory(e: Entry, path: string): void {
    if (this.seen.has(path) || this.seenDirs.has(path)) this.add(problem("duplicate_path", e.path, `entry '${displayPath(path)}' appears more than once`));
    this.seenDirs.add(path);
    if (!isSectionDirectory(path)) this.add(problem("outside_sections", e.path, `directory entry '${displayPath(e.path)}' is outside every backup section`));
  }

  /** A file's content: hashed, and staged when staging, no problem so far and its section is selected. */
  private async fileContent(e: Entry, { path, section, listed }: FileTarget): Promise<void> {
    const what = `entry '${displayPath(path)}'`;
    const stager = this.problems.length === 0 && this.selected.has(section) ? this.stager : undefined;
    const hash = createHash("sha256");
    if (stager && e.size <= SMALL_FILE_BYTES) {
      const content = await this.readBody(e, e.size > SYNC_WRITE_MAX);
      const digest = hash.update(content).digest("hex");
      const stagedPath = digest === listed.sha256 ? await stager.stageWhole(path, content, RESTORED_FILE_MODE) : undefined;
      return this.fileRead(digest, listed, section, stagedPath);
    }
    if (stager) {
      const { digest, stagedPath } = await stager.stageStream(path, this.source.take(e.size, what), hash, listed.sha256, RESTORED_FILE_MODE);
      await this.source.skip(paddingOf(e.size), what);
      return this.fileRead(digest, listed, section, stagedPath);
    }
    for await (const chunk of this.source.take(e.size, what)) hash.update(chunk);
    await this.source.skip(paddingOf(e.size), what);
    return this.fileRead(hash.digest("hex"), listed, section, undefined);
  }

  private fileRead(digest: string, listed: ManifestFile, section: SectionName, stagedPath: string | undefined): void {
    if (digest !== listed.sha256) {
      this.add(problem("hash_mismatch", listed.path, `entry '${displayPath(listed.path)}' does not match its SHA-256 in the manifest`));
      return;
    }
    this.verified.push(stagedPath === undefined ? { ...listed, section } : { ...listed, section, stagedPath });
  }

  /** What stopped the pass: a problem is recorded (returns undefined); anything else is returned, to be thrown. */
  private stopped(err: unknown): unknown {
    if (err instanceof Stop) {
      if (err.problem) {
        if (this.problems.length < this.limits.maxProblems) this.problems.push(err.problem);
        else this.problemsTruncated = true;
      }
      return undefined;
    }
    if (this.gz.error !== undefined) return this.gz.error;
    const code = (err as NodeJS.ErrnoException)?.code;
    if (err === NOT_GZIP) {
      if (this.gz.tooLarge) this.problems.push(problem("too_large", "", `archive is larger than the ${formatLimit(this.limits.maxArchiveBytes)} limit`));
      else
        this.problems.push(
          problem("corrupt_archive", "", this.gz.compressed === 0 ? "archive is empty" : "archive is not a gzip file (a cara backup is a .tar.gz)"),
        );
      return undefined;
    }
    if (typeof code === "string" && code.startsWith("Z_")) {
      const message =
        code === "Z_BUF_ERROR"
          ? "archive is truncated: the gzip stream ends early"
          : `archive is corrupt: the gzip data is damaged (${(err as Error).message})`;
      this.problems.push(problem("corrupt_archive", "", message));
      return undefined;
    }
    return err;
  }

  /** Stops the input when the pass ended early, waits for it and for the staged writes; the error to throw, if any. */
  private async settle(thrown: unknown): Promise<unknown> {
    if (!this.complete) this.gz.stop();
    await this.gz.settle();
    if (!this.stager) return thrown;
    try {
      await this.stager.pool.drain();
      if (thrown === undefined && this.complete) await this.stager.syncDirs();
    } catch (err) {
      thrown ??= err;
    }
    return thrown;
  }

  /** After a complete pass: the manifest's files the archive lacks; after any pass that read the head: no manifest. */
  private missingEntries(): void {
    const manifest = this.manifest;
    if (this.complete && manifest && !this.problemsTruncated) {
      for (const f of manifest.files) {
        if (this.seen.has(f.path)) continue;
        if (this.problems.length >= this.limits.maxProblems) {
          this.problemsTruncated = true;
          break;
        }
        this.problems.push(problem("entry_missing", f.path, `file '${displayPath(f.path)}' is listed in the manifest but missing from the archive`));
      }
    }
    const reported = this.problems.some((p) => p.kind === "manifest_invalid" || p.kind === "version_unsupported" || p.kind === "too_large");
    if ((this.complete || this.headRead) && !manifest && !reported) this.problems.push(problem("manifest_invalid", "", "archive has no manifest.json"));
  }

  private result(): ReadBackupResult {
    const { problems, problemsTruncated, foreign, verified: files } = this;
    const result: ReadBackupResult = { ok: problems.length === 0 && !problemsTruncated, problems, problemsTruncated, foreign, files };
    if (this.manifest) result.manifest = this.manifest;
    if (this.signedBy) result.signedBy = this.signedBy;
    if (this.complete) {
      result.archiveSha256 = this.gz.hash.digest("hex");
      result.archiveBytes = this.gz.compressed;
    }
    return result;
  }
}
