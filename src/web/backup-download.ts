// Saving a CreateBackup stream as a file without holding the archive in the page's memory.
//
// 1. Where the File System Access API exists (Chromium-based desktop browsers), the user picks
//    the file first and every chunk is written to it as it arrives: truly streamed to disk.
// 2. Elsewhere each chunk is turned into its own Blob at once and the Blobs are joined at the
//    end. The page's JavaScript heap then holds one chunk at a time; the bytes live in the
//    browser's blob store, which keeps large blobs on disk, and the final Blob only references
//    the parts (no copy). It is not a byte stream to the Downloads folder (that needs a Service
//    Worker), but it is not a buffer of the whole archive in the page either.
import { backups } from "./api.js";

export interface DownloadState {
  phase: "snapshot" | "streaming" | "done";
  name: string;
  via: "file" | "blob";
  bytes: number;
  sections: string[];
  excluded: { path: string; reason: string }[];
  archiveBytes?: number;
  sha256?: string;
}

interface Sink {
  via: "file" | "blob";
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

interface WritableFile {
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}
type SavePicker = (options: {
  suggestedName: string;
  types?: { description: string; accept: Record<string, string[]> }[];
}) => Promise<{ createWritable(): Promise<WritableFile> }>;

export class DownloadCancelled extends Error {}

/** The file picker's sink; must be called straight from the click (it needs the user gesture). */
async function fileSink(name: string): Promise<Sink | undefined> {
  const picker = (window as unknown as { showSaveFilePicker?: SavePicker }).showSaveFilePicker;
  if (typeof picker !== "function") return undefined;
  let handle;
  try {
    handle = await picker({ suggestedName: name, types: [{ description: "cara backup archive", accept: { "application/gzip": [".tar.gz"] } }] });
  } catch (err) {
    if ((err as DOMException).name === "AbortError") throw new DownloadCancelled("no file chosen");
    return undefined; // not allowed here (e.g. a sandboxed frame): use the blob download
  }
  const out = await handle.createWritable();
  return { via: "file", write: (c) => out.write(c), close: () => out.close(), abort: () => out.abort() };
}

function blobSink(name: string): Sink {
  let parts: Blob[] = [];
  return {
    via: "blob",
    async write(c) {
      parts.push(new Blob([c as Uint8Array<ArrayBuffer>]));
    },
    async close() {
      const url = URL.createObjectURL(new Blob(parts, { type: "application/gzip" }));
      parts = [];
      const a = document.createElement("a");
      a.href = url;
      a.download = name;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      // The download has its own reference once started; give it time to start.
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
    async abort() {
      parts = [];
    },
  };
}

/** `carapace-backup-20260102T030405Z.tar.gz`, like `cara backup`'s default name. */
export function backupFileName(now = new Date()): string {
  return `carapace-backup-${now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}.tar.gz`;
}

/** Streams a new backup into a file; resolves with the final state (size and SHA-256 checked). */
export async function downloadBackup(sections: string[], onState: (s: DownloadState) => void, signal: AbortSignal): Promise<DownloadState> {
  const name = backupFileName();
  const sink = (await fileSink(name)) ?? blobSink(name);
  const state: DownloadState = { phase: "snapshot", name, via: sink.via, bytes: 0, sections: [], excluded: [] };
  onState({ ...state });
  try {
    for await (const res of backups.createBackup({ sections }, { signal })) {
      const part = res.part;
      if (part.case === "header") {
        state.phase = "streaming";
        state.sections = part.value.manifest?.sections.map((s) => s.name) ?? [];
        state.excluded = part.value.excluded.map((e) => ({ path: e.path, reason: e.reason }));
      } else if (part.case === "chunk") {
        await sink.write(part.value);
        state.bytes += part.value.length;
      } else if (part.case === "trailer") {
        state.archiveBytes = Number(part.value.archiveBytes);
        state.sha256 = part.value.archiveSha256;
      }
      onState({ ...state });
    }
    if (state.archiveBytes === undefined) throw new Error("the backup stream ended without its trailer; the file is incomplete");
    if (state.archiveBytes !== state.bytes) throw new Error(`received ${state.bytes} bytes but the server sent ${state.archiveBytes}; the file is incomplete`);
    await sink.close();
    state.phase = "done";
    onState({ ...state });
    return state;
  } catch (err) {
    await sink.abort().catch(() => undefined);
    throw err;
  }
}
