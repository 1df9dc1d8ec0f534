// Shared by the reliability rounds (npm run test:reliability): a seeded random source, the
// tally of what was tried and what held, and small process helpers.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT } from "../helpers/cara.js";

/** The run's seed: RELIABILITY_SEED, or a fixed default so that a plain run is reproducible. */
export const SEED = Number(process.env.RELIABILITY_SEED ?? 20261205);

/** A small, fast seeded generator (mulberry32): the same seed gives the same rounds. */
export function seeded(seed: number): { next(): number; int(min: number, max: number): number; pick<T>(items: readonly T[]): T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
  };
}

const RESULTS = join(ROOT, "test-output", "reliability");

/** Records one area's figures (for the README's Reliability table): what was tried, what held. */
export async function tally(area: string, figures: { tried: number; held: number; unit: string; note?: string }): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const file = join(RESULTS, `${area.replace(/[^a-z0-9-]+/gi, "-")}.json`);
  let previous: { rows: unknown[] } = { rows: [] };
  try {
    previous = JSON.parse(await readFile(file, "utf8")) as { rows: unknown[] };
  } catch {
    // first row of this area
  }
  previous.rows.push({ area, seed: SEED, ...figures });
  await writeFile(file, `${JSON.stringify(previous, null, 2)}\n`);
}

/** Resident memory of a process in bytes (Linux /proc). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
