import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { unreachable } from "../../src/update/http-client.js";
import { assetUrl, isSemver, parseRelease, pickNewest, ReleaseSource, ReleaseSourceError, type ReleaseErrorKind } from "../../src/update/releases.js";
import { startReleaseServer, type FakeRelease, type ReleaseServer } from "../helpers/release-server.js";

let server: ReleaseServer;
const UA = "cara/0.1.0";

const rel = (tag: string, extra: Partial<FakeRelease> = {}): FakeRelease => ({
  tag,
  assets: [
    { name: `carapace-${tag.replace(/^v/, "")}.tar.gz`, body: `tarball ${tag}` },
    { name: "SHA256SUMS.txt", body: `sums ${tag}\n` },
  ],
  ...extra,
});

before(async () => {
  server = await startReleaseServer();
});
after(async () => {
  await server.close();
});

function source(opts: { timeoutMs?: number; maxBodyBytes?: number; baseUrl?: string } = {}): ReleaseSource {
  return new ReleaseSource({ baseUrl: server.baseUrl, userAgent: UA, ...opts });
}

async function rejectsWith(p: Promise<unknown>, expected: { kind: ReleaseErrorKind; message: string | RegExp; retryable: boolean; status?: number }) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ReleaseSourceError, `not a ReleaseSourceError: ${String(err)}`);
    assert.equal(err.kind, expected.kind);
    if (typeof expected.message === "string") assert.equal(err.message, expected.message);
    else assert.match(err.message, expected.message);
    assert.equal(err.retryable, expected.retryable);
    assert.equal(err.status, expected.status);
    return true;
  });
}

test("latest, byVersion and list parse GitHub's JSON; headers are GitHub's", async () => {
  server.setReleases([rel("v0.1.0"), rel("v0.2.0"), rel("v0.3.0-beta.1", { prerelease: true })]);
  server.clearLog();
  const src = source();
  const latest = await src.latest();
  assert.equal(latest.tag, "v0.2.0");
  assert.equal(latest.version, "0.2.0");
  assert.equal(latest.prerelease, false);
  assert.equal(latest.draft, false);
  assert.equal(latest.htmlUrl, `${server.origin}/carapace/cara/releases/tag/v0.2.0`);
  assert.ok(latest.publishedAt instanceof Date);
  assert.deepEqual(latest.assets, [
    { name: "carapace-0.2.0.tar.gz", url: server.assetUrl("v0.2.0", "carapace-0.2.0.tar.gz"), size: "tarball v0.2.0".length },
    { name: "SHA256SUMS.txt", url: server.assetUrl("v0.2.0", "SHA256SUMS.txt"), size: "sums v0.2.0\n".length },
  ]);
  assert.equal(assetUrl(latest, "SHA256SUMS.txt")?.url, server.assetUrl("v0.2.0", "SHA256SUMS.txt"));
  assert.equal(assetUrl(latest, "SHA256SUMS"), undefined);

  assert.equal((await src.byVersion("0.1.0")).tag, "v0.1.0");
  assert.equal((await src.byVersion("v0.1.0")).tag, "v0.1.0");
  const beta = await src.byVersion("0.3.0-beta.1");
  assert.equal(beta.prerelease, true);
  assert.equal(beta.version, "0.3.0-beta.1");

  const list = await src.list();
  assert.deepEqual(
    list.map((r) => r.tag),
    ["v0.3.0-beta.1", "v0.2.0", "v0.1.0"],
  );

  const paths = server.log.map((e) => e.path);
  assert.deepEqual(paths, [
    "/repos/carapace/cara/releases/latest",
    "/repos/carapace/cara/releases/tags/v0.1.0",
    "/repos/carapace/cara/releases/tags/v0.1.0",
    "/repos/carapace/cara/releases/tags/v0.3.0-beta.1",
    "/repos/carapace/cara/releases?per_page=100",
  ]);
  for (const e of server.log) {
    assert.equal(e.userAgent, UA);
    assert.equal(e.accept, "application/vnd.github+json");
  }
});

test("a trailing slash on the base URL is fine", async () => {
  server.setReleases([rel("v1.0.0")]);
  assert.equal((await source({ baseUrl: `${server.baseUrl}/` }).latest()).tag, "v1.0.0");
});

test("newest: semver order, pre-releases only on beta, drafts and non-semver tags ignored", async () => {
  server.setReleases([
    rel("v1.10.0"),
    rel("v1.9.0"), // published later, lower version: order is by semver, not by list position
    rel("v1.2.0"),
    rel("nightly-2026-01-01"),
    rel("v2.0.0", { draft: true }),
    rel("v1.11.0-rc.1", { prerelease: true }),
    rel("v1.11.0-rc.2"), // a pre-release version not flagged as such is still a pre-release
    rel("v1.10.1", { prerelease: true }), // flagged: stable skips it
    rel("v01.2.3"),
  ]);
  const src = source();
  assert.equal((await src.newest("stable")).tag, "v1.10.0");
  assert.equal((await src.newest("beta")).tag, "v1.11.0-rc.2");

  server.setReleases([rel("v1.0.0-beta.1", { prerelease: true }), rel("v3.0.0", { draft: true }), rel("latest")]);
  await rejectsWith(src.newest("stable"), { kind: "not_found", message: "no release found on channel stable", retryable: false });
  assert.equal((await src.newest("beta")).tag, "v1.0.0-beta.1");
  server.setReleases([]);
  await rejectsWith(src.newest("beta"), { kind: "not_found", message: "no release found on channel beta", retryable: false });
});

test("pickNewest and isSemver on their own", () => {
  assert.equal(isSemver("1.2.3"), true);
  assert.equal(isSemver("1.2.3+build.5"), true);
  assert.equal(isSemver("1.3.0-beta.1"), true);
  for (const bad of ["v1.2.3", "1.2", "01.2.3", " 1.2.3", "latest", ""]) assert.equal(isSemver(bad), false, bad);
  const r = (tag: string, prerelease = false) => parseRelease({ tag_name: tag, prerelease });
  assert.equal(pickNewest([r("v1.0.0"), r("v1.0.0-rc.1"), r("v0.9.9")], "stable")?.tag, "v1.0.0");
  assert.equal(pickNewest([r("v1.0.0-rc.1"), r("v0.9.9")], "beta")?.tag, "v1.0.0-rc.1");
  assert.equal(pickNewest([], "beta"), undefined);
});

test("404: not_found, with the version and the source named for byVersion", async () => {
  server.setReleases([rel("v1.0.0")]);
  const src = source();
  await rejectsWith(src.byVersion("9.9.9"), { kind: "not_found", message: `release v9.9.9 not found at ${server.baseUrl}`, retryable: false, status: 404 });
  await rejectsWith(src.byVersion("v9.9.9"), { kind: "not_found", message: `release v9.9.9 not found at ${server.baseUrl}`, retryable: false, status: 404 });
  server.setReleases([rel("v1.0.0-rc.1", { prerelease: true })]);
  await rejectsWith(src.latest(), { kind: "not_found", message: "release source returned HTTP 404 (release not found)", retryable: false, status: 404 });
});

test("status classification: messages, kinds and retryable flags", async () => {
  server.setReleases([rel("v1.0.0")]);
  const src = source();
  const cases: { status: number | { status: number; body: string }; kind: ReleaseErrorKind; reason: string; retryable: boolean }[] = [
    { status: 429, kind: "rate_limited", reason: "rate limited", retryable: true },
    { status: { status: 403, body: '{"message":"API rate limit exceeded for 127.0.0.1."}' }, kind: "rate_limited", reason: "rate limited", retryable: true },
    { status: { status: 403, body: '{"message":"You have exceeded a SECONDARY RATE limit."}' }, kind: "rate_limited", reason: "rate limited", retryable: true },
    { status: { status: 403, body: '{"message":"Resource not accessible"}' }, kind: "bad_response", reason: "unexpected response", retryable: false },
    { status: 500, kind: "unavailable", reason: "unexpected response", retryable: true },
    { status: 502, kind: "unavailable", reason: "unexpected response", retryable: true },
    { status: 503, kind: "unavailable", reason: "unexpected response", retryable: true },
    { status: 401, kind: "auth", reason: "authentication rejected", retryable: false },
    { status: 400, kind: "bad_response", reason: "unexpected response", retryable: false },
    { status: 410, kind: "bad_response", reason: "unexpected response", retryable: false },
    { status: 304, kind: "bad_response", reason: "unexpected response", retryable: false },
  ];
  for (const c of cases) {
    const status = typeof c.status === "number" ? c.status : c.status.status;
    for (const call of [() => src.latest(), () => src.byVersion("1.0.0"), () => src.list()]) {
      server.fail(/\/releases/, [c.status]);
      await rejectsWith(call(), { kind: c.kind, message: `release source returned HTTP ${status} (${c.reason})`, retryable: c.retryable, status });
    }
  }
  server.fail("/releases/latest", [404]);
  await rejectsWith(src.latest(), { kind: "not_found", message: "release source returned HTTP 404 (release not found)", retryable: false, status: 404 });
  // Faults are used up: the next call works.
  assert.equal((await src.latest()).tag, "v1.0.0");
});

test("bad JSON and bad field types are bad_response, not retryable", async () => {
  server.setReleases([rel("v1.0.0")]);
  const src = source();
  const bad: [string, RegExp][] = [
    ["{ not json", /^failed to parse release JSON: /],
    ["", /^failed to parse release JSON: Unexpected end of JSON input$/],
    ["[]", /^failed to parse release JSON: release is not an object$/],
    ['{"name":"x"}', /^failed to parse release JSON: release\.tag_name is missing or not a non-empty string$/],
    ['{"tag_name":7}', /^failed to parse release JSON: release\.tag_name is missing or not a non-empty string$/],
    ['{"tag_name":"v1.0.0","prerelease":"yes"}', /^failed to parse release JSON: release\.prerelease is not a boolean$/],
    ['{"tag_name":"v1.0.0","html_url":5}', /^failed to parse release JSON: release\.html_url is not a string$/],
    ['{"tag_name":"v1.0.0","published_at":"yesterday"}', /^failed to parse release JSON: release\.published_at is not a date$/],
    ['{"tag_name":"v1.0.0","assets":{}}', /^failed to parse release JSON: release\.assets is not an array$/],
    ['{"tag_name":"v1.0.0","assets":[{"name":"a","size":1}]}', /^failed to parse release JSON: release\.assets\[0\]\.browser_download_url is not a string$/],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"a","size":1,"browser_download_url":"file:///etc/passwd"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.browser_download_url is not an http\(s\) URL$/,
    ],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"a","size":1,"browser_download_url":"not a url"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.browser_download_url is not a URL$/,
    ],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"a","size":-1,"browser_download_url":"https://x/a"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.size is not a non-negative integer$/,
    ],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"a","browser_download_url":"https://x/a"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.size is not a non-negative integer$/,
    ],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"../evil","size":1,"browser_download_url":"https://x/a"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.name "\.\.\/evil" is not a plain file name$/,
    ],
    [
      '{"tag_name":"v1.0.0","assets":[{"name":"","size":1,"browser_download_url":"https://x/a"}]}',
      /^failed to parse release JSON: release\.assets\[0\]\.name is not a non-empty string$/,
    ],
  ];
  for (const [body, message] of bad) {
    server.fail("/releases/latest", [{ status: 200, body }]);
    await rejectsWith(src.latest(), { kind: "bad_response", message, retryable: false });
  }
  server.fail(/per_page/, [{ status: 200, body: '{"tag_name":"v1.0.0"}' }]);
  await rejectsWith(src.list(), { kind: "bad_response", message: "failed to parse release JSON: expected an array of releases", retryable: false });
  server.fail(/per_page/, [{ status: 200, body: '[{"tag_name":"v1.0.0"},{"tag_name":null}]' }]);
  await rejectsWith(src.list(), {
    kind: "bad_response",
    message: "failed to parse release JSON: releases[1].tag_name is missing or not a non-empty string",
    retryable: false,
  });

  // Optional fields may be absent or null; unknown fields are ignored; one leading v is stripped.
  server.fail("/releases/latest", [{ status: 200, body: '{"tag_name":"vv2.0.0","html_url":null,"assets":null,"draft":null,"extra":{"x":1}}' }]);
  const r = await src.latest();
  assert.deepEqual(r, { tag: "vv2.0.0", version: "v2.0.0", prerelease: false, draft: false, htmlUrl: "", assets: [] });
});

test("a body over the cap is refused (not truncated), whether or not Content-Length says so", async () => {
  server.setReleases([rel("v1.0.0")]);
  const big = JSON.stringify({ tag_name: "v1.0.0", body: "x".repeat(300 * 1024) });
  const src = source();
  server.fail("/releases/latest", [{ status: 200, body: big }]);
  await rejectsWith(src.latest(), { kind: "bad_response", message: "release JSON is larger than the 256 KiB limit", retryable: false });
  // Chunked (no Content-Length): the cap applies while streaming.
  server.respond("/releases/latest", (_req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.write('{"tag_name":"v1.0.0","body":"');
    res.write("y".repeat(2000));
    res.end('"}');
  });
  await rejectsWith(source({ maxBodyBytes: 1000 }).latest(), {
    kind: "bad_response",
    message: "release JSON is larger than the 1000 bytes limit",
    retryable: false,
  });
  // Just under the cap is fine.
  const fits = JSON.stringify({ tag_name: "v1.0.0", body: "z".repeat(900) });
  server.fail("/releases/latest", [{ status: 200, body: fits }]);
  assert.equal((await source({ maxBodyBytes: fits.length }).latest()).tag, "v1.0.0");
});

test("network errors and timeouts are unavailable and retryable, without credentials in the message", async () => {
  server.setReleases([rel("v1.0.0")]);
  server.hangNext("/releases/latest");
  const started = Date.now();
  await rejectsWith(source({ timeoutMs: 200 }).latest(), {
    kind: "unavailable",
    message: "failed to fetch release info: timed out after 200 ms",
    retryable: true,
  });
  assert.ok(Date.now() - started < 5000);

  // A server that answers the headers and then stalls in the body.
  server.respond("/releases/latest", (_req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.write('{"tag_name":');
  });
  await rejectsWith(source({ timeoutMs: 300 }).latest(), {
    kind: "unavailable",
    message: "failed to read release JSON: timed out after 300 ms",
    retryable: true,
  });

  // Connection refused: a port nobody listens on.
  const closed: Server = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const refused = new ReleaseSource({ baseUrl: `http://user:hunter2@127.0.0.1:${port}/repos/o/r?token=abc`, userAgent: UA });
  await assert.rejects(refused.latest(), (err: unknown) => {
    assert.ok(err instanceof ReleaseSourceError);
    assert.equal(err.kind, "unavailable");
    assert.equal(err.retryable, true);
    assert.equal(err.message, `failed to fetch release info: cannot reach 127.0.0.1:${port} (connection refused)`);
    assert.doesNotMatch(err.message, /hunter2|user|token=abc/);
    return true;
  });
  assert.equal(refused.baseUrl, `http://127.0.0.1:${port}/repos/o/r`);

  // The connection dropped mid-body.
  server.respond("/releases/latest", (_req, res) => {
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "1000" });
    res.write('{"tag_name":');
    setTimeout(() => res.socket?.destroy(), 20);
  });
  await rejectsWith(source().latest(), { kind: "unavailable", message: /^failed to read release JSON: /, retryable: true });
});

test("credentials in the base URL go out as Basic auth and never into messages", async () => {
  server.setReleases([rel("v1.0.0")]);
  let auth: string | undefined;
  server.respond("/releases/tags/v7.0.0", (req, res) => {
    auth = req.headers.authorization;
    res.writeHead(404).end();
  });
  const withCreds = server.baseUrl.replace("http://", "http://bot:s3cret@");
  const src = new ReleaseSource({ baseUrl: withCreds, userAgent: UA });
  await rejectsWith(src.byVersion("7.0.0"), { kind: "not_found", message: `release v7.0.0 not found at ${server.baseUrl}`, retryable: false, status: 404 });
  assert.equal(auth, `Basic ${Buffer.from("bot:s3cret").toString("base64")}`);
  assert.throws(() => new ReleaseSource({ baseUrl: "ftp://x/y", userAgent: UA }), { message: "release source URL must be http(s), got ftp:" });
  assert.throws(() => new ReleaseSource({ baseUrl: "nope", userAgent: UA }), { message: "release source URL is not a valid URL" });
});

test("no DNS answer or no route reads 'cannot reach <host> (...: no network?)', found anywhere in fetch's cause chain", () => {
  const sys = (code: string) => Object.assign(new Error(`getaddrinfo ${code} api.github.com`), { code });
  assert.equal(
    unreachable(new TypeError("fetch failed", { cause: sys("ENOTFOUND") }), "api.github.com"),
    "cannot reach api.github.com (ENOTFOUND: no network?)",
  );
  assert.equal(
    unreachable(new TypeError("fetch failed", { cause: sys("EAI_AGAIN") }), "api.github.com"),
    "cannot reach api.github.com (EAI_AGAIN: no network?)",
  );
  // Both address families failed: an AggregateError holds the two.
  const both = new AggregateError([sys("ENETUNREACH"), sys("EHOSTUNREACH")], "connect failed");
  assert.equal(unreachable(new TypeError("fetch failed", { cause: both }), "example.org:443"), "cannot reach example.org:443 (ENETUNREACH: no network?)");
  assert.equal(unreachable(new TypeError("fetch failed", { cause: sys("ECONNRESET") }), "x"), undefined);
  assert.equal(unreachable(new Error("plain"), "x"), undefined);
});
