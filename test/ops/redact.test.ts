import assert from "node:assert/strict";
import { test } from "node:test";
import { isSecretFieldName, isTokenCountName, lineNeedsRedaction, redactFields, redactString } from "../../src/ops/redact.js";
import { KNOWN_SECRETS, REDACTION_TABLE, SERVER_SECRET, SERVER_TOKEN } from "./redaction-table.js";

test("redactString: the redaction table", () => {
  assert.ok(REDACTION_TABLE.length >= 25);
  for (const c of REDACTION_TABLE) {
    assert.equal(redactString(c.input, KNOWN_SECRETS), c.expected ?? c.input, c.name);
  }
});

test("redactString is idempotent on the table", () => {
  for (const c of REDACTION_TABLE) {
    const once = redactString(c.input, KNOWN_SECRETS);
    assert.equal(redactString(once, KNOWN_SECRETS), once, c.name);
  }
});

test("redactString fast path returns plain ASCII text itself", () => {
  const s = "task 42 finished in 12 ms on worker w-3";
  assert.equal(redactString(s, KNOWN_SECRETS), s);
  assert.equal(redactString("", KNOWN_SECRETS), "");
});

test("redactString ignores known secrets that are too short or blank", () => {
  assert.equal(redactString("abc and abc", ["abc", "      ", ""]), "abc and abc");
});

test("redactString redacts every occurrence of a known secret, longest first", () => {
  const short = SERVER_TOKEN.slice(0, 12);
  assert.equal(redactString(`${SERVER_TOKEN} ${SERVER_TOKEN}`, [short, SERVER_TOKEN]), "[REDACTED] [REDACTED]");
});

test("redactFields: secret names are redacted, token counts and metadata are kept", () => {
  const input = {
    max_tokens: 4096,
    maxTokens: 1,
    tokenCount: 2,
    token_count: 3,
    input_tokens: 4,
    outputTokens: 5,
    total_tokens: 6,
    contextTokens: 7,
    tokens: 8,
    token: "abc",
    apiKey: "k",
    api_key: "k",
    password: "p",
    passwd: "p",
    secret: 123,
    authorization: "Bearer x",
    cookie: "a=b",
    "set-cookie": ["a=b"],
    credentials: { user: "u" },
    private_key: "-----BEGIN KEY-----",
    access_token: "a",
    refresh_token: "r",
    client_secret: "c",
    "X-Api-Key": "k",
    hasToken: true,
    tokenSource: "env",
    empty_password: "",
    nothing_secret: null,
  };
  assert.deepEqual(redactFields(input, KNOWN_SECRETS), {
    max_tokens: 4096,
    maxTokens: 1,
    tokenCount: 2,
    token_count: 3,
    input_tokens: 4,
    outputTokens: 5,
    total_tokens: 6,
    contextTokens: 7,
    tokens: 8,
    token: "[REDACTED]",
    apiKey: "[REDACTED]",
    api_key: "[REDACTED]",
    password: "[REDACTED]",
    passwd: "[REDACTED]",
    secret: "[REDACTED]",
    authorization: "[REDACTED]",
    cookie: "[REDACTED]",
    "set-cookie": "[REDACTED]",
    credentials: "[REDACTED]",
    private_key: "[REDACTED]",
    access_token: "[REDACTED]",
    refresh_token: "[REDACTED]",
    client_secret: "[REDACTED]",
    "X-Api-Key": "[REDACTED]",
    hasToken: true,
    tokenSource: "env",
    empty_password: "",
    nothing_secret: null,
  });
});

test("redactFields scrubs strings under ordinary names, in nested objects, arrays and keys", () => {
  const input = {
    url: "https://u:p@h/x",
    nested: { list: ["Bearer abcdef123456", 3, { note: `uses ${SERVER_SECRET}` }] },
    [`k-${SERVER_TOKEN}`]: 1,
    plain: "nothing here",
  };
  assert.deepEqual(redactFields(input, KNOWN_SECRETS), {
    url: "https://[REDACTED]@h/x",
    nested: { list: ["Bearer [REDACTED]", 3, { note: "uses [REDACTED]" }] },
    "k-[REDACTED]": 1,
    plain: "nothing here",
  });
  assert.equal(input.url, "https://u:p@h/x", "the input is not mutated");
});

test("redactFields returns the same object when nothing changes", () => {
  const input = { a: 1, b: ["x", { c: "y" }], max_tokens: 5 };
  assert.equal(redactFields(input, KNOWN_SECRETS), input);
});

test("redactFields caps depth", () => {
  let deep: Record<string, unknown> = { leaf: "x" };
  for (let i = 0; i < 40; i++) deep = { d: deep };
  const out = JSON.stringify(redactFields(deep));
  assert.match(out, /"\[TRUNCATED\]"/);
  assert.doesNotMatch(out, /leaf/);
});

test("secret field names and token counts", () => {
  for (const name of [
    "token",
    "Token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apiKey",
    "api_key",
    "x-api-key",
    "authorization",
    "Proxy-Authorization",
    "cookie",
    "set-cookie",
    "credential",
    "credentials",
    "private_key",
    "privateKey",
    "access_token",
    "refresh_token",
    "client_secret",
    "auth",
    "pwd",
    "sessionKey",
    "gatewayToken",
  ]) {
    assert.equal(isSecretFieldName(name), true, name);
  }
  for (const name of [
    "max_tokens",
    "maxTokens",
    "tokenCount",
    "token_count",
    "input_tokens",
    "outputTokens",
    "total_tokens",
    "contextTokens",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "tokens_used",
    "tokenSource",
    "tokenPath",
    "secretSource",
    "author",
    "keyboard",
    "key",
    "component",
    "level",
  ]) {
    assert.equal(isSecretFieldName(name), false, name);
  }
  assert.equal(isTokenCountName("max_completion_tokens"), true);
  assert.equal(isTokenCountName("token"), false);
});

test("every secret field name sends a JSON line to the slow path", () => {
  for (const name of [
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apiKey",
    "authorization",
    "cookie",
    "set-cookie",
    "credential",
    "private_key",
    "access_token",
    "client_secret",
    "auth",
    "pwd",
    "sessionKey",
  ]) {
    assert.equal(lineNeedsRedaction(`{"level":"info","${name}":"x"}\n`), true, name);
  }
  assert.equal(lineNeedsRedaction('{"level":"info","msg":"task 1 done"}\n', KNOWN_SECRETS), false);
  assert.equal(lineNeedsRedaction('{"level":"info","msg":"a\\u001b[31m"}\n'), true, "escapes");
  assert.equal(lineNeedsRedaction('{"level":"info","msg":"café"}\n'), true, "non-ASCII");
  assert.equal(lineNeedsRedaction(`{"level":"info","msg":"${SERVER_TOKEN}"}\n`, KNOWN_SECRETS), true, "known secret");
});
