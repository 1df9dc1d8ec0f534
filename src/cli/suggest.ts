/**
 * What to say when the command line names no command: an unknown command (with the nearest known
 * one: "unknown command 'stauts', did you mean 'status'?"), or a command without a required
 * option ("missing required option --dir <dir>").
 */
import { valueName } from "./value-names.js";

export interface CommandDefinition {
  /** Words after the binary name, e.g. ["task", "create"]; [] for the default command. */
  path: string[];
  /** Option definitions as clipanion gives them ("--port,-p #0"), with whether each is required. */
  options: { names: string[]; takesValue: boolean; required: boolean }[];
  /** Required positional arguments as usage shows them ("<id>", "<file>"). */
  positionals: string[];
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `word` when it is near enough to be a typo of it. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { c: string; d: number; raw: number } | undefined;
  for (const c of candidates) {
    const raw = editDistance(word, c);
    // A prefix of a longer name counts as one edit away (`--stat` of `--state-dir`); ties go to the nearer spelling.
    const d = c.startsWith(word) && word.replace(/^-+/, "").length >= 2 ? Math.min(raw, 1) : raw;
    if (!best || d < best.d || (d === best.d && raw < best.raw)) best = { c, d, raw };
  }
  return best && best.d <= Math.max(1, Math.floor(best.c.length / 3)) ? best.c : undefined;
}

/** The leading words of a command line (up to the first option). */
function words(args: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (a.startsWith("-")) break;
    out.push(a);
  }
  return out;
}

/**
 * Why `args` names no command, when that is the reason it did not parse: an unknown first word,
 * or an unknown second word where only sub-commands may follow. Undefined otherwise.
 */
export function unknownCommand(args: readonly string[], commands: readonly CommandDefinition[]): string | undefined {
  const w = words(args);
  if (w.length === 0) return undefined;
  const firsts = [...new Set(commands.map((c) => c.path[0]).filter((p): p is string => p !== undefined))];
  if (!firsts.includes(w[0]!)) {
    const near = closest(w[0]!, firsts);
    return `unknown command '${w[0]}'${near ? `, did you mean '${near}'?` : ""}`;
  }
  if (w.length < 2) return undefined;
  const seconds = commands.filter((c) => c.path[0] === w[0] && c.path.length === 2).map((c) => c.path[1]!);
  if (seconds.length === 0 || seconds.includes(w[1]!)) return undefined;
  const near = closest(w[1]!, seconds);
  const alone = commands.some((c) => c.path.length === 1 && c.path[0] === w[0]);
  // `cara backup FILE` may be a stray argument rather than a sub-command: only say so when it looks like one.
  if (alone && !near) return undefined;
  return `unknown command '${w[0]} ${w[1]}'${near ? `, did you mean '${w[0]} ${near}'?` : ""}`;
}

/** The command `args` names (the longest matching path). */
export function commandOf(args: readonly string[], commands: readonly CommandDefinition[]): CommandDefinition | undefined {
  const w = words(args);
  let best: CommandDefinition | undefined;
  for (const c of commands) {
    if (c.path.every((p, i) => w[i] === p) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best;
}

/** "missing required option --dir <dir>" when `args` lacks a required option of its command. */
export function missingRequired(args: readonly string[], command: CommandDefinition): string | undefined {
  const given = (n: string) => args.some((a) => a === n || a.startsWith(`${n}=`));
  const missing = command.options.filter((o) => o.required && !o.names.some(given));
  if (missing.length === 0) return undefined;
  const shown = missing.map((o) => `${o.names.find((n) => n.startsWith("--")) ?? o.names[0]}${o.takesValue ? ` <${valueName(o.names)}>` : ""}`);
  return `missing required option${shown.length > 1 ? "s" : ""} ${shown.join(", ")}`;
}

/**
 * clipanion's definitions as CommandDefinitions. clipanion lists a command under its first path
 * only: the default command (no words) is also registered as `start`, so it is listed twice here.
 */
export function fromClipanion(
  definitions: readonly { path: string; usage: string; options: readonly { definition: string; required: boolean }[] }[],
): CommandDefinition[] {
  const commands = convert(definitions);
  const start = commands.find((c) => c.path.length === 0);
  if (start && !commands.some((c) => c.path.join(" ") === "start")) commands.push({ ...start, path: ["start"] });
  return commands;
}

function convert(definitions: readonly { path: string; usage: string; options: readonly { definition: string; required: boolean }[] }[]): CommandDefinition[] {
  return definitions.map((d) => ({
    path: d.path.split(" ").slice(1),
    positionals:
      d.usage
        .slice(d.path.length)
        .trim()
        .match(/<\S+>(?=\s|$)/g) ?? [],
    options: d.options.map((o) => {
      const [names, ...holes] = o.definition.split(" ");
      return { names: names!.split(","), takesValue: holes.length > 0, required: o.required };
    }),
  }));
}

/** "unknown option '--josn', did you mean '--json'?" for the first option `command` does not have. */
export function unknownOption(args: readonly string[], command: CommandDefinition): string | undefined {
  const names = command.options.flatMap((o) => o.names);
  const known = [...names, "-h", "--help"];
  for (const a of args) {
    if (a === "--") break;
    if (!a.startsWith("-") || /^-\d/.test(a)) continue;
    const name = a.split("=")[0]!;
    if (known.includes(name)) continue;
    const near = closest(
      name,
      names.filter((n) => n.startsWith("--")),
    );
    return `unknown option '${name}'${near ? `, did you mean '${near}'?` : ""}`;
  }
  return undefined;
}

/** "missing argument <id>" when `args` gives fewer positional arguments than `command` requires. */
export function missingPositional(args: readonly string[], command: CommandDefinition): string | undefined {
  const given = words(args).length - command.path.length;
  const missing = command.positionals.slice(Math.max(0, given));
  return missing.length === 0 ? undefined : `missing argument${missing.length > 1 ? "s" : ""} ${missing.join(" ")}`;
}
