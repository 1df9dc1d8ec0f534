/**
 * Artifact download throughput of the updater (src/update/download.ts `downloadFile` through
 * undici: streamed to `<dest>.part`, hashed while writing, fsynced and renamed) versus `curl -s -o`
 * of the same file from the same local server (in its own process), over plain HTTP and over
 * https (the real path to a release host), in the same run. Both download in their own process
 * (ours runs the built dist/ module).
 *
 * The goal row (https) times the downloadFile call inside its process, which is what an update
 * costs (the server that downloads is already running); curl is timed as a whole process (its
 * start-up is a few ms). Another row times our whole process, Node's start-up (~0.1 s) included.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { selfSignedCert } from "../../test/helpers/tls-cert.js";
import { forkWorker, nextMessage, stopProcess } from "../lib/procs.js";
import { makeRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark } from "../lib/types.js";

/**
 * Runs a command; resolves with its wall time and what it printed on stdout. Dirty pages left by
 * earlier runs (and benchmarks) are flushed first, outside the timing: ours fsyncs, curl does
 * not, so otherwise ours would wait for writes that are not its own.
 */
function timed(cmd: string, args: string[], env?: Record<string, string>): Promise<{ ms: number; stdout: string }> {
  spawnSync("sync");
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env: { ...process.env, ...env } } : {}) });
    let out = "";
    let err = "";
    proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (err += c.toString()));
    proc.once("exit", (code) =>
      code === 0 ? resolve({ ms: performance.now() - t0, stdout: out }) : reject(new Error(`${cmd} exited ${code}: ${err.trim()}`)),
    );
  });
}

export const download: Benchmark = {
  name: "download",
  description: "Updater artifact download (downloadFile: stream to .part, SHA-256 while writing, fsync, rename) vs curl -s -o, same local server, same file",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const dist = join(opts.root, "dist", "src", "update", "download.js");
    const client = join(opts.root, "dist", "src", "update", "http-client.js");
    if (!existsSync(dist)) throw new Error("build first (npm run build): dist/src/update/download.js is missing");
    if (spawnSync("curl", ["--version"]).status !== 0) throw new Error("curl is not installed");
    const size = (opts.quick ? 32 : 128) * 1024 * 1024;
    const file = join(opts.tmp, "artifact.bin");
    await writeFile(file, randomBytes(size));
    // The servers run in their own process (bench/workers/release-server.ts); the real path is
    // https (GitHub's CDN), so the same file is also served over TLS, trusted through
    // NODE_EXTRA_CA_CERTS (ours) and --cacert (curl).
    const tls = await selfSignedCert();
    const serverProc = forkWorker(fileURLToPath(new URL("../workers/release-server.ts", import.meta.url)));
    serverProc.stdout?.resume();
    serverProc.stderr?.on("data", (c: Buffer) => process.stderr.write(`[release-server] ${c.toString()}`));
    serverProc.send({ type: "config", file, cert: tls.cert, key: tls.key });
    const { url, tlsUrl } = await nextMessage<{ url: string; tlsUrl: string }>(serverProc, (m) => m?.type === "listening", 20_000, "release server start");
    const script = join(opts.tmp, "download-ours.mjs");
    await writeFile(
      script,
      `const { downloadFile } = await import(${JSON.stringify(pathToFileURL(dist).href)});
// The server that downloads has already asked the release source, which loaded the HTTP client.
await (await import(${JSON.stringify(pathToFileURL(client).href)})).updateDispatcher();
const t0 = performance.now();
await downloadFile({ url: process.argv[2], dest: process.argv[3], userAgent: "cara-bench", expectedSize: ${size} });
process.stdout.write(String(performance.now() - t0));
`,
    );
    const reps = opts.quick ? 3 : Math.max(5, opts.reps);
    const ours: number[] = [];
    const oursProcess: number[] = [];
    const curl: number[] = [];
    const curlHash: number[] = [];
    const oursTls: number[] = [];
    const curlTls: number[] = [];
    try {
      // Alternate so both see the same page cache and machine state.
      for (let i = 0; i < reps + 1; i++) {
        const a = join(opts.tmp, `ours-${i}.bin`);
        const b = join(opts.tmp, `curl-${i}.bin`);
        const runOurs = await timed(process.execPath, [script, url, a]);
        const tOurs = Number(runOurs.stdout);
        const tCurl = (await timed("curl", ["-s", "-f", "-o", b, url])).ms;
        await rm(b, { force: true });
        // The same work as ours: download, then the SHA-256 of what was written.
        const tCurlHash = (await timed("sh", ["-c", `curl -s -f -o '${b}' '${url}' && sha256sum '${b}' >/dev/null`])).ms;
        await rm(a, { force: true });
        await rm(b, { force: true });
        const tOursTls = Number((await timed(process.execPath, [script, tlsUrl, a], { NODE_EXTRA_CA_CERTS: tls.cert })).stdout);
        const tCurlTls = (await timed("curl", ["-s", "-f", "--cacert", tls.cert, "-o", b, tlsUrl])).ms;
        await rm(a, { force: true });
        await rm(b, { force: true });
        if (i === 0) continue; // warm-up
        oursTls.push(size / 1048576 / (tOursTls / 1000));
        curlTls.push(size / 1048576 / (tCurlTls / 1000));
        ours.push(size / 1048576 / (tOurs / 1000));
        oursProcess.push(size / 1048576 / (runOurs.ms / 1000));
        curl.push(size / 1048576 / (tCurl / 1000));
        curlHash.push(size / 1048576 / (tCurlHash / 1000));
      }
    } finally {
      await stopProcess(serverProc, "SIGTERM", 3000);
    }
    opts.log(`download over https: ours ${oursTls.map((v) => v.toFixed(0)).join(", ")} MiB/s; curl ${curlTls.map((v) => v.toFixed(0)).join(", ")} MiB/s`);
    opts.log(
      `download: ours ${ours.map((v) => v.toFixed(0)).join(", ")} MiB/s (whole process ${oursProcess.map((v) => v.toFixed(0)).join(", ")}); curl ${curl.map((v) => v.toFixed(0)).join(", ")} MiB/s; curl + sha256sum ${curlHash.map((v) => v.toFixed(0)).join(", ")} MiB/s`,
    );
    const curlRow = makeRow({ group: "download", name: `curl -s -o (${size / 1048576} MiB, local HTTP)`, unit: "MiB/s", samples: curl });
    return {
      rows: [
        curlRow,
        makeRow({
          group: "download",
          name: `downloadFile call (${size / 1048576} MiB, SHA-256 + fsync + rename)`,
          unit: "MiB/s",
          samples: ours,
          baseline: { name: "curl", samples: curl },
        }),
        makeRow({
          group: "download",
          name: "downloadFile, whole process (Node start-up included)",
          unit: "MiB/s",
          samples: oursProcess,
          baseline: { name: "curl", samples: curl },
        }),
        makeRow({ group: "download", name: `curl -s --cacert -o over https (${size / 1048576} MiB, local TLS)`, unit: "MiB/s", samples: curlTls }),
        makeRow({
          group: "download",
          name: "downloadFile call over https",
          unit: "MiB/s",
          samples: oursTls,
          baseline: { name: "curl over https", samples: curlTls },
          goal: { on: "ratio", op: ">=", value: 0.8, label: "≥ 0.8×" },
        }),
        makeRow({
          group: "download",
          name: "downloadFile call vs curl + sha256sum (the same work)",
          unit: "MiB/s",
          samples: ours,
          baseline: { name: "curl + sha256sum", samples: curlHash },
        }),
      ],
      notes: [
        "download: each side runs in a fresh process; the goal row times the downloadFile call inside it (an update runs in the already-started server), curl is timed whole. Ours also computes the SHA-256 while writing and fsyncs (early write-back every 8 MiB); curl does neither.",
      ],
    };
  },
};
