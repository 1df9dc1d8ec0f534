import { readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Transpiles a self-contained TypeScript worker (node: imports only) to a plain .mjs file in
 * `dir`, so that it runs on bare `node` without the tsx loader: a baseline must carry no more
 * than node itself (memory, startup).
 */
export async function plainWorker(relative: string, dir: string): Promise<string> {
  const src = fileURLToPath(new URL(relative, import.meta.url));
  const ts = (await import("typescript")).default;
  const out = ts.transpileModule(await readFile(src, "utf8"), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    fileName: src,
  });
  const file = join(dir, basename(src).replace(/\.ts$/, ".mjs"));
  await writeFile(file, out.outputText);
  return file;
}
