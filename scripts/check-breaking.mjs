// The contract guard: `buf breaking` against the newest release tag (v*), else against the first
// commit of the API (the one that added buf.yaml), so a break split over several commits is still
// caught, not only one against HEAD~1. Run from the repository to check (CI: the fresh clone).
// Exit: buf's status (0 compatible, 100 breaking), 1 when git or buf cannot run.
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const BUF = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));

function git(...args) {
  const r = spawnSync("git", args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

if (git("rev-parse", "--is-inside-work-tree") !== "true") {
  console.error("check-breaking: not inside a git work tree");
  process.exit(1);
}

// A shallow clone lacks the baseline (and its root commit would look like the API's first):
// fetch the history, or fall back to the previous commit and say so.
let shallow = git("rev-parse", "--is-shallow-repository") === "true";
if (shallow) {
  console.log("check-breaking: shallow clone; fetching the full history and tags for the baseline");
  const fetched = spawnSync("git", ["fetch", "--quiet", "--unshallow", "--tags"], { stdio: "inherit" });
  shallow = git("rev-parse", "--is-shallow-repository") === "true";
  if (fetched.status !== 0 || shallow) console.log("check-breaking: could not fetch the history (no remote, or offline)");
}

let baseline;
let why;
if (!shallow) {
  const tag = git("describe", "--tags", "--abbrev=0", "--match", "v*");
  if (tag) {
    baseline = git("rev-parse", `${tag}^{commit}`);
    why = `the newest release tag ${tag}`;
  } else {
    const first = git("log", "--diff-filter=A", "--format=%H", "--reverse", "--", "buf.yaml")?.split("\n")[0];
    if (first) {
      baseline = first;
      why = `the first commit of the API (${first.slice(0, 12)}, which added buf.yaml)`;
    }
  }
} else if (git("cat-file", "-e", "HEAD~1:buf.yaml") !== undefined) {
  baseline = git("rev-parse", "HEAD~1");
  why =
    "the previous commit only (WARNING: a shallow clone without history; a break spread over several commits can slip through: run `git fetch --unshallow --tags`)";
}

if (!baseline) {
  console.log(
    shallow
      ? "check-breaking: WARNING: skipped, a shallow clone without a previous commit of the API to compare against"
      : "check-breaking: no release tag and no commit with buf.yaml: nothing to compare against yet",
  );
  process.exit(0);
}

const gitDir = git("rev-parse", "--path-format=absolute", "--git-common-dir");
console.log(`== buf breaking against ${why}`);
try {
  execFileSync(BUF, ["breaking", "--against", `${gitDir}#ref=${baseline}`], { stdio: "inherit" });
  console.log("check-breaking: no breaking change");
} catch (err) {
  if (typeof err.status === "number") {
    console.error(
      `check-breaking: the API is not compatible with ${why} (see above). Restore what was removed, renamed or retyped (mark it deprecated instead), or add a new API version.`,
    );
    process.exit(err.status);
  }
  console.error(`check-breaking: could not run buf: ${err.message}`);
  process.exit(1);
}
