/**
 * SHA256SUMS.txt (GNU `sha256sum` format: "<hex>  <name>" or "<hex> *<name>"). Returns the
 * digest listed for `assetName` (a leading "./dir/" is ignored), or throws with what is wrong.
 */
export function checksumFor(text: string, assetName: string): string {
  const matches: string[] = [];
  let lines = 0;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    lines++;
    const m = /^(\S+)\s+\*?(.+)$/.exec(line);
    if (!m) throw new Error(`checksum file is malformed: line ${lines} '${line.slice(0, 80)}'`);
    const name = m[2]!.split("/").pop();
    if (name !== assetName) continue;
    const hex = m[1]!.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`checksum file does not contain a valid SHA-256 hash for ${assetName}: '${m[1]!.slice(0, 80)}'`);
    matches.push(hex);
  }
  if (lines === 0) throw new Error("checksum file is empty");
  if (matches.length === 0) throw new Error(`checksum file does not list ${assetName}`);
  if (new Set(matches).size > 1) throw new Error(`checksum file lists ${assetName} more than once with different hashes`);
  return matches[0]!;
}
