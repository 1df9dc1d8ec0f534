/**
 * Shared set-up of the self-update end-to-end tests (update.test.ts, update-crash.test.ts): real
 * releases built by `npm run release`, signed by a test trust root, served by a local
 * GitHub-compatible release server, a state dir whose config points the updater at them, and
 * helpers to drive the CLI and the server started through a managed install's launcher.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before } from "node:test";
import * as tar from "tar";
import { connectJson, ROOT, tempDir, type CaraServer } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";
import { startReleaseServer, type FakeRelease, type ReleaseServer } from "../helpers/release-server.js";
import { signedRelease, TEST_REPO } from "../update/fixtures.js";
import { createTestTrustRoot, type TestTrustRoot } from "../update/sigstore-kit.js";
import { executableAssetName } from "../../src/executable-form.js";

export let kit: TestTrustRoot;
export let work: string;
export let releasesDir: string;
export let server: ReleaseServer;
export let stateDir: string;
export let installDir: string;
export let launcher: string;
export const releases: Record<string, FakeRelease> = {};
const exec = promisify(execFile);

const builds = new Map<string, Promise<string>>();
let building = Promise.resolve();

/**
 * The release tarball of `version`, built by `npm run release` (once per version; the builds
 * run one after the other, in the background of whatever the tests do meanwhile).
 */
export function buildRelease(version: string): Promise<string> {
  let build = builds.get(version);
  if (!build) {
    const out = join(releasesDir, version);
    build = building.then(async () => {
      await exec(process.execPath, [join(ROOT, "scripts", "release.mjs"), "--version", version, "--out", out, "--no-build", "--no-executables"]).catch(
        (err: { stderr?: string }) => {
          throw new Error(`release ${version} failed: ${err.stderr}`);
        },
      );
      return join(out, `carapace-${version}.tar.gz`);
    });
    building = build.then(
      () => undefined,
      () => undefined,
    );
    builds.set(version, build);
  }
  return build;
}

const executables = new Map<string, Promise<string>>();

/**
 * This host's platform executable of `version` (`cara-x86_64-linux`...), built by
 * scripts/build-executable.mjs from the current dist/ once per version, in the same queue as the
 * tarball releases (a build copies and injects a ~100 MB Node binary: one at a time).
 */
export function buildExecutable(version: string): Promise<string> {
  let build = executables.get(version);
  if (!build) {
    const out = join(releasesDir, `executable-${version}`);
    const platform = `${process.platform}-${process.arch}`;
    build = building.then(async () => {
      await exec(process.execPath, [join(ROOT, "scripts", "build-executable.mjs"), "--version", version, "--out", out, "--platform", platform, "--no-build"], {
        maxBuffer: 16 * 1024 * 1024,
      }).catch((err: { stderr?: string }) => {
        throw new Error(`executable ${version} failed: ${err.stderr}`);
      });
      return join(out, executableAssetName()!);
    });
    building = build.then(
      () => undefined,
      () => undefined,
    );
    executables.set(version, build);
  }
  return build;
}

/** A release of `version` carrying this host's executable, signed by the test trust root. */
export async function executableRelease(version: string): Promise<FakeRelease> {
  return signedRelease(kit, await buildExecutable(version), version, { assetName: executableAssetName()! });
}

/** A validly signed release whose server cannot start (module-level throw). */
export async function buildBrokenRelease(version: string): Promise<string> {
  const good = await buildRelease(version);
  const dir = join(releasesDir, `broken-${version}`);
  await mkdir(dir, { recursive: true });
  await tar.x({ file: good, cwd: dir });
  await writeFile(join(dir, `carapace-${version}`, "dist", "src", "server", "server.js"), 'throw new Error("this build is broken");\n');
  const out = join(dir, `carapace-${version}.tar.gz`);
  await tar.c({ gzip: true, file: out, cwd: dir, portable: true }, [`carapace-${version}`]);
  return out;
}

export { until as waitFor } from "../helpers/wait.js";

export const listeningPorts = (s: CaraServer) =>
  s.lines.flatMap((l) => {
    try {
      const r = JSON.parse(l) as { msg?: string; port?: number };
      return r.msg?.startsWith("listening on") && r.port ? [r.port] : [];
    } catch {
      return [];
    }
  });

/** `cara args` (in this process) against the server on `s.port` with the world's state dir. */
export const cli = (s: { port: number }, args: string[]) => runCli([...args, "--port", String(s.port), "--state-dir", stateDir]);
export const current = () => readlink(join(installDir, "current"));

export async function status(port: number) {
  const r = await connectJson(
    { baseUrl: `http://127.0.0.1:${port}` },
    "carapace.update.v1.UpdateService/GetUpdateStatus",
    {},
    (await readFile(join(stateDir, "auth", "token"), "utf8")).trim(),
  );
  return r.json as {
    currentVersion: string;
    rollbackMarker?: { state: string; reason?: string; fromVersion: string; toVersion: string };
    transaction?: { state: string; phase: string };
    previousVersion?: string;
    installedVersions: string[];
    managed: boolean;
    trustedRootOrigin: string;
    trustedRootPath: string;
    trustedRootRefreshedAtMs?: string;
    trustRefresh?: boolean;
  };
}

/**
 * Registers the hooks: test releases v0.9.0 and v0.9.1 (tarballs, or this host's executables for
 * the executable form), the release server, the state dir with its update config. The releases of
 * `later` versions are built in the background from the start.
 */
export function useUpdateWorld(later: string[] = [], form: "tarball" | "executable" = "tarball"): void {
  before(async () => {
    work = await tempDir();
    releasesDir = join(work, "releases");
    const build = form === "executable" ? buildExecutable : buildRelease;
    for (const v of ["0.9.0", "0.9.1", ...later]) void build(v).catch(() => undefined);
    kit = await createTestTrustRoot();
    const rootPath = join(work, "trusted_root.json");
    await kit.writeTo(rootPath);
    for (const v of ["0.9.0", "0.9.1"]) releases[v] = form === "executable" ? await executableRelease(v) : await signedRelease(kit, await buildRelease(v), v);
    server = await startReleaseServer(Object.values(releases));
    stateDir = join(work, "state");
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(
      join(stateDir, "config.json"),
      JSON.stringify({ update: { releasesUrl: server.baseUrl, repository: TEST_REPO, trustedRoot: rootPath, retryDelaysMs: [200, 400, 800] } }),
    );
    installDir = join(work, "opt", "carapace");
    launcher = join(installDir, "bin", "cara");
  });
  after(async () => server?.close());
}
