import assert from "node:assert/strict";
import { test } from "node:test";
import { compileLogPattern, LogPatternError, loadLogPatternEngine } from "../../src/ops/log-pattern.js";

await loadLogPatternEngine();

function refusal(source: string): string {
  try {
    compileLogPattern(source);
  } catch (err) {
    assert.ok(err instanceof LogPatternError);
    assert.equal(err.field, "pattern");
    return err.message;
  }
  assert.fail(`pattern ${JSON.stringify(source)} was accepted`);
}

test("refuses patterns that can backtrack catastrophically, naming the rule", () => {
  const cases: [string, string][] = [
    ["(a+)+", "pattern: nested quantifier '(a+)+' can backtrack catastrophically; simplify it"],
    ["(.*)*x", "pattern: nested quantifier '(.*)*' can backtrack catastrophically; simplify it"],
    ["^(\\w+\\s?)+$", "pattern: nested quantifier '(\\w+\\s?)+' can backtrack catastrophically; simplify it"],
    ["(?:a{1,5}){2}", "pattern: nested quantifier '(?:a{1,5}){2}' can backtrack catastrophically; simplify it"],
    ["(a|a)*", "pattern: alternation '(a|a)*' inside a repeated group can backtrack catastrophically (its branches can match the same text); simplify it"],
    [
      "(\\w|\\d)+",
      "pattern: alternation '(\\w|\\d)+' inside a repeated group can backtrack catastrophically (its branches can match the same text); simplify it",
    ],
    [
      "((ab|ac)d)+",
      "pattern: alternation '((ab|ac)d)+' inside a repeated group can backtrack catastrophically (its branches can match the same text); simplify it",
    ],
    ["(a)\\1", "pattern: backreference '\\1' is not allowed (backreferences can backtrack catastrophically); match the text literally"],
    ["(?<w>x)\\k<w>", "pattern: backreference '\\k<w>' is not allowed (backreferences can backtrack catastrophically); match the text literally"],
    ["(?=a+)b", "pattern: lookaround '(?=a+)' is not supported (it cannot be evaluated in linear time); use a plain pattern"],
    ["(?<!x)y", "pattern: lookaround '(?<!x)' is not supported (it cannot be evaluated in linear time); use a plain pattern"],
    ["a{1001}", "pattern: repetition count in 'a{1001}' is over 1000; use a smaller count"],
  ];
  for (const [source, message] of cases) assert.equal(refusal(source), message, source);
});

test("refuses empty, too long and invalid patterns", () => {
  assert.equal(refusal(""), "pattern: is empty");
  assert.equal(refusal("(?i)"), "pattern: is empty");
  assert.equal(refusal("x".repeat(257)), "pattern: is 257 characters long; the limit is 256");
  assert.equal(refusal("(abc"), "pattern: is not a valid regular expression: Unterminated group");
  assert.equal(refusal("a**"), "pattern: is not a valid regular expression: Nothing to repeat");
});

test("accepts ordinary patterns and matches like RegExp#test", () => {
  const cases: [string, string, boolean][] = [
    ["timeout", "request timeout after 5 s", true],
    ["^task \\d{1,5} finished$", "task 12 finished", true],
    ["^task \\d{1,5} finished$", "task 123456 finished", false],
    ["(?i)WORKER w-[37]", "worker w-3 started", true],
    ["(foo|bar)+z", "foobarz", true],
    ["(a{2})+b", "aaaab", true],
    ["[\\w.-]+@[\\w.-]+", "mail bob@example.com", true],
    ["\\p{L}+é", "café", true],
    ["x".repeat(256), "x".repeat(256), true],
    ["(?:x|y)?z", "q", false],
  ];
  for (const [source, text, expected] of cases) {
    const p = compileLogPattern(source);
    assert.equal(p.source, source);
    assert.equal(p.test(text), expected, `${source} on ${text}`);
  }
});

test("polynomial patterns run in linear time on long input", () => {
  // In V8 these take O(n³) steps (minutes on 20k characters); the linear engine answers at once.
  const text = "a".repeat(20_000);
  assert.equal(compileLogPattern(".*a.*a.*b").test(text), false);
  assert.equal(compileLogPattern("\\s*\\s*\\s*x").test(" ".repeat(20_000)), false);
  assert.equal(compileLogPattern("a.*b").test(`${text}b`), true);
});
