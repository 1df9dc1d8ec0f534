import semver from "semver";

/** Release channels: stable sees only releases, beta also pre-releases. */
export const CHANNELS = ["stable", "beta"] as const;
export type Channel = (typeof CHANNELS)[number];

export class InvalidUpdateInput extends Error {}

/** "stable" when empty; anything but stable/beta is refused. */
export function parseChannel(value: string | undefined): Channel {
  if (value === undefined || value === "") return "stable";
  if ((CHANNELS as readonly string[]).includes(value)) return value as Channel;
  throw new InvalidUpdateInput(`unknown update channel: ${value} (valid: ${CHANNELS.join(", ")})`);
}

/**
 * A version as typed by an operator ("0.2.0" or "v0.2.0") → canonical semver without "v".
 * Refuses anything that is not a semantic version (it also becomes a path component).
 */
export function normalizeVersion(value: string): string {
  const trimmed = value.trim();
  const parsed = semver.valid(trimmed.replace(/^v/, ""));
  if (!parsed || trimmed.length > 128) throw new InvalidUpdateInput(`invalid version '${value}': not a semantic version`);
  return parsed;
}

export function isPrerelease(version: string): boolean {
  return semver.prerelease(version) !== null;
}

export interface TargetComparison {
  /** Target differs from current and may be installed under the given rules. */
  available: boolean;
  downgrade: boolean;
  same: boolean;
}

/**
 * Compares a target with the running version by semver precedence (build metadata ignored).
 * A downgrade counts as available only with allowDowngrade.
 */
export function compareTarget(current: string, target: string, allowDowngrade: boolean): TargetComparison {
  const cur = semver.valid(current);
  if (!cur) return { available: true, downgrade: false, same: false }; // unknown running version: anything valid is an update
  const order = semver.compare(target, cur);
  if (order === 0) return { available: false, downgrade: false, same: true };
  if (order < 0) return { available: allowDowngrade, downgrade: true, same: false };
  return { available: true, downgrade: false, same: false };
}

/** Newest first; invalid versions are dropped. */
export function sortVersionsDescending(versions: string[]): string[] {
  return versions.filter((v) => semver.valid(v) !== null).sort((a, b) => semver.rcompare(a, b));
}
