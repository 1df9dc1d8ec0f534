import { setFlagsFromString } from "node:v8";

/**
 * V8 flags that keep the server's heap small (issue 17): set at `cara start`, before the server's
 * modules load.
 *
 * - `--semi-space-growth-factor=1`: the young generation stays at its initial 1 MiB semi-spaces
 *   instead of doubling up to 16 MiB each (new space 2 MiB instead of 32 MiB under load). Only the
 *   growth factor takes effect once the heap exists: `--max-semi-space-size` set from inside the
 *   process is ignored by Node 20 and 22 (measured).
 * - `--heap-growing-percent=50`: after a full collection the old generation may grow by half
 *   before the next one (V8 picks 10% to 300% by itself), so objects promoted under load are
 *   collected sooner instead of doubling the old space. 20% kept RSS a few MiB lower but cost
 *   more full collections under the gRPC load; `--optimize-for-size` bounds it too but also
 *   changes what V8 optimizes: it cost about twice the CPU per request (all measured).
 *
 * Node flags chosen by the operator win: when `node` was started with (or NODE_OPTIONS holds) any
 * heap-sizing flag, nothing is changed. Returns the flags set.
 */
export function limitHeapGrowth(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)];
  if (given.some((a) => HEAP_FLAG.test(a))) return [];
  for (const flag of HEAP_FLAGS) setFlagsFromString(flag);
  return [...HEAP_FLAGS];
}

const HEAP_FLAGS = ["--semi-space-growth-factor=1", "--heap-growing-percent=50"] as const;
const HEAP_FLAG =
  /^--(?:max|min)[-_]semi[-_]space[-_]size|^--semi[-_]space[-_]growth[-_]factor|^--optimize[-_]for[-_]size|^--heap[-_]growing[-_]percent|^--max[-_]old[-_]space[-_]size/;
