/**
 * Sigstore verification of a release artifact (src/update/sigstore-bundle.ts `verifyBundle`): the real
 * v0.7.0 SHA256SUMS.txt bundle against the pinned public-good trusted root, by digest, offline.
 * Warm: repeated calls in this process (trusted root loaded once, as the updater does).
 * Cold: a fresh process per repetition, timed inside it from the import of the verifier module
 * (which loads the Sigstore libraries lazily) to the end of the first verification.
 */
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { loadTrustedRoot, verifyBundle, type VerifyBundleInput } from "../../src/update/sigstore-bundle.js";
import { makeRow, median as medianOrNull } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark } from "../lib/types.js";

const DIGEST = "acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
const IDENTITY = "https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/v0.7.0";
const ISSUER = "https://token.actions.githubusercontent.com";

interface ColdRun {
  importMs: number;
  loadRootMs: number;
  verifyMs: number;
  totalMs: number;
}

/** The verifier module a fresh process should load: dist when it is built and not older than src. */
function verifierModule(root: string): { path: string; viaTsx: boolean } {
  const src = join(root, "src", "update", "sigstore-bundle.ts");
  const dist = join(root, "dist", "src", "update", "sigstore-bundle.js");
  if (existsSync(dist) && statSync(dist).mtimeMs >= statSync(src).mtimeMs) return { path: dist, viaTsx: false };
  return { path: src, viaTsx: true };
}

function runCold(script: string, viaTsx: boolean, cwd: string): Promise<ColdRun> {
  return new Promise((resolve, reject) => {
    const args = viaTsx ? ["--import", "tsx", script] : [script];
    const proc = spawn(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`cold verification exited ${code}: ${stderr.trim()}`));
      try {
        resolve(JSON.parse(stdout.trim().split("\n").pop() ?? "") as ColdRun);
      } catch (err) {
        reject(new Error(`cold verification printed no result: ${String(err)} ${stderr.trim()}`));
      }
    });
  });
}

export const verify: Benchmark = {
  name: "verify",
  description:
    "Sigstore bundle verification of a release artifact by digest (real v0.7.0 bundle, pinned public-good root, offline): warm in-process calls and cold first call in a fresh process",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const fixture = join(opts.root, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
    const bundle = await readFile(fixture);

    // Cold: fresh process per repetition.
    const mod = verifierModule(opts.root);
    const script = join(opts.tmp, "verify-cold.mjs");
    await writeFile(
      script,
      `import { readFileSync } from "node:fs";
const bundle = readFileSync(${JSON.stringify(fixture)});
const t0 = performance.now();
const { loadTrustedRoot, verifyBundle } = await import(${JSON.stringify(pathToFileURL(mod.path).href)});
const t1 = performance.now();
const trustedRoot = await loadTrustedRoot();
const t2 = performance.now();
await verifyBundle({ bundle, digest: ${JSON.stringify(DIGEST)}, identity: { exact: ${JSON.stringify(IDENTITY)} }, issuer: ${JSON.stringify(ISSUER)}, trustedRoot });
const t3 = performance.now();
console.log(JSON.stringify({ importMs: t1 - t0, loadRootMs: t2 - t1, verifyMs: t3 - t2, totalMs: t3 - t0 }));
`,
    );
    const coldReps = opts.quick ? 3 : Math.max(5, opts.reps);
    const cold: ColdRun[] = [];
    for (let i = 0; i < coldReps; i++) cold.push(await runCold(script, mod.viaTsx, opts.root));
    opts.log(`verify cold (${mod.viaTsx ? "src via tsx" : "dist"}): total ${cold.map((c) => c.totalMs.toFixed(0)).join(", ")} ms`);

    // Warm: this process, trusted root loaded once.
    const trustedRoot = await loadTrustedRoot();
    const input: VerifyBundleInput = { bundle, digest: DIGEST, identity: { exact: IDENTITY }, issuer: ISSUER, trustedRoot };
    const first0 = performance.now();
    await verifyBundle(input);
    const firstInProcess = performance.now() - first0;
    const warmups = opts.quick ? 3 : 10;
    for (let i = 0; i < warmups; i++) await verifyBundle(input);
    const runs = opts.quick ? 20 : 100;
    const warm: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await verifyBundle(input);
      warm.push(performance.now() - t0);
    }
    opts.log(`verify warm: ${runs} runs after ${warmups} warm-ups; first call in this process ${firstInProcess.toFixed(1)} ms`);

    const goal = { on: "value", op: "<=", value: 100, label: "≤ 100 ms" } as const;
    return {
      rows: [
        makeRow({ group: "verify", name: "verifyBundle v0.7.0 bundle (warm, in-process)", unit: "ms", samples: warm, goal }),
        makeRow({
          group: "verify",
          name: "first verification in a fresh process (import + load root + verify)",
          unit: "ms",
          samples: cold.map((c) => c.totalMs),
          note: `${mod.viaTsx ? "src via tsx (dist not built)" : "dist"}; verify alone median ${(medianOrNull(cold.map((c) => c.verifyMs)) ?? NaN).toFixed(1)} ms`,
        }),
        makeRow({ group: "verify", name: "first verifyBundle call of the fresh process", unit: "ms", samples: cold.map((c) => c.verifyMs), goal }),
      ],
      details: { verify: { cold, firstInProcessMs: firstInProcess, warmRuns: runs, module: mod.viaTsx ? "src (tsx)" : "dist" } },
      notes: ["verify: by digest, fully offline (pinned trusted root); tlog, SCT and timestamp thresholds at their production value of 1."],
    };
  },
};
