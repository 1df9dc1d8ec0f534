/**
 * A TUF repository for tests, served over local HTTP, shaped like Sigstore's
 * (`{mirror}/N.root.json`, `timestamp.json`, `snapshot.json`, `targets.json`,
 * `{mirror}/targets/trusted_root.json`; consistent_snapshot false). Metadata is built and signed
 * with @tufjs/models (the models tuf-js itself uses) and ed25519 keys made here, so the production
 * refresh runs through the real TUF client against a root of trust the test controls.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { canonicalize } from "@tufjs/canonical-json";
import { Key, Metadata, MetaFile, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } from "@tufjs/models";
import { tempDir } from "../helpers/cara.js";

interface TestKey {
  key: Key;
  privateKey: KeyObject;
}

function newKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
  const body = { keytype: "ed25519", scheme: "ed25519", keyval: { public: raw } };
  const keyID = createHash("sha256").update(canonicalize(body)).digest("hex");
  return { key: new Key({ keyID, keyType: "ed25519", scheme: "ed25519", keyVal: { public: raw } }), privateKey };
}

function signer(k: TestKey) {
  return (data: Buffer) => new Signature({ keyID: k.key.keyID, sig: sign(null, data, k.privateKey).toString("hex") });
}

function expiresIn(ms: number): string {
  return new Date(Date.now() + ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

const DAY = 86_400_000;

export interface TufRepo {
  /** The mirror base URL (update.tufMirror). */
  url: string;
  /** The repository's first root.json on disk (update.tufRoot). */
  initialRootPath: string;
  /** Publishes `text` as targets/trusted_root.json (new targets, snapshot and timestamp versions). */
  publish(text: string): void;
  /** Serves `text` at targets/trusted_root.json without re-signing anything (a tampered mirror). */
  serveUnsignedTarget(text: string): void;
  /** Re-signs the timestamp with an expiry in the past (a freeze attack or a dead repository). */
  expireTimestamp(): void;
  /** Publishes root v(N+1) with new keys for every role, signed by the old and the new root key, and re-signs everything. */
  rotateKeys(): void;
  /** Paths requested, in order. */
  requests: string[];
  close(): Promise<void>;
}

export async function startTufRepo(): Promise<TufRepo> {
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  let keys = { root: newKey(), targets: newKey(), snapshot: newKey(), timestamp: newKey() };
  let rootVersion = 1;
  let targetsVersion = 0;
  let target = Buffer.from("{}");

  const put = (name: string, md: Metadata<Root | Timestamp | Snapshot | Targets>) => files.set(`/${name}`, Buffer.from(JSON.stringify(md.toJSON())));
  const makeRoot = (signers: TestKey[]) => {
    const root = new Root({ version: rootVersion, specVersion: "1.0.31", expires: expiresIn(365 * DAY), consistentSnapshot: false });
    for (const role of ["root", "targets", "snapshot", "timestamp"] as const) root.addKey(keys[role].key, role);
    const md = new Metadata(root);
    for (const s of signers) md.sign(signer(s));
    put(`${rootVersion}.root.json`, md);
    return md;
  };
  const signChain = (timestampExpires = expiresIn(DAY)) => {
    targetsVersion++;
    const targets = new Targets({ version: targetsVersion, specVersion: "1.0.31", expires: expiresIn(30 * DAY) });
    targets.addTarget(
      new TargetFile({ path: "trusted_root.json", length: target.length, hashes: { sha256: createHash("sha256").update(target).digest("hex") } }),
    );
    const targetsMd = new Metadata(targets);
    targetsMd.sign(signer(keys.targets));
    put("targets.json", targetsMd);
    const snapshot = new Snapshot({
      version: targetsVersion,
      specVersion: "1.0.31",
      expires: expiresIn(7 * DAY),
      meta: { "targets.json": new MetaFile({ version: targetsVersion }) },
    });
    const snapshotMd = new Metadata(snapshot);
    snapshotMd.sign(signer(keys.snapshot));
    put("snapshot.json", snapshotMd);
    const timestamp = new Timestamp({
      version: targetsVersion,
      specVersion: "1.0.31",
      expires: timestampExpires,
      snapshotMeta: new MetaFile({ version: targetsVersion }),
    });
    const timestampMd = new Metadata(timestamp);
    timestampMd.sign(signer(keys.timestamp));
    put("timestamp.json", timestampMd);
    files.set("/targets/trusted_root.json", target);
  };

  const first = makeRoot([keys.root]);
  signChain();
  const dir = await tempDir();
  const initialRootPath = join(dir, "1.root.json");
  await writeFile(initialRootPath, JSON.stringify(first.toJSON()));

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    requests.push(path);
    const body = files.get(path);
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": String(body.length) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    initialRootPath,
    requests,
    publish(text) {
      target = Buffer.from(text);
      signChain();
    },
    serveUnsignedTarget(text) {
      files.set("/targets/trusted_root.json", Buffer.from(text));
    },
    expireTimestamp() {
      signChain(expiresIn(-DAY));
    },
    rotateKeys() {
      const oldRoot = keys.root;
      keys = { root: newKey(), targets: newKey(), snapshot: newKey(), timestamp: newKey() };
      rootVersion++;
      makeRoot([oldRoot, keys.root]);
      signChain();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
