import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ROOT, tempDir } from "../helpers/cara.js";

const exec = promisify(execFile);
const BUF = join(ROOT, "node_modules", ".bin", "buf");
const SCRIPT = join(ROOT, "scripts", "check-breaking.mjs");
const OPS = join("proto", "carapace", "ops", "v1", "ops.proto");

/** Runs a command, returning its exit code and output instead of throwing. */
async function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  try {
    const r = await exec(cmd, args, {
      cwd,
      env: {
        ...process.env,
        GIT_CONFIG_GLOBAL: "/dev/null",
        GIT_AUTHOR_NAME: "t",
        GIT_AUTHOR_EMAIL: "t@t",
        GIT_COMMITTER_NAME: "t",
        GIT_COMMITTER_EMAIL: "t@t",
      },
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

/** A copy of the contract (buf.yaml and proto/) in a temp dir. */
async function contractCopy(): Promise<string> {
  const dir = await tempDir("cara-contract-");
  await cp(join(ROOT, "buf.yaml"), join(dir, "buf.yaml"));
  await cp(join(ROOT, "proto"), join(dir, "proto"), { recursive: true });
  return dir;
}

async function edit(dir: string, file: string, from: string, to: string) {
  const text = await readFile(join(dir, file), "utf8");
  assert.ok(text.includes(from), `${file} has ${from}`);
  await writeFile(join(dir, file), text.replace(from, to));
}

const DROP_FIELD = ["  // Open file descriptors (0 where the platform cannot tell).\n  uint32 open_fds = 3;\n", ""] as const;

test("buf breaking catches a deliberately breaking change on a temp copy of the contract (and passes the copy as it is)", async () => {
  const dir = await contractCopy();
  assert.equal((await run(BUF, ["breaking", dir, "--against", ROOT], ROOT)).code, 0);
  await edit(dir, OPS, ...DROP_FIELD);
  await edit(dir, OPS, "rpc TailLogs(TailLogsRequest)", "rpc TailLog(TailLogsRequest)");
  const r = await run(BUF, ["breaking", dir, "--against", ROOT], ROOT);
  assert.equal(r.code, 100);
  assert.match(r.out, /Previously present field "3" with name "open_fds" on message "Diagnostics" was deleted\./);
  assert.match(r.out, /Previously present RPC "TailLogs" on service "OpsService" was deleted\./);
});

test("the contract guard compares against the first commit of the API, so a break spread over commits is caught; then against the newest v* tag", async () => {
  const repo = await contractCopy();
  const git = (...args: string[]) => run("git", args, repo);
  await git("init", "-q", "-b", "main");
  await git("add", ".");
  await git("commit", "-qm", "API v1");
  await edit(repo, OPS, ...DROP_FIELD);
  await git("commit", "-qam", "drop a field");
  await edit(repo, OPS, "// Process-level measurements.", "// Process-level measurements (documented).");
  await git("commit", "-qam", "a harmless change");
  // Against HEAD~1 alone the break would pass unseen.
  assert.equal((await run(BUF, ["breaking", "--against", ".git#ref=HEAD~1"], repo)).code, 0);
  const guard = await run(process.execPath, [SCRIPT], repo);
  assert.equal(guard.code, 100, guard.out);
  assert.match(guard.out, /^== buf breaking against the first commit of the API \([0-9a-f]{12}, which added buf\.yaml\)$/m);
  assert.match(guard.out, /was deleted\./);

  // A release made after the break is the new baseline.
  await git("tag", "v0.2.0");
  await edit(repo, OPS, "(documented)", "(documented again)");
  await git("commit", "-qam", "after the release");
  const tagged = await run(process.execPath, [SCRIPT], repo);
  assert.equal(tagged.code, 0, tagged.out);
  assert.match(tagged.out, /^== buf breaking against the newest release tag v0\.2\.0$/m);

  // A shallow clone fetches the history it needs...
  const clones = await tempDir("cara-clone-");
  const shallow = join(clones, "shallow");
  await run("git", ["clone", "-q", "--depth", "1", "--no-tags", `file://${repo}`, shallow], clones);
  const fetched = await run(process.execPath, [SCRIPT], shallow);
  assert.equal(fetched.code, 0, fetched.out);
  assert.match(fetched.out, /shallow clone; fetching the full history/);
  assert.match(fetched.out, /^== buf breaking against the newest release tag v0\.2\.0$/m);
  // ...and without a remote falls back to the previous commit, saying so.
  const orphan = join(clones, "orphan");
  await run("git", ["clone", "-q", "--depth", "2", `file://${repo}`, orphan], clones);
  await run("git", ["remote", "remove", "origin"], orphan);
  const fallback = await run(process.execPath, [SCRIPT], orphan);
  assert.equal(fallback.code, 0, fallback.out);
  assert.match(fallback.out, /could not fetch the history/);
  assert.match(fallback.out, /^== buf breaking against the previous commit only \(WARNING: a shallow clone without history/m);
});
