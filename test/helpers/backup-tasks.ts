import { mkdir } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { readBackupArchive } from "../../src/backup/archive.js";
import { FileTaskStore } from "../../src/tasks/store.js";
import { tempDir } from "./cara.js";

/** The task ids held by a backup archive (verified with `secret`, staged and loaded as a server would). */
export async function taskIdsInBackup(file: string, secret: string): Promise<Set<string>> {
  const staging = join(await tempDir("cara-backup-ids-"), "staging");
  await mkdir(staging, { mode: 0o700 });
  const res = await readBackupArchive(createReadStream(file), { secret, stagingDir: staging, sections: ["tasks"] });
  if (!res.ok) throw new Error(`backup ${file} does not verify: ${res.problems.map((p) => p.message).join("; ")}`);
  const store = await FileTaskStore.open({ dir: join(staging, "tasks"), retentionMs: 0 });
  const ids = new Set([...store.all()].map((t) => t.id));
  await store.close();
  return ids;
}
