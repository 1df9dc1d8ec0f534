// The entry point of the platform executables (scripts/build-executable.mjs bundles it): what
// bin/cara.js does for the tarball, without its check for a built dist/ (the bundle is dist/) and
// without top-level await (the bundle is CommonJS, the format a Node single-executable runs).
import { main } from "../dist/src/cli/main.js";

// A reader that goes away (`cara task list | head`) is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}
// In a single-executable application process.argv is [executable, executable, ...arguments],
// the same shape as [node, script, ...arguments].
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Give stdout/stderr a moment to drain, then make sure nothing keeps the process alive.
    setTimeout(() => process.exit(code), 3000).unref();
  },
  (err) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
