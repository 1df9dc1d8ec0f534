/**
 * Redaction of secrets in log text and structured log fields, before a record reaches stdout,
 * the log file or the ring.
 *
 * `redactString` strips invisible, bidi and control characters first (so they cannot split a
 * secret), then replaces Authorization values, API keys, JWTs, `name=value` secrets, URL userinfo
 * and the exact values of the server's own secrets. `redactFields` walks objects: values under
 * names that mean "secret" become "[REDACTED]" (token counts such as `max_tokens` excepted) and
 * every other string is scrubbed with `redactString`.
 *
 * Plain ASCII text without any trigger word takes a fast path and is returned unchanged.
 */

export const REDACTED = "[REDACTED]";

/** Known secrets shorter than this are ignored: redacting every "abc" would wreck the logs. */
export const MIN_KNOWN_SECRET_LENGTH = 6;

/**
 * Characters removed before anything else: control characters except LF and TAB, every space
 * separator except U+0020, soft hyphen, joiners, bidi controls, variation selectors, tags and the
 * other invisible format characters (Unicode's Default_Ignorable_Code_Point set and its
 * neighbours), which could otherwise split a secret so that no pattern sees it whole.
 */
const STRIP_RE =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: each invisible code point is matched on its own, joiners included, so that none can split a secret.
  /[\u0000-\u0008\u000B-\u001F\u007F-\u00A0\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u115F\u1160\u1680\u17B4\u17B5\u180E\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u206F\u3000\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF9-\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{E0100}-\u{E01EF}]/gu;

/**
 * Anything a rule below could act on: a character outside printable ASCII (LF and TAB excepted)
 * or "@" (URL userinfo), or a trigger word. A string with neither (and no known secret) is
 * returned as is. Keep the words in sync with the rules and with the secret field names (a test
 * checks the latter). Two regexes are faster in V8 than one with the class in the alternation.
 */
const TRIGGER_CHAR_RE = /[^\x20-\x3F\x41-\x7E\n\t]/;
const TRIGGER_WORD_RE = /auth|cookie|bearer|basic|eyj|sk[-_]|rk_|gh[pousr]_|github_pat|xox|akia|aiza|hf_|glpat|key|token|secret|pass|pwd|credential|sig/i;
/** For a JSON line: also any backslash (an escape may hide a control character or split a word). */
const LINE_TRIGGER_CHAR_RE = /[^\x20-\x3F\x41-\x5B\x5D-\x7E\n\t]/;

function hasTrigger(s: string): boolean {
  return TRIGGER_CHAR_RE.test(s) || TRIGGER_WORD_RE.test(s);
}

/** `https://user:pw@host` → `https://[REDACTED]@host` (greedy: a raw "@" in the password is covered). */
const URL_USERINFO_RE = /\b([A-Za-z][A-Za-z0-9+.-]{0,20}:\/\/)([^\s/?#"'<>[\]]+)@/g;

/** `Authorization: <scheme> <value>` and `authorization=<value>`. */
const AUTH_HEADER_RE = /\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)(?:([A-Za-z][A-Za-z0-9-]{0,30})(\s+))?([^\s"',;<>[\]]+)/gi;

/** Authorization schemes whose following word is always a credential. */
const AUTH_SCHEMES = new Set(["bearer", "basic", "digest", "token", "negotiate", "ntlm", "apikey", "key", "aws4-hmac-sha256", "hoba", "mutual"]);

/** `Cookie: a=b; c=d` and `Set-Cookie: sid=...; Path=/`: the whole value. */
const COOKIE_RE = /\b((?:set-)?cookie)(["']?\s*:\s*["']?)([^\s=;,"']+=[^\r\n"]*)/gi;

const BEARER_RE = /\b(bearer)(\s+)([A-Za-z0-9._~+/-]+=*)/gi;
const BASIC_RE = /\b(basic)(\s+)([A-Za-z0-9+/]+=*)/gi;

/** Three (or up to five, JWE) base64url segments, the first one a JSON header ("eyJ"). */
const JWT_RE = /\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){2,4}/g;

/** `sk-…` style keys (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Stripe sk_live_/rk_live_). */
const SK_KEY_RE = /\b(?:sk-|sk_(?:live|test)_|rk_(?:live|test)_)[A-Za-z0-9_-]{16,}/g;

/** Other well-known key shapes: GitHub, Slack, AWS access key id, Google, Hugging Face, GitLab. */
const VENDOR_KEY_RE =
  /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,})/g;

/**
 * `name=value`, `name: value` and `"name":"value"` where the name ends in a secret word. The
 * replacer decides per name strength and separator (see `redactPair`).
 */
const PAIR_RE =
  /(?<![A-Za-z0-9])([A-Za-z0-9_.-]{0,40}?(?:key|token|secret|password|passwd|pwd|passphrase|credentials?|auth|sig|signature)s?)(["']?\s*[:=]\s*["']?)([^\s"'&,;<>[\]{}()]+)/gi;

/** Names ending in "key" that always hold a secret (a bare "key" may be a cache or map key). */
const STRONG_KEY_NAME_RE = /(?:api|access|private|secret|signing|master|encryption|session|auth|client|license)keys?$/;

/** Names that always hold a secret when they end the name: `password: x` is redacted even in prose. */
const ALWAYS_SECRET_NAME_RE = /(?:password|passwd|pwd|passphrase|secret|secrets)$/;

/**
 * True for names of token counters (`max_tokens`, `tokenCount`, `input_tokens`, `outputTokens`,
 * `total_tokens`, `contextTokens`, `tokens_used`, `cache_read_input_tokens`, ...). The name is
 * compared lower-cased with `_`, `-`, `.` and spaces removed.
 */
const TOKEN_COUNT_NAME_RE =
  /^(?:(?:max|min|input|output|total|context|prompt|completion|cached|cache|cachecreationinput|cachereadinput|reasoning|num|used|remaining|estimated|maxoutput|maxinput|maxcompletion|maxnew|new|billed|generated|audio|text|image)tokens?(?:count|counts|used|limit|total|budget|remaining|persecond|persec|usage|details)?|tokens?(?:count|counts|used|limit|limits|total|budget|remaining|persecond|persec|usage|details))$/;

/** Secret words in field names (normalised: lower case, no `_ - .` or spaces). */
const SECRET_FIELD_RE =
  /token|secret|password|passwd|passphrase|apikey|accesskey|privatekey|secretkey|signingkey|encryptionkey|authkey|sessionkey|masterkey|authorization|cookie|credential/;

/** Field names that are exactly a secret word. */
const SECRET_FIELD_EXACT = new Set(["auth", "pwd", "pass"]);

/** Suffixes that describe a secret without holding it (`tokenSource`, `secretPath`, `tokenCount`). */
const SECRET_METADATA_SUFFIX_RE = /(?:count|counts|length|len|source|path|file|type|kind|present|configured|expiresat|expiresin|ttl)$/;

function normaliseName(name: string): string {
  return name.toLowerCase().replace(/[-_.\s]/g, "");
}

/** True when `name` (any case, snake or camel) names a token counter such as `max_tokens`. */
export function isTokenCountName(name: string): boolean {
  return TOKEN_COUNT_NAME_RE.test(normaliseName(name));
}

/**
 * True when a field with this name holds a secret: token, secret, password, passwd, passphrase,
 * apiKey/api_key, access/private key, authorization, cookie, set-cookie, credential(s),
 * access_token, refresh_token, client_secret, auth, pwd. Token counts (`max_tokens`, `tokenCount`)
 * and metadata about a secret (`tokenSource`, `secretPath`) are not secrets.
 */
export function isSecretFieldName(name: string): boolean {
  const n = normaliseName(name);
  if (SECRET_FIELD_EXACT.has(n)) return true;
  if (!SECRET_FIELD_RE.test(n)) return false;
  if (TOKEN_COUNT_NAME_RE.test(n)) return false;
  return !SECRET_METADATA_SUFFIX_RE.test(n);
}

/**
 * Heuristic for "this word is a credential, not prose": at least 8 characters and a digit, an
 * upper-case letter after the first character, one of `+ / = _ ~`, or 24+ characters.
 * "setup", "authentication", "required" are not; "dXNlcjpwYXNz", "abc123def456" are.
 */
export function looksLikeCredential(value: string): boolean {
  if (value.length < 8) return false;
  if (value.length >= 24) return true;
  return /[0-9+/=_~]/.test(value) || /[A-Z]/.test(value.slice(1));
}

const NO_SECRETS: readonly string[] = [];

function usableSecret(s: unknown): boolean {
  return typeof s === "string" && s.trim().length >= MIN_KNOWN_SECRET_LENGTH;
}

const usableCache = new WeakMap<readonly string[], readonly string[]>();

/** The known secrets worth matching, longest first (cached per list: no work on the hot path). */
function usableSecrets(knownSecrets: readonly string[] | undefined): readonly string[] {
  if (!knownSecrets || knownSecrets.length === 0) return NO_SECRETS;
  let usable = usableCache.get(knownSecrets);
  if (usable === undefined) {
    usable = knownSecrets.filter(usableSecret).sort((a, b) => b.length - a.length);
    usableCache.set(knownSecrets, usable);
  }
  return usable;
}

function containsKnownSecret(s: string, secrets: readonly string[]): boolean {
  for (const secret of secrets) if (s.includes(secret)) return true;
  return false;
}

function redactPair(match: string, name: string, sep: string, value: string): string {
  const n = normaliseName(name);
  if (TOKEN_COUNT_NAME_RE.test(n)) return match;
  const weak = /keys?$/.test(n) && !STRONG_KEY_NAME_RE.test(n);
  const assigned = sep.includes("=") || /["']/.test(sep);
  let secret: boolean;
  if (weak) secret = assigned ? value.length >= 8 : value.length >= 20 && /^[A-Za-z0-9_+=-]+$/.test(value) && /\d/.test(value);
  else if (assigned || ALWAYS_SECRET_NAME_RE.test(n)) secret = true;
  else secret = looksLikeCredential(value);
  return secret ? `${name}${sep}${REDACTED}` : match;
}

function redactAuthHeader(match: string, name: string, sep: string, scheme: string | undefined, space: string | undefined, value: string): string {
  if (scheme !== undefined && AUTH_SCHEMES.has(scheme.toLowerCase())) return `${name}${sep}${scheme}${space ?? " "}${REDACTED}`;
  if (scheme !== undefined) {
    // "authorization: required for ..." is prose; a lone credential after an unknown word is not.
    return looksLikeCredential(value) ? `${name}${sep}${scheme}${space ?? " "}${REDACTED}` : match;
  }
  if (sep.includes("=") || looksLikeCredential(value)) return `${name}${sep}${REDACTED}`;
  return match;
}

function redactScheme(match: string, word: string, space: string, value: string): string {
  return looksLikeCredential(value) ? `${word}${space}${REDACTED}` : match;
}

function redactSkKey(match: string): string {
  // Keys are random: a run with no digit and no upper case is a hyphenated name, not a key.
  return /[0-9A-Z]/.test(match.slice(3)) ? REDACTED : match;
}

const STRIPPABLE_RE = /[^\x20-\x7E\n\t]/;
const VENDOR_HINT_RE = /gh[pousr]_|github_pat_|xox|AKIA|AIza|hf_|glpat-/;
const PAIR_HINT_RE = /key|token|secret|passw|pwd|passphrase|credential|auth|sig/i;

/** The slow path: every rule, in order, each skipped when its cheap hint is absent. */
function redactSlow(input: string, secrets: readonly string[]): string {
  let s = STRIPPABLE_RE.test(input) ? input.replace(STRIP_RE, "") : input;
  for (const secret of secrets) if (s.includes(secret)) s = s.split(secret).join(REDACTED);
  const lower = s.toLowerCase();
  if (s.includes("@")) s = s.replace(URL_USERINFO_RE, `$1${REDACTED}@`);
  if (lower.includes("authorization")) s = s.replace(AUTH_HEADER_RE, redactAuthHeader);
  if (lower.includes("cookie")) s = s.replace(COOKIE_RE, `$1$2${REDACTED}`);
  if (lower.includes("bearer")) s = s.replace(BEARER_RE, redactScheme);
  if (lower.includes("basic")) s = s.replace(BASIC_RE, redactScheme);
  if (s.includes("eyJ")) s = s.replace(JWT_RE, REDACTED);
  if (s.includes("sk-") || s.includes("sk_") || s.includes("rk_")) s = s.replace(SK_KEY_RE, redactSkKey);
  if (VENDOR_HINT_RE.test(s)) s = s.replace(VENDOR_KEY_RE, REDACTED);
  if (PAIR_HINT_RE.test(s)) s = s.replace(PAIR_RE, redactPair);
  return s;
}

/**
 * Redacts one string: strips invisible/bidi/control characters (keeping LF and TAB), then
 * replaces secrets with "[REDACTED]". `knownSecrets` are exact values (the server's token and
 * secret) replaced wherever they occur, even inside longer strings; values shorter than
 * MIN_KNOWN_SECRET_LENGTH are ignored. The list is cached by identity: pass a new array rather
 * than mutating one.
 */
export function redactString(s: string, knownSecrets?: readonly string[]): string {
  const secrets = usableSecrets(knownSecrets);
  if (!hasTrigger(s) && !containsKnownSecret(s, secrets)) return s;
  return redactSlow(s, secrets);
}

/**
 * Cheap check for one serialized JSON log line: false means no rule of `redactString` or
 * `redactFields` could change anything in it (plain ASCII, no escapes, no trigger word, no
 * known secret), so the line can be written as is.
 */
export function lineNeedsRedaction(line: string, knownSecrets?: readonly string[]): boolean {
  return LINE_TRIGGER_CHAR_RE.test(line) || TRIGGER_WORD_RE.test(line) || containsKnownSecret(line, usableSecrets(knownSecrets));
}

const MAX_DEPTH = 32;

function redactSecretValue(value: unknown): unknown {
  if (value === null || value === undefined || typeof value === "boolean") return value;
  if (value === "") return value;
  return REDACTED;
}

function redactAny(value: unknown, secrets: readonly string[], depth: number): unknown {
  if (typeof value === "string") {
    return hasTrigger(value) || containsKnownSecret(value, secrets) ? redactSlow(value, secrets) : value;
  }
  if (value === null || typeof value !== "object") return value;
  if (depth >= MAX_DEPTH) return "[TRUNCATED]";
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const r = redactAny(v, secrets, depth + 1);
      if (r !== v && out === undefined) out = value.slice(0, i);
      if (out !== undefined) out.push(r);
    }
    return out ?? value;
  }
  return redactObject(value as Record<string, unknown>, secrets, depth);
}

function redactObject(obj: Record<string, unknown>, secrets: readonly string[], depth: number): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  const keys = Object.keys(obj);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const v = obj[key];
    let r: unknown;
    // A number under a plural "tokens" name is a count ({"tokens": 512}), not a secret.
    if (isSecretFieldName(key) && !(typeof v === "number" && /tokens$/.test(normaliseName(key)))) r = redactSecretValue(v);
    else r = redactAny(v, secrets, depth + 1);
    const k = hasTrigger(key) || containsKnownSecret(key, secrets) ? redactSlow(key, secrets) : key;
    if ((r !== v || k !== key) && out === undefined) {
      out = {};
      for (let j = 0; j < i; j++) {
        const kj = keys[j] as string;
        out[kj] = obj[kj];
      }
    }
    if (out !== undefined) out[k] = r;
  }
  return out ?? obj;
}

/**
 * Redacts a structured value (object, array or scalar) without mutating it: values under secret
 * field names (see `isSecretFieldName`) become "[REDACTED]" (objects and arrays collapse whole,
 * booleans, null and empty strings are kept), every other string is scrubbed with
 * `redactString`. Returns the input itself when nothing changed. Depth is capped at 32 levels.
 */
export function redactFields<T>(value: T, knownSecrets?: readonly string[]): T {
  return redactAny(value, usableSecrets(knownSecrets), 0) as T;
}
