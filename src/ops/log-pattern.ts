/**
 * User-supplied regular expressions for log filtering, evaluated safely.
 *
 * Two layers: a static check refuses the shapes that backtrack catastrophically in ordinary
 * engines (nested quantifiers, ambiguous alternation under repetition, backreferences,
 * lookarounds, huge counts) with a message that names the rule; and every pattern that has a
 * quantifier or an alternation is then matched by re2js (a port of RE2: linear time in the
 * input), because even "harmless looking" patterns such as `.*a.*b` take O(n³) steps in V8.
 * Plain patterns (literals, classes, anchors) use the built-in engine, which is faster.
 *
 * re2js (a quarter of a MiB of source) is imported on first use, not when the server starts:
 * callers `await loadLogPatternEngine()` before `compileLogPattern`.
 */
import type { RE2JS } from "re2js";

let engine: typeof RE2JS | undefined;

/** Imports the linear-time matcher that `compileLogPattern` needs (once; later calls return at once). */
export async function loadLogPatternEngine(): Promise<void> {
  engine ??= (await import("re2js")).RE2JS;
}

export const MAX_PATTERN_LENGTH = 256;
/** Largest `{n,m}` count accepted (RE2 has the same limit). */
export const MAX_REPEAT_COUNT = 1000;

/** A pattern refused by `compileLogPattern`; the message names the field and the rule. */
export class LogPatternError extends Error {
  readonly field = "pattern";
  constructor(message: string) {
    super(`pattern: ${message}`);
    this.name = "LogPatternError";
  }
}

/** A compiled, safe-to-run log pattern. */
export interface LogPattern {
  /** The pattern as given (including a leading `(?i)`). */
  readonly source: string;
  /** True when the pattern matches somewhere in `text` (unanchored, like RegExp#test). */
  test(text: string): boolean;
}

// ---- a small parser for JavaScript regex syntax (the source was validated by RegExp first) ----

interface Term {
  atom: Atom;
  min: number;
  max: number;
  start: number;
  end: number;
}
type Atom =
  | { kind: "char"; ch: string }
  | { kind: "set" }
  | { kind: "assert" }
  | { kind: "backref"; text: string }
  | { kind: "group"; look: boolean; alts: Term[][]; text: string };

class Parser {
  pos = 0;
  constructor(readonly src: string) {}

  parseAlternation(): Term[][] {
    const alts: Term[][] = [this.parseSequence()];
    while (this.src[this.pos] === "|") {
      this.pos++;
      alts.push(this.parseSequence());
    }
    return alts;
  }

  private parseSequence(): Term[] {
    const terms: Term[] = [];
    while (this.pos < this.src.length && this.src[this.pos] !== "|" && this.src[this.pos] !== ")") {
      const start = this.pos;
      const atom = this.parseAtom();
      const term: Term = { atom, min: 1, max: 1, start, end: this.pos };
      this.parseQuantifier(term);
      terms.push(term);
    }
    return terms;
  }

  private parseAtom(): Atom {
    const src = this.src;
    const c = src[this.pos] as string;
    if (c === "\\") return this.parseEscape();
    if (c === "[") {
      this.pos++;
      if (src[this.pos] === "^") this.pos++;
      // With the u flag a "]" right after "[" or "[^" closes the class ("[]" is the empty class).
      while (this.pos < src.length && src[this.pos] !== "]") this.pos += src[this.pos] === "\\" ? 2 : 1;
      this.pos++;
      return { kind: "set" };
    }
    if (c === "(") {
      const start = this.pos;
      this.pos++;
      let look = false;
      if (src.startsWith("?:", this.pos)) this.pos += 2;
      else if (src.startsWith("?=", this.pos) || src.startsWith("?!", this.pos)) {
        look = true;
        this.pos += 2;
      } else if (src.startsWith("?<=", this.pos) || src.startsWith("?<!", this.pos)) {
        look = true;
        this.pos += 3;
      } else if (src.startsWith("?<", this.pos)) this.pos = src.indexOf(">", this.pos) + 1;
      const alts = this.parseAlternation();
      this.pos++; // ")"
      return { kind: "group", look, alts, text: src.slice(start, this.pos) };
    }
    this.pos++;
    if (c === ".") return { kind: "set" };
    if (c === "^" || c === "$") return { kind: "assert" };
    return { kind: "char", ch: c };
  }

  private parseEscape(): Atom {
    const src = this.src;
    const start = this.pos;
    const c = src[this.pos + 1] as string;
    this.pos += 2;
    if (c >= "1" && c <= "9") {
      while (/[0-9]/.test(src[this.pos] ?? "")) this.pos++;
      return { kind: "backref", text: src.slice(start, this.pos) };
    }
    if (c === "k" && src[this.pos] === "<") {
      this.pos = src.indexOf(">", this.pos) + 1;
      return { kind: "backref", text: src.slice(start, this.pos) };
    }
    if (c === "b" || c === "B") return { kind: "assert" };
    if ((c === "p" || c === "P" || c === "u") && src[this.pos] === "{") {
      this.pos = src.indexOf("}", this.pos) + 1;
      return c === "u" ? { kind: "char", ch: src.slice(start, this.pos) } : { kind: "set" };
    }
    if (c === "u") this.pos += 4;
    else if (c === "x") this.pos += 2;
    else if (c === "c") this.pos += 1;
    if ("dDwWsS".includes(c)) return { kind: "set" };
    return { kind: "char", ch: src.slice(start, this.pos) };
  }

  private parseQuantifier(term: Term): void {
    const src = this.src;
    const c = src[this.pos];
    if (c === "*") [term.min, term.max] = [0, Infinity];
    else if (c === "+") [term.min, term.max] = [1, Infinity];
    else if (c === "?") [term.min, term.max] = [0, 1];
    else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(this.pos));
      if (!m) return;
      term.min = Number(m[1]);
      term.max = m[2] === undefined ? term.min : m[3] === "" ? Infinity : Number(m[3]);
      this.pos += m[0].length - 1;
    } else return;
    this.pos++;
    if (src[this.pos] === "?") this.pos++; // lazy
    term.end = this.pos;
  }
}

function snippet(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** True when any term inside has a variable-length quantifier (?, *, +, {n,m} with n < m). */
function hasVariableQuantifier(alts: Term[][]): boolean {
  for (const seq of alts) {
    for (const t of seq) {
      if (t.min !== t.max) return true;
      if (t.atom.kind === "group" && hasVariableQuantifier(t.atom.alts)) return true;
    }
  }
  return false;
}

/** An alternation is unambiguous when every branch starts with a different literal character. */
function unambiguousAlternation(alts: Term[][], ignoreCase: boolean): boolean {
  const firsts = new Set<string>();
  for (const seq of alts) {
    const first = seq[0];
    if (first?.atom.kind !== "char" || first.min !== 1 || first.max !== 1) return false;
    const ch = ignoreCase ? first.atom.ch.toLowerCase() : first.atom.ch;
    if (firsts.has(ch)) return false;
    firsts.add(ch);
  }
  return true;
}

interface Shape {
  /** A quantifier or an alternation exists (such patterns go to the linear-time engine). */
  complex: boolean;
}

function checkTerms(alts: Term[][], src: string, ignoreCase: boolean, repeatedBy: Term | null, shape: Shape): void {
  if (alts.length > 1) {
    shape.complex = true;
    if (repeatedBy && !unambiguousAlternation(alts, ignoreCase)) {
      throw new LogPatternError(
        `alternation '${snippet(src.slice(repeatedBy.start, repeatedBy.end))}' inside a repeated group can backtrack ` +
          `catastrophically (its branches can match the same text); simplify it`,
      );
    }
  }
  for (const seq of alts) {
    for (const t of seq) {
      const quantText = src.slice(t.start, t.end);
      if (t.min !== 1 || t.max !== 1) shape.complex = true;
      if (t.min > MAX_REPEAT_COUNT || (t.max !== Infinity && t.max > MAX_REPEAT_COUNT)) {
        throw new LogPatternError(`repetition count in '${snippet(quantText)}' is over ${MAX_REPEAT_COUNT}; use a smaller count`);
      }
      const atom = t.atom;
      if (atom.kind === "backref") {
        throw new LogPatternError(`backreference '${atom.text}' is not allowed (backreferences can backtrack catastrophically); match the text literally`);
      }
      if (atom.kind !== "group") continue;
      if (atom.look) {
        throw new LogPatternError(`lookaround '${snippet(atom.text)}' is not supported (it cannot be evaluated in linear time); use a plain pattern`);
      }
      const repeats = t.max > 1;
      if (repeats && hasVariableQuantifier(atom.alts)) {
        throw new LogPatternError(`nested quantifier '${snippet(quantText)}' can backtrack catastrophically; simplify it`);
      }
      checkTerms(atom.alts, src, ignoreCase, repeats ? t : repeatedBy, shape);
    }
  }
}

/**
 * Compiles a log filter pattern: JavaScript regex syntax, at most 256 characters, an optional
 * leading `(?i)` for case-insensitive matching. Throws LogPatternError (message
 * `pattern: <rule>`) for an empty, too long or invalid pattern, and for shapes that backtrack
 * catastrophically: a repeated group containing a variable quantifier (`(a+)+`, `(.*)*`,
 * `(\w+\.)+`), a repeated group with branches that can start alike (`(a|a)*`, `(\w|\d)+`),
 * backreferences, lookarounds, and counts over 1000. Callers treat "" as "no pattern".
 * `loadLogPatternEngine()` must have completed first.
 */
export function compileLogPattern(source: string): LogPattern {
  if (typeof source !== "string" || source.length === 0) throw new LogPatternError("is empty");
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new LogPatternError(`is ${source.length} characters long; the limit is ${MAX_PATTERN_LENGTH}`);
  }
  const ignoreCase = source.startsWith("(?i)");
  const body = ignoreCase ? source.slice(4) : source;
  if (body.length === 0) throw new LogPatternError("is empty");
  let native: RegExp;
  try {
    native = new RegExp(body, ignoreCase ? "iu" : "u");
  } catch (err) {
    throw new LogPatternError(`is not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, "")}`);
  }
  const parser = new Parser(body);
  const alts = parser.parseAlternation();
  const shape: Shape = { complex: false };
  checkTerms(alts, body, ignoreCase, null, shape);
  if (!shape.complex) return { source, test: (text) => native.test(text) };
  if (!engine) throw new Error("compileLogPattern: call loadLogPatternEngine() first");
  let re2: RE2JS;
  try {
    re2 = engine.compile(engine.translateRegExp(body), ignoreCase ? engine.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw new LogPatternError(`uses syntax the linear-time matcher does not support: ${(err as Error).message}`);
  }
  return { source, test: (text) => re2.test(text) };
}
