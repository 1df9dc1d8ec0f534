import { constants } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { writeFileDurable } from "./durable.js";
import { lockOwner } from "./lock.js";

/** Where the server holding a state dir's lock listens (beside the lock, `cara.address`). */
export interface ServerAddress {
  pid: number;
  /** e.g. http://127.0.0.1:18800 (the bind address; 0.0.0.0 and :: are reached on loopback). */
  url: string;
  bind: string;
  port: number;
  tls: boolean;
  startedAt: string;
}

export const ADDRESS_FILE = "cara.address";

/** Written once the server listens: a local `cara` finds it even on another port than configured. */
export async function recordServerAddress(stateDir: string, address: ServerAddress): Promise<void> {
  await writeFileDurable(join(stateDir, ADDRESS_FILE), `${JSON.stringify(address)}\n`);
}

/** Removed at shutdown (only our own record). */
export async function clearServerAddress(stateDir: string, pid = process.pid): Promise<void> {
  const current = await readRecord(stateDir);
  if (current?.pid === pid) await unlink(join(stateDir, ADDRESS_FILE)).catch(() => undefined);
}

/**
 * The address of the live server using this state dir: the record is trusted only while the
 * lock names the same live pid (a record left by a crashed server is ignored).
 */
export async function liveServerAddress(stateDir: string): Promise<ServerAddress | undefined> {
  const [record, owner] = await Promise.all([readRecord(stateDir), lockOwner(stateDir).catch(() => undefined)]);
  return record && owner !== undefined && record.pid === owner ? record : undefined;
}

async function readRecord(stateDir: string): Promise<ServerAddress | undefined> {
  try {
    const v = JSON.parse(
      await readFile(join(stateDir, ADDRESS_FILE), { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW }),
    ) as Partial<ServerAddress>;
    if (typeof v.pid !== "number" || typeof v.port !== "number" || typeof v.url !== "string" || typeof v.bind !== "string") return undefined;
    return { pid: v.pid, url: v.url, bind: v.bind, port: v.port, tls: v.tls === true, startedAt: String(v.startedAt ?? "") };
  } catch {
    return undefined;
  }
}

/** The host a local client uses to reach a bind address (a wildcard bind is reached on loopback). */
export function localHostFor(bind: string): string {
  if (bind === "0.0.0.0" || bind === "") return "127.0.0.1";
  if (bind === "::" || bind === "[::]") return "::1";
  return bind;
}
