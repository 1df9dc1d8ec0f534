/**
 * A database URL as it may appear in a message: the password replaced by `***`. Anything that
 * does not parse as a URL is not echoed at all.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(a database URL that does not parse)";
  }
  if (parsed.password !== "") parsed.password = "***";
  for (const key of [...parsed.searchParams.keys()]) if (/pass/i.test(key)) parsed.searchParams.set(key, "***");
  return parsed.toString();
}

/** `message` with the URL and its password (raw and percent-decoded) replaced by their redacted forms. */
export function scrub(message: string, url: string): string {
  let out = message.split(url).join(redactUrl(url));
  for (const secret of urlPasswords(url)) out = out.split(secret).join("***");
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The password of a database URL as written and percent-decoded (none when it has none or does not parse). */
export function urlPasswords(url: string): string[] {
  let password: string;
  try {
    password = new URL(url).password;
  } catch {
    return [];
  }
  return password === "" ? [] : [...new Set([password, safeDecode(password)])];
}
