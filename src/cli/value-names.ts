/**
 * Names for option values in help and usage text. clipanion writes a value placeholder as `#0`;
 * `nameValues` replaces each with a name: `--port,-p #0` -> `--port,-p <port>`. The name is the
 * option's long name unless the table below gives a clearer one.
 */
const NAMES: Record<string, string> = {
  "--bind": "address",
  "--state-dir": "dir",
  "--tls-ca": "file",
  "--tls-cert": "file",
  "--tls-key": "file",
  "--output": "file",
  "--path": "file",
  "--secret-file": "file",
  "--bundle": "file",
  "--trusted-root": "file",
  "--timeout": "duration",
  "--deadline": "duration",
  "--lines": "n",
  "--limit": "n",
  "--priority": "n",
  "--max-attempts": "n",
  "--max-turns": "n",
  "--max-total-runtime-ms": "ms",
  "--max-run-timeout-seconds": "seconds",
  "--next-run-at-ms": "ms",
  "--delay-ms": "ms",
  "--payload": "json",
  "--sections": "list",
  "--grep": "text",
  "--reason": "text",
  "--pattern": "regex",
  "--certificate-identity-regexp": "regex",
  "--certificate-oidc-issuer": "url",
  "--releases-url": "url",
  "--log-level": "level",
};

/** The value name of an option given by its names (e.g. ["--port", "-p"] -> "port"). */
export function valueName(names: readonly string[]): string {
  const long = names.find((n) => n.startsWith("--")) ?? names[0] ?? "value";
  return NAMES[long] ?? long.replace(/^-+/, "");
}

/** Help or usage text with every `#N` value placeholder named. */
export function nameValues(text: string): string {
  return text.replace(/((?:-{1,2}[A-Za-z][\w-]*)(?:,-{1,2}[A-Za-z][\w-]*)*)((?: #\d+)+)/g, (_all, names: string, holes: string) => {
    const name = valueName(names.split(","));
    return `${names}${holes.replace(/ #\d+/g, ` <${name}>`)}`;
  });
}
