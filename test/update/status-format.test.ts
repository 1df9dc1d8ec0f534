import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { GetUpdateStatusResponseSchema } from "../../gen/carapace/update/v1/update_pb.js";
import { formatStatus } from "../../src/cli/update/status-text.js";

const trustedRootLine = (fields: Parameters<typeof create<typeof GetUpdateStatusResponseSchema>>[1]) =>
  formatStatus(create(GetUpdateStatusResponseSchema, { currentVersion: "0.9.1", ...fields }))
    .split("\n")
    .find((l) => l.startsWith("Trusted root:"));

test("cara update --status names the trusted root: configured, refreshed through TUF (with when), pinned", () => {
  assert.equal(
    trustedRootLine({ trustedRootOrigin: "configured", trustedRootPath: "/etc/cara/trusted_root.json" }),
    "Trusted root:      /etc/cara/trusted_root.json (update.trustedRoot; never refreshed)",
  );
  assert.equal(
    trustedRootLine({ trustedRootOrigin: "refreshed", trustedRootPath: "/s/updates/tuf/x-1/trusted_root.json", trustedRootRefreshedAtMs: BigInt(Date.UTC(2026, 10, 27, 9, 0)), trustRefresh: true }),
    "Trusted root:      /s/updates/tuf/x-1/trusted_root.json (fetched through TUF 2026-11-27T09:00:00.000Z; TUF refresh before each verification)",
  );
  assert.equal(
    trustedRootLine({ trustedRootOrigin: "pinned", trustedRootPath: "/opt/cara/assets/sigstore/trusted_root.json", trustRefresh: false }),
    "Trusted root:      /opt/cara/assets/sigstore/trusted_root.json (pinned with cara; TUF refresh off)",
  );
});
