import { join } from "node:path";
import { writeFileDurable } from "../state/durable.js";
import { readSmallFile } from "./transaction.js";

export const MARKER_STATES = ["pending", "started", "cleared", "rolled_back", "rollback_failed"] as const;
export type MarkerState = (typeof MARKER_STATES)[number];

/**
 * `<state>/updates/rollback.json`. The protocol (the launcher `<install>/bin/cara` implements the
 * start-time half, see launcher.cjs):
 * - pending: written by the update just before `current` switches to toVersion;
 * - started: the launcher starts toVersion for the first time;
 * - cleared: toVersion's server reported ready (no rollback will happen);
 * - rolled_back: the launcher found `started` at the next start (toVersion never became ready)
 *   and switched `current` back to fromVersion, or an operator rolled back by hand.
 * - rollback_failed: the launcher found `started` but could not switch back (the reason says
 *   why); the probation is over and an operator must look.
 */
export interface RollbackMarkerFile {
  startupState: MarkerState;
  fromVersion: string;
  toVersion: string;
  installDir: string;
  appliedAtMs: number;
  startedAtMs?: number;
  clearedAtMs?: number;
  rolledBackAtMs?: number;
  reason?: string;
  backupPath?: string;
  [extra: string]: unknown;
}

export function markerPath(updatesDir: string): string {
  return join(updatesDir, "rollback.json");
}

export class MarkerCorruptError extends Error {}

export async function loadMarker(updatesDir: string): Promise<RollbackMarkerFile | undefined> {
  const path = markerPath(updatesDir);
  let text: string | undefined;
  try {
    text = await readSmallFile(path);
  } catch (err) {
    throw new MarkerCorruptError(`rollback marker '${path}' is unreadable: ${(err as Error).message}`);
  }
  if (text === undefined) return undefined;
  let m: RollbackMarkerFile;
  try {
    m = JSON.parse(text) as RollbackMarkerFile;
  } catch (err) {
    throw new MarkerCorruptError(`rollback marker '${path}' is not valid JSON (${(err as Error).message}); remove it once the right version is current`);
  }
  if (typeof m !== "object" || m === null || typeof m.fromVersion !== "string" || typeof m.toVersion !== "string" || typeof m.appliedAtMs !== "number") {
    throw new MarkerCorruptError(`rollback marker '${path}' lacks fromVersion/toVersion/appliedAtMs; remove it once the right version is current`);
  }
  // An unknown state is treated as finished: read as rolled_back, as the original Rust cara does.
  if (!(MARKER_STATES as readonly string[]).includes(m.startupState)) m.startupState = "rolled_back";
  return m;
}

export async function writeMarker(updatesDir: string, marker: RollbackMarkerFile): Promise<void> {
  await writeFileDurable(markerPath(updatesDir), `${JSON.stringify(marker, null, 2)}\n`);
}
