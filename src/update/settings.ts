import type { CaraConfig } from "../state/config.js";
import { DEFAULT_TUF_MIRROR, type TufSettings } from "./trust-root.js";
import type { Channel } from "./release-versions.js";

/** The project's own GitHub repository: default release source and signing identity. */
export const DEFAULT_REPOSITORY = "puremachinery/cara";
export const GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com";
/** How long an operator's "yes" lets an interrupted update apply on its own after a restart. */
export const APPLY_CONFIRMATION_TTL_MS = 15 * 60_000;

export interface UpdateSettings {
  releasesUrl: string;
  /** Exact certificate identity with "{version}" for the target version. */
  identityTemplate: string;
  issuer: string;
  /** A trusted_root.json; undefined → the one refreshed through TUF, else the pinned public-good root. */
  trustedRootPath?: string;
  /** Where the trusted root is refreshed from through TUF, and whether it is; undefined with a configured root. */
  tuf?: TufSettings;
  channel: Channel;
  restart: boolean;
  autoResume: boolean;
  retryDelaysMs: number[];
  maxAttempts: number;
}

/** Update settings from config.json's `update` section (identity, issuer, root are never an off switch). */
export function resolveUpdateSettings(config: CaraConfig): UpdateSettings {
  const u = config.update ?? {};
  const repo = u.repository ?? DEFAULT_REPOSITORY;
  return {
    releasesUrl: (u.releasesUrl ?? `https://api.github.com/repos/${repo}`).replace(/\/+$/, ""),
    identityTemplate: u.identity ?? `https://github.com/${repo}/.github/workflows/release.yml@refs/tags/v{version}`,
    issuer: u.issuer ?? GITHUB_ACTIONS_ISSUER,
    ...(u.trustedRoot ? { trustedRootPath: u.trustedRoot } : {}),
    ...(!u.trustedRoot
      ? {
          tuf: {
            mirrorUrl: (u.tufMirror ?? DEFAULT_TUF_MIRROR).replace(/\/+$/, ""),
            ...(u.tufRoot ? { initialRootPath: u.tufRoot } : {}),
            timeoutMs: 5_000,
            refresh: u.trustRefresh !== false,
          },
        }
      : {}),
    channel: u.channel ?? "stable",
    restart: u.restart ?? false,
    autoResume: u.autoResume ?? true,
    retryDelaysMs: u.retryDelaysMs ?? [5_000, 15_000, 45_000],
    maxAttempts: u.maxAttempts ?? 3,
  };
}

export function expectedIdentity(settings: UpdateSettings, version: string): string {
  return settings.identityTemplate.replaceAll("{version}", version);
}
