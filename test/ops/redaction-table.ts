/**
 * The redaction table of issue 3: inputs and their exact redacted forms, checked through
 * redactString (redact.test.ts) and through the pipeline's stdout, file and ring
 * (log-pipeline.test.ts). The server's own token and secret are the known secrets.
 */
export const SERVER_TOKEN = "Zk3Jd8sLqP0wXyT6vB1nR4mC7aE9hG2uK5oI8sQ3fD0";
export const SERVER_SECRET = "q9W8e7R6t5Y4u3I2o1P0aSdFgHjKlZxCvBnMQwErTy";
export const KNOWN_SECRETS = [SERVER_TOKEN, SERVER_SECRET];

export interface RedactionCase {
  name: string;
  input: string;
  /** The exact output; `null` means unchanged. */
  expected: string | null;
}

export const REDACTION_TABLE: RedactionCase[] = [
  { name: "Authorization Bearer header", input: "Authorization: Bearer abc123def456ghi", expected: "Authorization: Bearer [REDACTED]" },
  {
    name: "Authorization Basic header in a curl line",
    input: "curl -H 'authorization: Basic dXNlcjpwYXNzd29yZA==' https://h",
    expected: "curl -H 'authorization: Basic [REDACTED]' https://h",
  },
  {
    name: "Bearer JWT in prose",
    input: "retrying with Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    expected: "retrying with Bearer [REDACTED]",
  },
  { name: "guard: Basic setup prose", input: "Basic setup complete", expected: null },
  { name: "guard: bearer as a word", input: "the bearer of bad news", expected: null },
  { name: "guard: authorization prose", input: "authorization: required for this endpoint", expected: null },
  { name: "sk-proj key", input: "using key sk-proj-AbC123dEf456GhI789jKl012MnO345", expected: "using key [REDACTED]" },
  {
    name: "sk-ant key in an env assignment",
    input: "ANTHROPIC_API_KEY=sk-ant-api03-abcDEF123456ghiJKL789mno-xyz_AA",
    expected: "ANTHROPIC_API_KEY=[REDACTED]",
  },
  { name: "legacy sk- key", input: "legacy sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL", expected: "legacy [REDACTED]" },
  { name: "guard: task- id is not sk-", input: "task-abcdefghijklmnopqrstuv123 finished", expected: null },
  {
    name: "JWT",
    input: "id_token eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    expected: "id_token [REDACTED]",
  },
  {
    name: "access_token in a query string",
    input: "GET /cb?code=abc&access_token=xyz123456&state=1",
    expected: "GET /cb?code=abc&access_token=[REDACTED]&state=1",
  },
  { name: "password= short value", input: "password=hunter2", expected: "password=[REDACTED]" },
  { name: "password: in prose", input: "db password: correcthorse", expected: "db password: [REDACTED]" },
  { name: "client_secret=", input: "client_secret=abcdefgh12345678", expected: "client_secret=[REDACTED]" },
  { name: "apikey=", input: "apikey=0123456789abcdef", expected: "apikey=[REDACTED]" },
  { name: "guard: token counts", input: "max_tokens=4096 tokenCount=12", expected: null },
  { name: "guard: short cache key", input: "cache key=user:42", expected: null },
  { name: "guard: token: prose", input: "invalid token: expected 3 segments", expected: null },
  {
    name: "URL with userinfo",
    input: "fetching https://admin:hunter2@db.example.com:5432/app",
    expected: "fetching https://[REDACTED]@db.example.com:5432/app",
  },
  { name: "guard: normal URL", input: "see https://example.com/docs?page=2#top", expected: null },
  { name: "guard: e-mail address", input: "mail bob@example.com about it", expected: null },
  { name: "server token inside a longer string", input: `x${SERVER_TOKEN}y`, expected: "x[REDACTED]y" },
  {
    name: "server token split by a zero-width space",
    input: `token ${SERVER_TOKEN.slice(0, 10)}\u200b${SERVER_TOKEN.slice(10)} sent`,
    expected: "token [REDACTED] sent",
  },
  {
    name: "server secret split by a soft hyphen and a bidi override",
    input: `secret is ${SERVER_SECRET.slice(0, 5)}\u00ad${SERVER_SECRET.slice(5, 20)}\u202e${SERVER_SECRET.slice(20)}`,
    expected: "secret is [REDACTED]",
  },
  { name: "Cookie header", input: "Cookie: sid=abc123; theme=dark", expected: "Cookie: [REDACTED]" },
  { name: "guard: cookie prose", input: "invalid cookie: missing name", expected: null },
  { name: "GitHub token", input: "pushed with ghp_abcdefghijklmnopqrstuvwxyz0123456789", expected: "pushed with [REDACTED]" },
  { name: "AWS access key id", input: "AWS key AKIAIOSFODNN7EXAMPLE", expected: "AWS key [REDACTED]" },
  { name: "control and bidi characters stripped", input: "bidi \u202eevil\u202c text\r\nnext\u0007", expected: "bidi evil text\nnext" },
  { name: "guard: short words", input: "short words: key, token, pass", expected: null },
  { name: "guard: plain status line", input: "ok: 3 tasks, 0 failed in 12 ms", expected: null },
  { name: "guard: non-ASCII text kept", input: "tab\tand café stay", expected: null },
  {
    name: "JSON text inside a message",
    input: '{"password":"pw","max_tokens":100}',
    expected: '{"password":"[REDACTED]","max_tokens":100}',
  },
];
