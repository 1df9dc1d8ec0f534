import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCara } from "../lib/cara.js";
import { plainWorker } from "../lib/plain.js";
import { cleanEnv } from "../lib/procs.js";
import { makeRow, unavailableRow } from "../lib/stats.js";
import type { BenchOptions, BenchResult, Benchmark, Goal, Row } from "../lib/types.js";

/** Goals against `node -e ''` in the same run: a verb that calls the server ≤ 2x, `cara version` ≤ 1.5x. */
const GOAL: Goal = { on: "ratio", op: "<=", value: 2, label: "≤ 2× node -e ''" };
const VERSION_GOAL: Goal = { on: "ratio", op: "<=", value: 1.5, label: "≤ 1.5× node -e ''" };

interface Run {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node args` to completion and measures its wall time (spawn to exit). */
function timeNode(args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv(), timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn(process.execPath, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`node ${args.join(" ")} timed out`));
    }, timeoutMs);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - t0, code, stdout, stderr });
    });
  });
}

/** A module-resolution trace: a preload that records every ESM URL resolved and every CJS module loaded. */
async function writeTracePreload(dir: string): Promise<{ preload: string; hooks: string }> {
  const hooks = join(dir, "trace-hooks.mjs");
  const preload = join(dir, "trace-preload.mjs");
  await writeFile(
    hooks,
    `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (process.env.CARA_BENCH_TRACE) appendFileSync(process.env.CARA_BENCH_TRACE, "esm " + r.url + "\\n");
  return r;
}
`,
  );
  await writeFile(
    preload,
    `import { register, createRequire } from "node:module";
import { appendFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
register(${JSON.stringify(new URL(`file://${hooks}`).href)});
process.on("exit", () => {
  const cache = createRequire(pathToFileURL(process.cwd() + "/").href).cache;
  appendFileSync(process.env.CARA_BENCH_TRACE, Object.keys(cache).map((k) => "cjs " + k + "\\n").join(""));
});
`,
  );
  return { preload, hooks };
}

interface Graph {
  modules: number;
  bytes: number;
  builtins: number;
  byPackage: { name: string; modules: number; kib: number }[];
}

function packageOf(path: string, root: string): string {
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + 14).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith(root)) {
    const rel = path.slice(root.length + 1);
    if (rel.startsWith("dist/gen/")) return "ours: gen/";
    if (rel.startsWith("dist/src/")) return `ours: src/${rel.split("/")[2]}`;
    return `ours: ${rel}`;
  }
  return "other";
}

function readGraph(traceFile: string, root: string): Graph {
  let text = "";
  try {
    text = readFileSync(traceFile, "utf8");
  } catch {
    // nothing traced
  }
  const files = new Set<string>();
  const builtins = new Set<string>();
  for (const line of text.split("\n")) {
    const [kind, ref] = [line.slice(0, 3), line.slice(4)];
    if (!ref) continue;
    if (kind === "esm") {
      if (ref.startsWith("node:")) builtins.add(ref);
      else if (ref.startsWith("file://")) files.add(fileURLToPath(ref));
    } else if (kind === "cjs") {
      if (ref.startsWith("/")) files.add(ref);
      else builtins.add(ref);
    }
  }
  const pkgs = new Map<string, { modules: number; bytes: number }>();
  let bytes = 0;
  for (const f of files) {
    let size = 0;
    try {
      size = statSync(f).size;
    } catch {
      // gone
    }
    bytes += size;
    const p = packageOf(f, root);
    const e = pkgs.get(p) ?? { modules: 0, bytes: 0 };
    e.modules++;
    e.bytes += size;
    pkgs.set(p, e);
  }
  return {
    modules: files.size,
    bytes,
    builtins: builtins.size,
    byPackage: [...pkgs.entries()].map(([name, e]) => ({ name, modules: e.modules, kib: Math.round(e.bytes / 102.4) / 10 })).sort((a, b) => b.kib - a.kib),
  };
}

/** The bare specifier to time for a package seen in the graph (plus sub-paths the CLI uses). */
const EXTRA_SPECIFIERS: Record<string, string[]> = { "@bufbuild/protobuf": ["@bufbuild/protobuf/wkt"] };

/**
 * CLI latency: wall time of `cara status`, `cara version`, `cara task list` and `cara logs -n 200`
 * (spawn to exit) against a running server, versus `node -e ''` (and, for reference, `node -e`
 * doing one fetch of /health), all in the same run;
 * plus the import time of each dependency the CLI loads and the size of its import graph.
 */
export const cli: Benchmark = {
  name: "cli",
  description: "wall time of cara status/version/task list/logs vs node -e ''; import times; import graph",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const rows: Row[] = [];
    const notes: string[] = [];
    const details: Record<string, unknown> = {};
    const cara = await startCara(opts.root, join(opts.tmp, "cli-state"));
    const bin = join(opts.root, "bin", "cara.js");
    const conn = ["--port", String(cara.port), "--state-dir", cara.stateDir];
    const reps = opts.quick ? 4 : 21;
    try {
      const commands: { key: string; label: string; args: string[]; goal?: Goal; optional?: boolean }[] = [
        {
          key: "fetch",
          label: "node -e 'fetch /health'",
          args: ["-e", `fetch("http://127.0.0.1:${cara.port}/health").then((r) => r.text()).then((t) => process.stdout.write(t))`],
        },
        { key: "node", label: "node -e '' (process start floor, the baseline)", args: ["-e", ""] },
        { key: "status", label: "cara status", args: [bin, "status", ...conn], goal: GOAL },
        { key: "version", label: "cara version", args: [bin, "version"], goal: VERSION_GOAL },
        { key: "task-list", label: "cara task list", args: [bin, "task", "list", ...conn], goal: GOAL, optional: true },
        { key: "logs", label: "cara logs -n 200", args: [bin, "logs", "-n", "200", ...conn], goal: GOAL, optional: true },
        {
          key: "light",
          label: "prototype: lean status (clipanion + node:http, Connect JSON)",
          args: [await plainWorker("../workers/cli-light.ts", opts.out), "status", ...conn],
        },
      ];
      // Probe each command once; a command that is not there yet is reported, not failed.
      const active: typeof commands = [];
      for (const c of commands) {
        const r = await timeNode(c.args, opts.root);
        const missing = /Unknown Syntax Error|Command not found|does not support this yet|not implemented yet|UNIMPLEMENTED/i.test(r.stderr);
        if (r.code !== 0 && (missing || c.optional)) {
          const why = (r.stderr.split("\n").find((l) => l.trim()) ?? `exit ${r.code}`).slice(0, 140);
          rows.push(unavailableRow("cli", `${c.label}: wall time`, "ms", `not available yet: ${why}`, c.goal));
          continue;
        }
        if (r.code !== 0 && c.key !== "status") throw new Error(`${c.label} exited ${r.code}: ${r.stderr.slice(0, 300)}`);
        active.push(c);
      }
      const times = new Map<string, number[]>(active.map((c) => [c.key, []]));
      const warm = opts.quick ? 1 : 2;
      opts.log(`cli: ${reps} runs of ${active.map((c) => c.key).join(", ")} (interleaved, ${warm} warm-up runs each)`);
      for (let rep = -warm; rep < reps; rep++) {
        for (const c of active) {
          const r = await timeNode(c.args, opts.root);
          if (rep >= 0) times.get(c.key)!.push(r.ms);
        }
      }
      const baseline = { name: "node -e ''", samples: times.get("node")! };
      for (const c of active) {
        rows.push(
          makeRow({
            group: "cli",
            name: `${c.label}: wall time`,
            unit: "ms",
            samples: times.get(c.key)!,
            ...(c.key !== "node" ? { baseline } : {}),
            ...(c.goal ? { goal: c.goal } : {}),
          }),
        );
      }

      // Import time of each dependency, each in a fresh process (no shared cache).
      const { preload } = await writeTracePreload(opts.tmp);
      const graphs: Record<string, Graph> = {};
      for (const c of active.filter((x) => ["status", "version", "task-list"].includes(x.key))) {
        const trace = join(opts.tmp, `trace-${c.key}.txt`);
        await timeNode(["--import", preload, ...c.args], opts.root, cleanEnv({ CARA_BENCH_TRACE: trace }));
        graphs[c.key] = readGraph(trace, opts.root);
        const g = graphs[c.key]!;
        rows.push(
          makeRow({ group: "cli", name: `${c.label}: modules loaded (files)`, unit: "files", samples: [g.modules], note: `${g.builtins} node: built-ins` }),
        );
        rows.push(makeRow({ group: "cli", name: `${c.label}: JavaScript loaded`, unit: "KiB", samples: [g.bytes / 1024] }));
      }
      details.importGraphs = graphs;

      const pkgs = new Set<string>();
      for (const g of Object.values(graphs)) for (const p of g.byPackage) if (!p.name.startsWith("ours") && p.name !== "other") pkgs.add(p.name);
      const specs: string[] = [];
      for (const p of [...pkgs].sort()) specs.push(p, ...(EXTRA_SPECIFIERS[p] ?? []));
      specs.push("./dist/gen/carapace/ops/v1/ops_pb.js", "./dist/src/cli/main.js");
      const importReps = opts.quick ? 3 : 7;
      opts.log(opts.quick ? `cli: marginal import times × ${importReps}` : `cli: import time of ${specs.length} modules alone, and marginal, × ${importReps}`);
      const importRows: { spec: string; ms: number[] }[] = specs.map((spec) => ({ spec, ms: [] }));
      // --quick measures only the marginal costs below (one process per repetition).
      for (let rep = 0; rep < (opts.quick ? 0 : importReps); rep++) {
        for (const row of importRows) {
          const code = `const t0 = performance.now(); await import(${JSON.stringify(row.spec)}); process.stdout.write(String(performance.now() - t0));`;
          const r = await timeNode(["--input-type=module", "-e", code], opts.root);
          if (r.code === 0) row.ms.push(Number(r.stdout));
        }
      }
      for (const row of opts.quick ? [] : importRows) {
        rows.push(
          makeRow({
            group: "cli imports",
            name: `import ${row.spec} (alone)`,
            unit: "ms",
            samples: row.ms,
            ...(row.spec.includes("main.js") ? { note: "the CLI's whole static graph" } : {}),
          }),
        );
      }

      // Marginal cost in load order, one process: what each step adds to the ones before it.
      const order = [
        "clipanion",
        "@bufbuild/protobuf",
        "@bufbuild/protobuf/wkt",
        "./dist/gen/carapace/ops/v1/ops_pb.js",
        "@connectrpc/connect",
        "./dist/src/cli/main.js",
        "@connectrpc/connect-node",
      ];
      const marginal: number[][] = order.map(() => []);
      const script =
        `const specs = ${JSON.stringify(order)}; const out = [];` +
        `for (const s of specs) { const t0 = performance.now(); await import(s); out.push(performance.now() - t0); }` +
        `process.stdout.write(JSON.stringify(out));`;
      for (let rep = 0; rep < importReps; rep++) {
        const r = await timeNode(["--input-type=module", "-e", script], opts.root);
        if (r.code !== 0) continue;
        for (const [i, ms] of (JSON.parse(r.stdout) as number[]).entries()) marginal[i]!.push(ms);
      }
      order.forEach((spec, i) => {
        rows.push(
          makeRow({
            group: "cli imports",
            name: `+ ${spec} (marginal, in this order)`,
            unit: "ms",
            samples: marginal[i]!,
            ...(spec.includes("main.js")
              ? { note: "rest of the CLI's static graph" }
              : spec.endsWith("connect-node")
                ? { note: "loaded lazily by status/task commands" }
                : {}),
          }),
        );
      });
      const status = graphs.status;
      if (status) {
        notes.push(
          `cli: 'cara status' loads ${status.modules} files (${(status.bytes / 1024).toFixed(0)} KiB): ${status.byPackage.map((p) => `${p.name} ${p.modules}/${p.kib} KiB`).join(", ")}.`,
        );
      }
      notes.push(
        `cli: wall time is spawn → exit of a fresh node process, ${reps} interleaved runs each after ${opts.quick ? 1 : 2} warm-up(s); import times are measured in a fresh process per import (each includes that module's own dependencies).`,
      );
      return { rows, notes, details };
    } finally {
      await cara.stop();
    }
  },
};
