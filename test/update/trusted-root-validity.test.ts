/**
 * A trusted root whose validity windows are incomplete is malformed (src/update/trusted-root-validity.ts):
 * the library would read a missing `start` as the beginning of time and trust the key or CA for
 * any date. Each case is refused at load time naming the file and the field, and at
 * verification time; the intact root verifies the same bundle (so the refusal is the window's).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { defaultTrustedRootPath, loadTrustedRoot, UpdateVerificationError, verifyBundle } from "../../src/update/sigstore-bundle.js";
import { validityWindowProblem } from "../../src/update/trusted-root-validity.js";
import { createTestTrustRoot, TEST_ISSUER, type TestTrustRoot } from "./sigstore-kit.js";

const IDENTITY = "https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1.0.0";
const digest = createHash("sha256").update("artifact\n").digest("hex");
const UNBOUNDED = "(every entry needs the start of its validity window; without it the entry would be trusted for any date)";

type Root = Record<string, unknown> & {
  tlogs: { publicKey: { validFor?: Record<string, unknown> } }[];
  ctlogs: { publicKey: { validFor?: Record<string, unknown> } }[];
  certificateAuthorities: { validFor?: Record<string, unknown> }[];
  timestampAuthorities: { validFor?: Record<string, unknown> }[];
};

let kit: TestTrustRoot;
let bundle: Uint8Array;
let dir: string;

before(async () => {
  kit = await createTestTrustRoot();
  bundle = await kit.sign({ digest }, { identity: IDENTITY, issuer: TEST_ISSUER });
  dir = await mkdtemp(join(tmpdir(), "cara-root-windows-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const copy = (): Root => structuredClone(kit.trustedRootJson) as Root;

const cases: [string, (r: Root) => void, string][] = [
  ["a tlog key without validFor.start", (r) => delete r.tlogs[0]!.publicKey.validFor!.start, `tlogs[0].publicKey.validFor.start is missing ${UNBOUNDED}`],
  ["a tlog key without validFor", (r) => delete r.tlogs[0]!.publicKey.validFor, `tlogs[0].publicKey.validFor is missing ${UNBOUNDED}`],
  ["a CT log key without validFor.start", (r) => delete r.ctlogs[0]!.publicKey.validFor!.start, `ctlogs[0].publicKey.validFor.start is missing ${UNBOUNDED}`],
  [
    "a CA without validFor.start",
    (r) => delete r.certificateAuthorities[0]!.validFor!.start,
    `certificateAuthorities[0].validFor.start is missing ${UNBOUNDED}`,
  ],
  [
    "a tlog key whose start is not a timestamp",
    (r) => (r.tlogs[0]!.publicKey.validFor!.start = "yesterday"),
    'tlogs[0].publicKey.validFor.start is "yesterday", not an RFC 3339 timestamp (e.g. "2021-01-12T11:53:27Z")',
  ],
  [
    "a tlog key whose end is before its start",
    (r) => (r.tlogs[0]!.publicKey.validFor = { start: "2026-01-02T00:00:00Z", end: "2026-01-01T00:00:00Z" }),
    "tlogs[0].publicKey.validFor.end (2026-01-01T00:00:00Z) is before its start (2026-01-02T00:00:00Z)",
  ],
  [
    "a timestamp authority without validFor.start",
    (r) => r.timestampAuthorities.push({ ...(structuredClone(r.certificateAuthorities[0]!) as object), validFor: {} }),
    `timestampAuthorities[0].validFor.start is missing ${UNBOUNDED}`,
  ],
];

describe("trusted root validity windows", () => {
  test("the intact test root verifies the bundle (each case below breaks only the window)", async () => {
    const root = await loadTrustedRoot(await write("intact.json", copy()));
    const r = await verifyBundle({ bundle, digest, identity: { exact: IDENTITY }, issuer: TEST_ISSUER, trustedRoot: root });
    assert.equal(r.identity, IDENTITY);
  });

  test("the pinned public-good root has every window", async () => {
    const pinned = JSON.parse(await readFile(defaultTrustedRootPath(), "utf8")) as Record<string, unknown>;
    assert.equal(validityWindowProblem(pinned), undefined);
  });

  for (const [name, breakIt, reason] of cases) {
    test(`${name} is malformed: refused at load and at verification, naming the file and the field`, async () => {
      const json = copy();
      breakIt(json);
      const file = await write(`${name.replaceAll(" ", "-")}.json`, json);
      await assert.rejects(loadTrustedRoot(file), (err: unknown) => {
        assert.ok(err instanceof UpdateVerificationError);
        assert.equal(err.kind, "trusted_root");
        assert.equal(err.code, "TRUSTED_ROOT_ERROR");
        assert.equal(err.message, `failed to initialize sigstore trust root from ${file}: malformed trusted root: ${reason}`);
        return true;
      });
      await assert.rejects(verifyBundle({ bundle, digest, identity: { exact: IDENTITY }, issuer: TEST_ISSUER, trustedRoot: { path: file, json } }), {
        message: `failed to initialize sigstore trust root from ${file}: malformed trusted root: ${reason}`,
      });
    });
  }
});

async function write(name: string, json: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(json));
  return file;
}
