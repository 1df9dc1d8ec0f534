// Regenerates assets/sigstore/trusted_root.json, the pinned Sigstore public-good trusted root used
// by the self-updater's verifier (src/update/sigstore-bundle.ts), from the TUF seed shipped by the pinned
// @sigstore/tuf package: node_modules/@sigstore/tuf/seeds.json, mirror
// https://tuf-repo-cdn.sigstore.dev, target "trusted_root.json" (base64). No network.
//
//   node scripts/update-trusted-root.mjs           write the file (prints its sha256)
//   node scripts/update-trusted-root.mjs --check   exit 1 if the committed file differs
//
// The file is the seed's bytes decoded verbatim, so its sha256 can be compared with the seed.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const MIRROR = "https://tuf-repo-cdn.sigstore.dev";
const TARGET = "trusted_root.json";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const seedsPath = require.resolve("@sigstore/tuf/seeds.json");
const tufVersion = JSON.parse(readFileSync(join(dirname(seedsPath), "package.json"), "utf8")).version;
const seeds = JSON.parse(readFileSync(seedsPath, "utf8"));
const encoded = seeds?.[MIRROR]?.targets?.[TARGET];
if (typeof encoded !== "string") {
  console.error(`${seedsPath}: no targets entry '${TARGET}' for mirror ${MIRROR}`);
  process.exit(1);
}
const bytes = Buffer.from(encoded, "base64");
const parsed = JSON.parse(bytes.toString("utf8"));
if (!Array.isArray(parsed.tlogs) || !Array.isArray(parsed.certificateAuthorities) || !Array.isArray(parsed.ctlogs)) {
  console.error(`${seedsPath}: '${TARGET}' is not a Sigstore TrustedRoot`);
  process.exit(1);
}

const out = join(root, "assets", "sigstore", TARGET);
const sha = createHash("sha256").update(bytes).digest("hex");
if (process.argv.includes("--check")) {
  let current;
  try {
    current = readFileSync(out);
  } catch {
    current = Buffer.alloc(0);
  }
  if (!current.equals(bytes)) {
    console.error(`${out} differs from the seed of @sigstore/tuf ${tufVersion}; run node scripts/update-trusted-root.mjs`);
    process.exit(1);
  }
  console.log(`${out} matches @sigstore/tuf ${tufVersion} seeds.json (sha256 ${sha})`);
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
  console.log(`wrote ${out} from @sigstore/tuf ${tufVersion} seeds.json (${bytes.length} bytes, sha256 ${sha})`);
  console.log(`tlogs: ${parsed.tlogs.map((t) => t.baseUrl).join(", ")}`);
}
