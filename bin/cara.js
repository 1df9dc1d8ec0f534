#!/usr/bin/env node
// The `cara` command. Runs the compiled CLI from dist/ (build it with `npm run build`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("Error: cara is not built yet. Run 'npm run build' in the cara directory first.\n");
  process.exit(1);
}
// A reader that goes away (`cara task list | head`) is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Give stdout/stderr a moment to drain, then make sure nothing keeps the process alive.
setTimeout(() => process.exit(code), 3000).unref();
