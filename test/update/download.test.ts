import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { lstat, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { downloadFile, DownloadError, type DownloadOptions } from "../../src/update/download.js";
import { tempDir } from "../helpers/cara.js";
import { startReleaseServer, type ReleaseServer } from "../helpers/release-server.js";

const UA = "cara/0.1.0";
const NAME = "carapace-1.0.0.tar.gz";
const SIZE = 3 * 1024 * 1024 + 123;
const DATA = randomBytes(SIZE);
const SHA = createHash("sha256").update(DATA).digest("hex");
const DL_PATH = `/download/v1.0.0/${NAME}`;

let server: ReleaseServer;
let dataFile: string;

before(async () => {
  const dir = await tempDir();
  dataFile = join(dir, NAME);
  await writeFile(dataFile, DATA);
  server = await startReleaseServer([
    {
      tag: "v1.0.0",
      assets: [
        { name: NAME, file: dataFile },
        { name: "empty.bin", body: Buffer.alloc(0) },
        { name: "small.bin", body: "hello" },
      ],
    },
  ]);
});
after(async () => {
  await server.close();
});

async function destIn(): Promise<string> {
  return join(await tempDir(), NAME);
}

function opts(dest: string, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url: server.assetUrl("v1.0.0", NAME), dest, userAgent: UA, ...extra };
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function rejectsWith(p: Promise<unknown>, expected: { message: string | RegExp; retryable: boolean; status?: number }) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DownloadError, `not a DownloadError: ${String(err)}`);
    if (typeof expected.message === "string") assert.equal(err.message, expected.message);
    else assert.match(err.message, expected.message);
    assert.equal(err.retryable, expected.retryable);
    assert.equal(err.status, expected.status);
    return true;
  });
}

test("full download: bytes, sha256, 0600 file, no .part left, progress reported, no Range sent", async () => {
  const dest = await destIn();
  server.clearLog();
  const progress: [number, number | undefined][] = [];
  const result = await downloadFile(opts(dest, { expectedSize: SIZE, onProgress: (d, t) => progress.push([d, t]) }));
  assert.deepEqual(result, { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: 0 });
  assert.ok((await readFile(dest)).equals(DATA));
  assert.equal((await stat(dest)).mode & 0o777, 0o600);
  assert.equal(await exists(`${dest}.part`), false);
  assert.deepEqual(progress.at(-1), [SIZE, SIZE]);
  assert.ok(progress.length > 1);
  const reqs = server.requests(DL_PATH);
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0]!.range, undefined);
  assert.equal(reqs[0]!.userAgent, UA);
});

test("redirects to a CDN URL are followed; errors there name the file, not the signed URL", async () => {
  server.redirectDownloads(true);
  try {
    const dest = await destIn();
    const result = await downloadFile(opts(dest));
    assert.equal(result.sha256, SHA);
    assert.equal(server.log.at(-2)!.status, 302);
    assert.match(server.log.at(-1)!.path, /^\/cdn\/v1\.0\.0\/carapace-1\.0\.0\.tar\.gz\?X-Token=/);

    server.fail(/^\/cdn\//, [404]);
    await rejectsWith(downloadFile(opts(await destIn())), { message: `artifact download returned HTTP 404 for ${NAME}`, retryable: false, status: 404 });
  } finally {
    server.redirectDownloads(false);
  }
});

test("a transfer cut off mid-body is retryable and the next attempt resumes with Range", async () => {
  const dest = await destIn();
  server.clearLog();
  server.truncateNext(DL_PATH, 1_000_000);
  await rejectsWith(downloadFile(opts(dest, { expectedSize: SIZE })), {
    message: new RegExp(`^artifact download of ${NAME.replace(/\./g, "\\.")} was cut off after \\d+ of ${SIZE} bytes$`),
    retryable: true,
    status: 200,
  });
  const partSize = (await stat(`${dest}.part`)).size;
  assert.ok(partSize > 0 && partSize <= 1_000_000, `part size ${partSize}`);
  assert.equal((await stat(`${dest}.part`)).mode & 0o777, 0o600);
  assert.equal(await exists(dest), false);

  const result = await downloadFile(opts(dest, { expectedSize: SIZE }));
  assert.deepEqual(result, { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: partSize });
  assert.ok((await readFile(dest)).equals(DATA));
  const reqs = server.requests(DL_PATH);
  assert.equal(reqs.length, 2);
  assert.equal(reqs[1]!.range, `bytes=${partSize}-`);
  assert.equal(reqs[1]!.status, 206);
  assert.equal(reqs[1]!.bytesSent, SIZE - partSize);
  assert.equal(await exists(`${dest}.part`), false);
});

test("resume without an expected size, and through a redirect", async () => {
  const dest = await destIn();
  await writeFile(`${dest}.part`, DATA.subarray(0, 777));
  server.redirectDownloads(true);
  try {
    const result = await downloadFile(opts(dest));
    assert.deepEqual(result, { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: 777 });
    assert.equal(server.log.at(-1)!.range, "bytes=777-");
  } finally {
    server.redirectDownloads(false);
  }
});

test("a server that ignores Range: the download starts over and is still correct", async () => {
  const dest = await destIn();
  await writeFile(`${dest}.part`, Buffer.alloc(5000, 0x41)); // not even the right prefix
  server.clearLog();
  server.ignoreRangeNext(DL_PATH);
  const result = await downloadFile(opts(dest, { expectedSize: SIZE }));
  assert.deepEqual(result, { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: 0 });
  assert.ok((await readFile(dest)).equals(DATA));
  const reqs = server.requests(DL_PATH);
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0]!.range, "bytes=5000-");
  assert.equal(reqs[0]!.status, 200);
});

test("416: a complete .part is finished without downloading; an over-long one starts over", async () => {
  const dest = await destIn();
  await writeFile(`${dest}.part`, DATA);
  server.clearLog();
  assert.deepEqual(await downloadFile(opts(dest, { expectedSize: SIZE })), { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: SIZE });
  assert.deepEqual(
    server.requests(DL_PATH).map((r) => [r.range, r.status, r.bytesSent]),
    [[`bytes=${SIZE}-`, 416, 0]],
  );

  // Without an expected size, the server's Content-Range (bytes */SIZE) says it is complete.
  const dest2 = await destIn();
  await writeFile(`${dest2}.part`, DATA);
  assert.equal((await downloadFile(opts(dest2))).resumedFrom, SIZE);

  // A .part longer than the file: 416, then a fresh download.
  const dest3 = await destIn();
  await writeFile(`${dest3}.part`, Buffer.concat([DATA, Buffer.from("junk")]));
  server.clearLog();
  assert.deepEqual(await downloadFile(opts(dest3)), { path: dest3, bytes: SIZE, sha256: SHA, resumedFrom: 0 });
  assert.deepEqual(
    server.requests(DL_PATH).map((r) => [r.range, r.status]),
    [
      [`bytes=${SIZE + 4}-`, 416],
      [undefined, 200],
    ],
  );

  // A .part longer than the expected size is dropped before asking.
  const dest4 = await destIn();
  await writeFile(`${dest4}.part`, Buffer.concat([DATA, Buffer.from("junk")]));
  server.clearLog();
  assert.equal((await downloadFile(opts(dest4, { expectedSize: SIZE }))).resumedFrom, 0);
  assert.equal(server.requests(DL_PATH)[0]!.range, undefined);
});

test("HTTP errors: 404/403/401 are final, 429/5xx retryable with Retry-After; no .part left behind", async () => {
  const cases: [number, boolean][] = [
    [404, false],
    [403, false],
    [401, false],
    [410, false],
    [429, true],
    [500, true],
    [502, true],
    [503, true],
  ];
  for (const [status, retryable] of cases) {
    const dest = await destIn();
    server.fail(DL_PATH, [status]);
    await assert.rejects(downloadFile(opts(dest)), (err: unknown) => {
      assert.ok(err instanceof DownloadError);
      assert.equal(err.message, `artifact download returned HTTP ${status} for ${NAME}`);
      assert.equal(err.retryable, retryable, String(status));
      assert.equal(err.status, status);
      assert.equal(err.retryAfterMs, status === 429 || status === 503 ? 1000 : undefined);
      return true;
    });
    assert.equal(await exists(`${dest}.part`), false);
    assert.equal(await exists(dest), false);
  }
  // An asset the server does not have.
  await rejectsWith(downloadFile({ url: server.assetUrl("v1.0.0", "nope.tar.gz"), dest: await destIn(), userAgent: UA }), {
    message: "artifact download returned HTTP 404 for nope.tar.gz",
    retryable: false,
    status: 404,
  });
  // A 503 on a resume keeps the partial file for the next attempt.
  const dest = await destIn();
  await writeFile(`${dest}.part`, DATA.subarray(0, 100));
  server.fail(DL_PATH, [503]);
  await rejectsWith(downloadFile(opts(dest)), { message: `artifact download returned HTTP 503 for ${NAME}`, retryable: true, status: 503 });
  assert.equal((await stat(`${dest}.part`)).size, 100);
});

test("size limits: over maxBytes or not the expected size is final and the .part is removed", async () => {
  const dest = await destIn();
  await rejectsWith(downloadFile(opts(dest, { maxBytes: 1024 * 1024 })), {
    message: `artifact ${NAME} is larger than the 1048576 byte limit`,
    retryable: false,
  });
  assert.equal(await exists(`${dest}.part`), false);

  await rejectsWith(downloadFile(opts(dest, { expectedSize: SIZE - 1 })), {
    message: `artifact ${NAME} is ${SIZE} bytes, expected ${SIZE - 1}`,
    retryable: false,
  });
  assert.equal(await exists(`${dest}.part`), false);
  await rejectsWith(downloadFile(opts(dest, { expectedSize: SIZE + 1 })), {
    message: `artifact ${NAME} is ${SIZE} bytes, expected ${SIZE + 1}`,
    retryable: false,
  });
  await rejectsWith(downloadFile(opts(dest, { expectedSize: 2000, maxBytes: 1000 })), {
    message: `artifact ${NAME} is larger than the 1000 byte limit`,
    retryable: false,
  });

  // No Content-Length (chunked): the limit is enforced while streaming.
  server.respond(DL_PATH, (_req, res) => {
    res.writeHead(200, { "Content-Type": "application/octet-stream" });
    const chunk = Buffer.alloc(64 * 1024, 1);
    let sent = 0;
    const pump = () => {
      while (sent < 4 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });
  await rejectsWith(downloadFile(opts(dest, { maxBytes: 1024 * 1024 })), {
    message: new RegExp(`^artifact ${NAME.replace(/\./g, "\\.")} is larger than the 1048576 byte limit$`),
    retryable: false,
  });
  assert.equal(await exists(`${dest}.part`), false);
  assert.equal(await exists(dest), false);
});

test("a symlink at dest or .part is refused and its target left alone", async () => {
  const dir = await tempDir();
  const victim = join(dir, "victim");
  await writeFile(victim, "precious");
  const dest = join(dir, NAME);
  await symlink(victim, dest);
  await rejectsWith(downloadFile(opts(dest)), { message: `refusing to write artifact ${dest}: it is a symbolic link`, retryable: false });
  assert.equal(await readFile(victim, "utf8"), "precious");

  const dest2 = join(dir, "other.tar.gz");
  await symlink(victim, `${dest2}.part`);
  await rejectsWith(downloadFile(opts(dest2)), { message: `refusing to write partial download ${dest2}.part: it is a symbolic link`, retryable: false });
  assert.equal(await readFile(victim, "utf8"), "precious");
  assert.equal(await readlink(`${dest2}.part`), victim);
  assert.equal(await exists(dest2), false);
});

test("a chunked body of tiny and large chunks is written in order (small reads gathered, large ones written as they are)", async () => {
  const dest = await destIn();
  server.respond(DL_PATH, (_req, res) => {
    res.writeHead(200);
    let at = 0;
    for (; at < 3000; at++) res.write(DATA.subarray(at, at + 1)); // 3000 one-byte chunks
    res.write(DATA.subarray(at, at + 1_500_000)); // then large ones
    res.end(DATA.subarray(at + 1_500_000));
  });
  const result = await downloadFile(opts(dest, { expectedSize: SIZE }));
  assert.deepEqual(result, { path: dest, bytes: SIZE, sha256: SHA, resumedFrom: 0 });
  assert.ok((await readFile(dest)).equals(DATA));
});

test("an empty body is final: downloaded artifact is empty", async () => {
  const dest = await destIn();
  await rejectsWith(downloadFile({ url: server.assetUrl("v1.0.0", "empty.bin"), dest, userAgent: UA }), {
    message: "downloaded artifact is empty",
    retryable: false,
    status: 200,
  });
  assert.equal(await exists(`${dest}.part`), false);
  assert.equal(await exists(dest), false);
});

test("timeouts, refused connections and cancellation are retryable", async () => {
  const dest = await destIn();
  server.hangNext(DL_PATH);
  await rejectsWith(downloadFile(opts(dest, { timeoutMs: 200 })), { message: `artifact download of ${NAME} timed out (no data for 200 ms)`, retryable: true });

  // Stalls after some bytes: the part is kept for a resume.
  server.respond(DL_PATH, (_req, res) => {
    res.writeHead(200, { "Content-Length": String(SIZE) });
    res.write(DATA.subarray(0, 4096));
  });
  await rejectsWith(downloadFile(opts(dest, { timeoutMs: 300 })), {
    message: `artifact download of ${NAME} timed out (no data for 300 ms after 4096 bytes)`,
    retryable: true,
  });
  assert.equal((await stat(`${dest}.part`)).size, 4096);
  assert.equal((await downloadFile(opts(dest))).resumedFrom, 4096);

  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await rejectsWith(downloadFile({ url: `http://127.0.0.1:${port}/x/${NAME}?sig=secret`, dest: await destIn(), userAgent: UA }), {
    message: new RegExp(`^artifact download of ${NAME.replace(/\./g, "\\.")} failed: cannot reach 127\\.0\\.0\\.1:\\d+ \\(connection refused\\)$`),
    retryable: true,
  });

  const controller = new AbortController();
  server.hangNext(DL_PATH);
  setTimeout(() => controller.abort(), 100);
  await rejectsWith(downloadFile(opts(await destIn(), { signal: controller.signal })), {
    message: `artifact download of ${NAME} was cancelled`,
    retryable: true,
  });
});

test("bad URLs are refused up front", async () => {
  const dest = await destIn();
  await rejectsWith(downloadFile({ url: "file:///etc/passwd", dest, userAgent: UA }), { message: "artifact URL must be http(s), got file:", retryable: false });
  await rejectsWith(downloadFile({ url: "::", dest, userAgent: UA }), { message: "artifact URL is not a valid URL", retryable: false });
  server.respond(DL_PATH, (_req, res) => res.writeHead(302, { Location: "file:///etc/passwd" }).end());
  await rejectsWith(downloadFile(opts(dest)), { message: `artifact download of ${NAME} redirected to a file: URL`, retryable: false, status: 302 });
  assert.equal(await exists(`${dest}.part`), false);
});
