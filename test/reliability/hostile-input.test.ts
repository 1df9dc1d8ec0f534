// Hostile input to every RPC: malformed JSON and binary, wrong types, oversized and deeply nested
// bodies, invalid UTF-8, unknown enum values. Every one gets a 4xx-class answer in its protocol
// (never a 5xx, never a crash) and changes nothing. Then a bounded property-based run (fast-check,
// fixed seed and case count) over task and backup inputs.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { DescField, DescMethod, DescService } from "@bufbuild/protobuf";
import fc from "fast-check";
import { BackupService } from "../../gen/carapace/backup/v1/backup_pb.js";
import { OpsService } from "../../gen/carapace/ops/v1/ops_pb.js";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { UpdateService } from "../../gen/carapace/update/v1/update_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { connectJson, runCara, startCara, tempDir, type CaraServer } from "../helpers/cara.js";
import { SEED, tally } from "./support.js";

const SECRET = "reliability-hostile-secret-0123456789abcdef";
const env = { CARAPACE_SERVER_SECRET: SECRET };
const SERVICES: DescService[] = [OpsService, TasksService, BackupService, UpdateService, Health];

/** A value of the wrong JSON type for a field (a number for a string, a string for a number, ...). */
function wrongValue(field: DescField): unknown {
  if (field.fieldKind === "list") return { not: "a list" };
  if (field.fieldKind === "map") return [1, 2, 3];
  if (field.fieldKind === "message") return field.message.typeName === "google.protobuf.Timestamp" ? "not a time" : 42;
  if (field.fieldKind === "enum") return "NOT_A_VALUE_OF_THIS_ENUM";
  switch (field.scalar) {
    case 9: // string
    case 12: // bytes
      return { an: "object" };
    case 8: // bool
      return "maybe";
    default:
      return "not a number";
  }
}

function envelope(json: string | Buffer): Buffer {
  const data = Buffer.isBuffer(json) ? json : Buffer.from(json);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

interface Case {
  name: string;
  contentType: "json" | "proto";
  body: Buffer;
}

function casesFor(method: DescMethod): Case[] {
  const wrongTypes = Object.fromEntries(method.input.fields.map((f) => [f.jsonName, wrongValue(f)]));
  const enumField = method.input.fields.find((f) => f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum"));
  const cases: Case[] = [
    { name: "malformed JSON", contentType: "json", body: Buffer.from('{"unterminated": ') },
    { name: "JSON that is not an object", contentType: "json", body: Buffer.from("[1, 2, 3]") },
    { name: "malformed binary", contentType: "proto", body: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x7f]) },
    { name: "binary with a bad wire type", contentType: "proto", body: Buffer.from([0x0f, 0x01]) },
    { name: "invalid UTF-8 in JSON", contentType: "json", body: Buffer.concat([Buffer.from('{"x":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]) },
    { name: "deeply nested JSON", contentType: "json", body: Buffer.from(`{"deep":${"[".repeat(50_000)}${"]".repeat(50_000)}}`) },
    { name: "oversized body (9 MiB)", contentType: "json", body: Buffer.from(`{"pad":"${"x".repeat(9 * 1024 * 1024)}"}`) },
  ];
  if (method.input.fields.length > 0) cases.push({ name: "wrong types in every field", contentType: "json", body: Buffer.from(JSON.stringify(wrongTypes)) });
  if (enumField) {
    const value = enumField.fieldKind === "list" ? ["NOT_A_VALUE"] : "NOT_A_VALUE";
    cases.push({ name: `unknown enum name in ${enumField.jsonName}`, contentType: "json", body: Buffer.from(JSON.stringify({ [enumField.jsonName]: value })) });
  }
  return cases;
}

/**
 * What the server said, as a Connect code (unary: from the JSON body; streams: from the
 * end-stream message). A stream that answers with a message instead (a follow that accepted a
 * request with ignored unknown fields) counts as accepted and is closed.
 */
async function send(s: CaraServer, method: DescMethod, c: Case): Promise<{ http: number; code: string }> {
  const path = `${s.baseUrl}/${method.parent.typeName}/${method.name}`;
  const unary = method.methodKind === "unary";
  const type = unary ? `application/${c.contentType}` : `application/connect+${c.contentType}`;
  const body = unary ? c.body : envelope(c.body);
  const abort = new AbortController();
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": type, authorization: `Bearer ${s.token}`, "connect-protocol-version": "1" },
    body,
    signal: abort.signal,
  });
  if (unary || res.status !== 200) {
    const bytes = Buffer.from(await res.arrayBuffer());
    try {
      return { http: res.status, code: JSON.parse(bytes.toString("utf8")).code ?? "ok" };
    } catch {
      return { http: res.status, code: `unparsable ${bytes.subarray(0, 60).toString("utf8")}` };
    }
  }
  let bytes = Buffer.alloc(0);
  const timer = setTimeout(() => abort.abort(), 3_000);
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes = Buffer.concat([bytes, chunk]);
      while (bytes.length >= 5 && bytes.length >= 5 + bytes.readUInt32BE(1)) {
        const flags = bytes[0]!;
        const data = bytes.subarray(5, 5 + bytes.readUInt32BE(1));
        if (flags & 0x02) return { http: res.status, code: (JSON.parse(data.toString("utf8")) as { error?: { code: string } }).error?.code ?? "ok" };
        return { http: res.status, code: "ok" }; // a message: the request was accepted
      }
    }
    return { http: res.status, code: "ok" };
  } catch {
    return { http: res.status, code: "ok" }; // still open after 3 s: accepted
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

/** What must not change: the task list, the backups dir, the update transaction. */
async function snapshot(s: CaraServer): Promise<string> {
  const tasks = await connectJson(s, "carapace.tasks.v1.TasksService/ListTasks", { limit: 1000 }, s.token);
  const backups = (await readdir(join(s.stateDir, "backups"))).filter((n) => n.endsWith(".tar.gz")).sort();
  const tx = await readFile(join(s.stateDir, "updates", "transaction.json"), "utf8").catch(() => "none");
  return JSON.stringify({
    tasks: (tasks.json.tasks ?? []).map((t: { id: string; state: string; updatedAtMs: string }) => [t.id, t.state, t.updatedAtMs]),
    backups,
    tx,
  });
}

const REFUSALS = new Set(["invalid_argument", "resource_exhausted", "not_found", "failed_precondition", "unimplemented", "out_of_range"]);

test("hostile input to every RPC is refused in its protocol with a client-error code and changes nothing", async () => {
  const s = await startCara({ env });
  await connectJson(
    s,
    "carapace.tasks.v1.TasksService/CreateTask",
    { payload: { systemEvent: { text: "existing" } }, nextRunAtMs: String(Date.now() + 3_600_000) },
    s.token,
  );
  const before = await snapshot(s);
  let tried = 0;
  let held = 0;
  const accepted: string[] = [];
  for (const service of SERVICES) {
    for (const method of service.methods) {
      if (method.methodKind === "bidi_streaming") continue; // needs HTTP/2; reflection is read-only
      for (const c of casesFor(method)) {
        tried++;
        const { http, code } = await send(s, method, c).catch((err: Error) => {
          throw new Error(`${service.typeName}/${method.name}: ${c.name}: ${err.message} (${String((err as { cause?: unknown }).cause)})`);
        });
        const what = `${service.typeName}/${method.name}: ${c.name} -> HTTP ${http} ${code}`;
        // A request that passed validation (unknown fields are ignored) and then needed the
        // release source, which this machine cannot reach, is answered UNAVAILABLE: that is the
        // answer to a valid request, not to the hostile part.
        const reachedNetwork = service === UpdateService && code === "unavailable";
        assert.ok(http < 500 || reachedNetwork, what);
        if (code === "ok" || reachedNetwork)
          accepted.push(what); // harmless: checked by the snapshot below
        else assert.ok(REFUSALS.has(code), what);
        held++;
      }
    }
  }
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200, "still alive");
  assert.equal(await snapshot(s), before, `state changed; accepted: ${accepted.join("; ")}`);
  await s.stop();
  await tally("hostile input: every RPC", {
    tried,
    held,
    unit: "malformed, mistyped, oversized, nested, non-UTF-8 and unknown-enum requests refused without change",
  });
});

test(`property: CreateTask with arbitrary inputs is either created as normalized or refused with invalid_argument (seed ${SEED}, 300 cases)`, async () => {
  const s = await startCara({ env });
  let tried = 0;
  const text = fc.string({ maxLength: 40 });
  const payload = fc.oneof(
    fc.record({ systemEvent: fc.record({ text }) }),
    fc.record({ agentTurn: fc.record({ message: text, timeoutSeconds: fc.oneof(fc.integer({ min: -5, max: 100_000 }), text) }, { requiredKeys: [] }) }),
    fc.record({
      backup: fc.record(
        { keep: fc.oneof(fc.integer({ min: -3, max: 500 }), text), sections: fc.array(fc.constantFrom("tasks", "config", "nope", ""), { maxLength: 3 }) },
        { requiredKeys: [] },
      ),
    }),
    fc.jsonValue({ maxDepth: 3 }),
  );
  const request = fc.record(
    {
      payload,
      priority: fc.oneof(fc.integer({ min: -5_000, max: 5_000 }), text),
      labels: fc.oneof(fc.dictionary(fc.string({ maxLength: 70 }), fc.string({ maxLength: 300 }), { maxKeys: 4 }), fc.jsonValue({ maxDepth: 1 })),
      nextRunAtMs: fc.oneof(fc.constant(String(Date.now() + 3_600_000)), fc.integer(), text),
      idempotencyKey: text,
      policy: fc.record({ maxAttempts: fc.oneof(fc.integer({ min: -2, max: 200 }), text) }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  );
  await fc.assert(
    fc.asyncProperty(request, async (req) => {
      tried++;
      const before = await connectJson(s, "carapace.tasks.v1.TasksService/GetQueueStats", {}, s.token);
      const res = await connectJson(s, "carapace.tasks.v1.TasksService/CreateTask", req, s.token);
      assert.ok(
        res.status === 200 || (res.status === 400 && res.json.code === "invalid_argument"),
        `HTTP ${res.status} ${JSON.stringify(res.json)} for ${JSON.stringify(req)}`,
      );
      const after = await connectJson(s, "carapace.tasks.v1.TasksService/GetQueueStats", {}, s.token);
      if (res.status !== 200 || res.json.created === false) {
        assert.equal(after.json.stats.total, before.json.stats.total, "a refused create changed the queue");
        return;
      }
      const got = await connectJson(s, "carapace.tasks.v1.TasksService/GetTask", { id: res.json.task.id }, s.token);
      assert.deepEqual(got.json.task.payload, res.json.task.payload, "stored as acknowledged");
    }),
    { seed: SEED, numRuns: 300, endOnFailure: true },
  );
  assert.equal((await fetch(`${s.baseUrl}/health`)).status, 200);
  await s.stop();
  await tally("hostile input: CreateTask property", { tried, held: tried, unit: `fast-check cases (seed ${SEED})` });
});

test(`property: a damaged archive is never a server error and never changes the state (seed ${SEED}, 120 cases)`, async () => {
  const s = await startCara({ env });
  for (let i = 0; i < 5; i++)
    await connectJson(
      s,
      "carapace.tasks.v1.TasksService/CreateTask",
      { payload: { systemEvent: { text: `t${i}` } }, nextRunAtMs: String(Date.now() + 3_600_000) },
      s.token,
    );
  const file = join(await tempDir(), "good.tar.gz");
  assert.equal((await runCara(["backup", "-o", file, "--port", String(s.port), "--state-dir", s.stateDir], { env })).code, 0);
  const good = await readFile(file);
  const before = await snapshot(s);
  const { createClient } = await import("@connectrpc/connect");
  const { createConnectTransport } = await import("@connectrpc/connect-node");
  const client = createClient(BackupService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "2" }));
  const auth = { headers: { authorization: `Bearer ${s.token}` } };
  async function* parts(header: object, bytes: Uint8Array) {
    yield { part: { case: "header" as const, value: header } };
    for (let i = 0; i < bytes.length; i += 64 * 1024) yield { part: { case: "chunk" as const, value: bytes.subarray(i, i + 64 * 1024) } };
  }
  const damage = fc.oneof(
    fc.record({ kind: fc.constant("flip"), at: fc.nat({ max: good.length - 1 }), bits: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant("truncate"), at: fc.nat({ max: good.length - 1 }) }),
    fc.record({ kind: fc.constant("append"), junk: fc.uint8Array({ minLength: 1, maxLength: 2048 }) }),
    fc.record({ kind: fc.constant("random"), junk: fc.uint8Array({ maxLength: 4096 }) }),
  );
  let tried = 0;
  await fc.assert(
    fc.asyncProperty(damage, async (d) => {
      tried++;
      let bytes: Uint8Array;
      if (d.kind === "flip") {
        bytes = Buffer.from(good);
        bytes[d.at] = bytes[d.at]! ^ d.bits;
      } else if (d.kind === "truncate") bytes = good.subarray(0, d.at);
      else if (d.kind === "append") bytes = Buffer.concat([good, d.junk]);
      else bytes = d.junk;
      const inspected = await client.inspectBackup(parts({ includeFiles: false }, bytes), auth).catch((err: { code: number }) => err);
      const inspectError = "code" in inspected && typeof inspected.code === "number" ? inspected.code : undefined;
      if (inspectError !== undefined) assert.ok([3, 8, 9].includes(inspectError), `inspect: code ${inspectError}`);
      const verified = inspectError === undefined && (inspected as { verification?: { ok: boolean } }).verification?.ok === true;
      const restored = await client
        .restoreBackup(parts({ dryRun: false, force: true, allowForeign: true, sections: [] }, bytes), auth)
        .catch((err: { code: number }) => err);
      if ("code" in restored && typeof restored.code === "number")
        assert.ok([3, 8, 9, 10].includes(restored.code), `restore: code ${restored.code} (${(restored as unknown as Error).message})`);
      // Only an archive that still verifies whole is restored (e.g. a flip in gzip's unchecked
      // MTIME bytes, or junk after the end): it holds exactly the state it was taken from.
      else assert.ok(verified, `an archive that does not verify was restored (${d.kind})`);
    }),
    { seed: SEED, numRuns: 120, endOnFailure: true },
  );
  const afterSnap = JSON.parse(await snapshot(s)) as { tasks: unknown[]; backups: string[] };
  const beforeSnap = JSON.parse(before) as { tasks: unknown[]; backups: string[] };
  assert.deepEqual(afterSnap.tasks.map((t) => (t as string[])[0]).sort(), beforeSnap.tasks.map((t) => (t as string[])[0]).sort(), "the same tasks");
  await s.stop();
  await tally("hostile input: damaged archives property", {
    tried,
    held: tried,
    unit: `fast-check cases (seed ${SEED}): inspect and restore of flipped, truncated, extended and random archives`,
  });
});
