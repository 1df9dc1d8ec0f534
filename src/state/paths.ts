import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Resolves the state directory: an explicit flag, else CARAPACE_STATE_DIR, else
 * $XDG_CONFIG_HOME/carapace, else ~/.config/carapace. Always absolute.
 */
export function resolveStateDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag && flag.trim() !== "") return resolve(flag);
  const fromEnv = env.CARAPACE_STATE_DIR;
  if (fromEnv && fromEnv.trim() !== "") return resolve(fromEnv);
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && xdg.trim() !== "") return resolve(xdg, "carapace");
  return join(homedir(), ".config", "carapace");
}

/** Well-known paths inside a state directory: config.json, auth/, tasks/, updates/, backups/, logs/. */
export function statePaths(stateDir: string) {
  return {
    root: stateDir,
    config: join(stateDir, "config.json"),
    authDir: join(stateDir, "auth"),
    token: join(stateDir, "auth", "token"),
    serverSecret: join(stateDir, "auth", "server-secret"),
    previousSecrets: join(stateDir, "auth", "previous-secrets"),
    lock: join(stateDir, "cara.lock"),
    tasksDir: join(stateDir, "tasks"),
    updatesDir: join(stateDir, "updates"),
    backupsDir: join(stateDir, "backups"),
    logsDir: join(stateDir, "logs"),
  };
}

export type StatePaths = ReturnType<typeof statePaths>;
