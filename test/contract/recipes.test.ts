import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ROOT, tempDir } from "../helpers/cara.js";

const exec = promisify(execFile);
const BUF = join(ROOT, "node_modules", ".bin", "buf");
const DUMP = join(ROOT, "test", "fixtures", "protoc-gen-dump.mjs");

test("the Go recipe (buf.gen.go.yaml): managed mode gives every API file a go_package under the module prefix; proto/ carries no Go options", async () => {
  // The Buf registry is not reachable here: the remote plugins are swapped for a local one that
  // records the options managed mode set.
  let n = 0;
  const recipe = (await readFile(join(ROOT, "buf.gen.go.yaml"), "utf8"))
    .replace(/remote: buf\.build\/\S+/g, () => `local: ${DUMP}`)
    .replace(/opt: paths=source_relative/g, () => `opt: plugin${++n}`);
  assert.equal(n, 3, "three plugins: go, grpc-go, connect-go");
  const dir = await tempDir("cara-go-recipe-");
  await writeFile(join(dir, "buf.gen.yaml"), recipe);
  await exec(BUF, ["generate", "--template", join(dir, "buf.gen.yaml"), "-o", dir], { cwd: ROOT });
  const outputs = (await readdir(join(dir, "clients", "go"))).filter((f) => f.startsWith("plugin1."));
  const seen: Record<string, { goPackage: string }> = {};
  for (const f of outputs) Object.assign(seen, JSON.parse(await readFile(join(dir, "clients", "go", f), "utf8")));
  assert.deepEqual(Object.keys(seen).sort(), [
    "carapace/backup/v1/backup.proto",
    "carapace/ops/v1/ops.proto",
    "carapace/tasks/v1/schedules.proto",
    "carapace/tasks/v1/tasks.proto",
    "carapace/update/v1/update.proto",
  ]);
  for (const [file, opts] of Object.entries(seen)) {
    const dirOf = file.slice(0, file.lastIndexOf("/"));
    assert.match(opts.goPackage, new RegExp(`^example\\.com/yourmodule/carapace/${dirOf.replace(/\//g, "\\/")}(;\\w+)?$`), file);
  }
  const sources = await Promise.all(Object.keys(seen).map((f) => readFile(join(ROOT, "proto", f), "utf8")));
  for (const text of sources) assert.doesNotMatch(text, /option (go_package|java_package|csharp_namespace|objc_class_prefix)/);
});
