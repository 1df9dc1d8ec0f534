import { Code } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { ops, unary } from "../api.js";
import { describe, type Problem } from "../errors.js";
import { useNow } from "../hooks.js";
import { session } from "../session.js";

/**
 * Asks for the bearer token once and checks it with GetStatus before keeping it. A wrong token
 * is "token rejected"; after too many failures the server answers 429 and the form counts down
 * its Retry-After, as the CLI reports it. The form stays usable: the server always accepts the
 * right token, even from an address that is over its limit.
 */
export function SignIn() {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | undefined>();
  const [blockedUntil, setBlockedUntil] = useState(0);
  const now = useNow(500);
  const input = useRef<HTMLInputElement>(null);
  const wait = Math.max(0, Math.ceil((blockedUntil - now) / 1000));

  useEffect(() => {
    document.title = "Sign in · cara console";
    input.current?.focus();
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setProblem({ text: "Enter the token first." });
      input.current?.focus();
      return;
    }
    setBusy(true);
    setProblem(undefined);
    try {
      await ops.getStatus({}, { ...unary(), headers: { authorization: `Bearer ${value}` } });
      setToken("");
      session.signIn(value);
    } catch (err) {
      const p = describe(err);
      if (p.code === Code.Unauthenticated) p.text = "Token rejected: the server did not accept this token.";
      if (p.retryAfterS !== undefined) setBlockedUntil(Date.now() + p.retryAfterS * 1000);
      setProblem(p);
      input.current?.select();
    } finally {
      setBusy(false);
    }
  };

  const message =
    problem?.retryAfterS !== undefined && wait > 0
      ? `Too many failed sign-in attempts: wrong tokens are refused for ${wait} s more (the right token is still accepted).`
      : problem?.text;
  return (
    <main class="signin" id="main">
      <form class="panel signin-card" onSubmit={submit} noValidate>
        <h1 id="page-title" tabIndex={-1}>
          <span class="brand-mark" aria-hidden="true">
            c
          </span>
          cara console
        </h1>
        {session.notice && !message && <p class="notice info">{session.notice}</p>}
        <label for="token">Bearer token</label>
        <input
          id="token"
          ref={input}
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          aria-describedby="token-help token-error"
          aria-invalid={problem ? "true" : undefined}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <p id="token-error" class={`field-error ${message ? "shown" : ""}`} role="alert">
          {message ?? ""}
        </p>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p id="token-help" class="help">
          The token is in <code>&lt;state dir&gt;/auth/token</code> on the server (or its <code>CARAPACE_GATEWAY_TOKEN</code>). It is kept in this tab's session
          storage only, and forgotten when you sign out or close the tab.
        </p>
      </form>
    </main>
  );
}
