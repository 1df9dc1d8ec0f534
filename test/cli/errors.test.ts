import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError, isServerError } from "../../src/cli/rpc.js";
import { parsePayloadFlag } from "../../src/cli/task/common.js";
import type { Target } from "../../src/cli/target.js";
import { rpcError } from "../../src/wire/error-details.js";

const target: Target = { host: "127.0.0.1", port: 18789, tls: false, baseUrl: "http://127.0.0.1:18789", display: "127.0.0.1:18789", token: "t" };

test("the CLI tells a server's answer (ErrorInfo) from a local connection failure without reading messages", () => {
  // The server could not reach the release source: its message names a network code, but our
  // connection to the server worked.
  const fromServer = rpcError("failed to fetch release info: connect ECONNREFUSED 10.0.0.1:443", Code.Unavailable, {
    reason: "UPDATE_UNAVAILABLE",
    retryAfterMs: 5000,
  });
  assert.equal(isServerError(fromServer), true);
  assert.equal(describeError(fromServer, target), "failed to fetch release info: connect ECONNREFUSED 10.0.0.1:443 (Unavailable)");

  const local = new ConnectError(
    "connect ECONNREFUSED 127.0.0.1:18789",
    Code.Unavailable,
    undefined,
    undefined,
    Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
  );
  assert.equal(isServerError(local), false);
  assert.equal(describeError(local, target), "Could not connect to carapace at 127.0.0.1:18789 (connection refused). Is 'cara start' running?");
});

test("--payload: an unknown kind is named from the schema's payload kinds", () => {
  assert.throws(() => parsePayloadFlag('{"kind":"reboot"}'), {
    message: "invalid --payload: unknown payload kind 'reboot' (known: systemEvent, agentTurn, backup, updateCheck)",
  });
  assert.equal(parsePayloadFlag('{"kind":"systemEvent","text":"hi"}').kind.case, "systemEvent");
  assert.throws(() => parsePayloadFlag('{"kind":"systemEvent","text":1}'), /^Error: invalid --payload: /);
});
