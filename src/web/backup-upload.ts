// Hands a file the user picked to the server one 1 MiB piece per UploadBackup call (browsers
// cannot stream a request body), reading each piece from disk only when it is sent.
import { Code, ConnectError } from "@connectrpc/connect";
import { backups, unary } from "./api.js";

const PIECE = 1024 * 1024;

export async function uploadArchive(file: File, onProgress: (sent: number) => void, signal: AbortSignal): Promise<{ name: string; sha256: string }> {
  let uploadId = "";
  let offset = 0;
  let failures = 0;
  for (;;) {
    const end = Math.min(file.size, offset + PIECE);
    const chunk = new Uint8Array(await file.slice(offset, end).arrayBuffer());
    try {
      const res = await backups.uploadBackup({ uploadId, offset: BigInt(offset), chunk, finish: end === file.size }, unary(signal));
      failures = 0;
      uploadId = res.uploadId;
      offset = Number(res.bytesReceived);
      onProgress(offset);
      if (res.backupName) return { name: res.backupName, sha256: res.sha256 };
    } catch (err) {
      const e = ConnectError.from(err);
      // The answer to a piece was lost but the piece arrived: continue where the server is.
      const resumeAt = e.code === Code.FailedPrecondition ? /continue from (\d+)$/.exec(e.rawMessage)?.[1] : undefined;
      if (resumeAt !== undefined && Number(resumeAt) <= file.size && uploadId) {
        offset = Number(resumeAt);
        continue;
      }
      if (signal.aborted || e.code !== Code.Unavailable || ++failures > 3) throw err;
      await new Promise((r) => setTimeout(r, 1000 * failures));
    }
  }
}
