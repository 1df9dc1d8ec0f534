// Fails when gen/ does not match what `buf generate` makes from proto/ (gen/ is never edited by hand).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = mkdtempSync(join(tmpdir(), "cara-gen-"));
try {
  execFileSync("node_modules/.bin/buf", ["generate", "--template", "buf.gen.yaml", "-o", out], { stdio: "inherit" });
  try {
    execFileSync("diff", ["-r", join(out, "gen"), "gen"], { stdio: "inherit" });
  } catch {
    console.error("gen/ is out of date with proto/: run 'npm run generate' and commit the result.");
    process.exit(1);
  }
  console.log("gen/ matches proto/");
} finally {
  rmSync(out, { recursive: true, force: true });
}
