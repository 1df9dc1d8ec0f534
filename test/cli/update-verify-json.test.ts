import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

test("cara update verify --json: a failed verification is the error document (exit 1), a pass is its record", async () => {
  const bundle = join(ROOT, "test", "fixtures", "update", "v0.7.0-sha256sums.bundle");
  const digest = "sha256:acc4012c1a51190fc354e4e5d77ebe0779097e36d30e3ce523efb05581394163";
  const issuer = "https://token.actions.githubusercontent.com";
  const identity = (tag: string) => `https://github.com/puremachinery/carapace/.github/workflows/release.yml@refs/tags/${tag}`;
  const ok = await runCli([
    "update",
    "verify",
    digest,
    "--bundle",
    bundle,
    "--certificate-identity",
    identity("v0.7.0"),
    "--certificate-oidc-issuer",
    issuer,
    "--json",
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  const pass = JSON.parse(ok.stdout);
  assert.deepEqual([pass.verified, pass.identity, pass.issuer], [true, identity("v0.7.0"), issuer]);

  const wrong = await runCli([
    "update",
    "verify",
    digest,
    "--bundle",
    bundle,
    "--certificate-identity",
    identity("v0.7.1"),
    "--certificate-oidc-issuer",
    issuer,
    "--json",
  ]);
  assert.deepEqual([wrong.code, wrong.stderr], [1, ""]);
  const doc = JSON.parse(wrong.stdout);
  assert.deepEqual(Object.keys(doc), ["error"]);
  assert.equal(doc.error.code, "failed");
  assert.match(doc.error.message, /^verification failed: bundle verification failed: /);
  assert.deepEqual(doc.error.details, { reason: "VERIFICATION_FAILED", metadata: { digest: digest.slice("sha256:".length) } });
});
