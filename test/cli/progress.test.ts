import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { progress } from "../../src/cli/progress.js";
import { serveCara, tempDir } from "../helpers/cara.js";
import { runCli } from "../helpers/cli.js";

/** An in-memory terminal (or not) that keeps what is written. */
function sink(tty: boolean): Writable & { text: string } {
  const s = Object.assign(
    new Writable({
      write(chunk: Buffer, _enc, done) {
        s.text += chunk.toString();
        done();
      },
    }),
    { text: "" },
  );
  if (tty) Object.assign(s, { isTTY: true });
  return s;
}

test("the progress line shows total, percent and rate, redraws at most every 100 ms and ends with one summary line", () => {
  const out = sink(true);
  let now = 1_000;
  const p = progress(out, { label: "Uploading", enabled: true, now: () => now });
  const MiB = 1024 * 1024;
  now += 500;
  p.update(4 * MiB, 40 * MiB);
  now += 50;
  p.update(5 * MiB, 40 * MiB); // within 100 ms of the last draw: skipped
  now += 950;
  p.update(12.3 * MiB, 40 * MiB);
  now += 3_400;
  p.update(40 * MiB, 40 * MiB);
  p.finish((n, seconds) => `Wrote ${(n / MiB).toFixed(1)} MiB to x.tar.gz in ${seconds} s`);
  p.finish(() => "twice");
  p.clear();
  assert.equal(
    out.text,
    "\r\u001b[2KUploading 4.0 MiB / 40.0 MiB (10%) 8.0 MiB/s" +
      "\r\u001b[2KUploading 12.3 MiB / 40.0 MiB (30%) 8.2 MiB/s" +
      "\r\u001b[2KUploading 40.0 MiB / 40.0 MiB (100%) 8.2 MiB/s" +
      "\r\u001b[2KWrote 40.0 MiB to x.tar.gz in 4.9 s\n",
  );
});

test("without a total the line shows bytes and rate; clear() leaves no line behind; disabled draws nothing", () => {
  const out = sink(true);
  let now = 0;
  const p = progress(out, { label: "Downloading", enabled: true, now: () => now });
  now = 1_000;
  p.update(2048);
  p.clear();
  p.finish(() => "not after clear");
  assert.equal(out.text, "\r\u001b[2KDownloading 2.0 KiB 2.0 KiB/s\r\u001b[2K");
  const off = sink(false);
  const q = progress(off, { label: "Uploading", enabled: false });
  q.update(1, 2);
  q.finish(() => "summary");
  assert.equal(off.text, "");
});

test("cara backup -o on a terminal draws progress on stderr and ends with one summary line; piped or --json it draws nothing", async () => {
  const s = await serveCara();
  const dir = await tempDir();
  const args = (file: string, ...more: string[]) => ["backup", "-o", join(dir, file), "--port", String(s.port), "--state-dir", s.stateDir, ...more];
  const tty = await runCli(args("a.tar.gz"), { ttyInput: true });
  assert.equal(tty.code, 0, tty.stderr);
  const size = (await readFile(join(dir, "a.tar.gz"))).length;
  const shown = size < 1024 ? `${size} B` : `${(size / 1024).toFixed(1)} KiB`;
  assert.match(
    tty.stderr,
    new RegExp(
      `^(?:\\r\\x1b\\[2KDownloading [^\\r\\n]+ [\\d.]+ (?:B|KiB|MiB|GiB)/s)+\\r\\x1b\\[2KWrote ${shown} to ${join(dir, "a.tar.gz")} in \\d+\\.\\d s\\n$`,
    ),
  );
  assert.match(tty.stdout, /^Backup created successfully\n/);
  const piped = await runCli(args("b.tar.gz"));
  assert.equal(piped.stderr, "");
  const json = await runCli(args("c.tar.gz", "--json"), { ttyInput: true });
  assert.equal(json.stderr, "");
  assert.equal(JSON.parse(json.stdout).bytes > 0, true);
  await s.stop();
});
