import { Code, ConnectError } from "@connectrpc/connect";
import { session } from "./session.js";

/** What went wrong, for a person. */
export interface Problem {
  text: string;
  code?: Code;
  /** Seconds to wait before trying again (429 / RESOURCE_EXHAUSTED with Retry-After). */
  retryAfterS?: number;
}

/** A call we cancelled ourselves (page left, filter changed): not an error to show. */
export function isCancel(err: unknown): boolean {
  return (err instanceof ConnectError && err.code === Code.Canceled) || (err instanceof DOMException && err.name === "AbortError");
}

function retryAfter(err: ConnectError): number | undefined {
  const header = err.metadata.get("retry-after");
  const fromHeader = header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
  const fromText = /try again in (\d+)\s*s/.exec(err.rawMessage)?.[1];
  return fromHeader ?? (fromText ? Number(fromText) : undefined);
}

/** The CLI's wording where it has one: token rejected, too many attempts with the wait, unreachable. */
export function describe(err: unknown): Problem {
  const e = ConnectError.from(err);
  const unreachable = e.cause instanceof TypeError || /Failed to fetch|NetworkError|Load failed/.test(e.rawMessage);
  if (unreachable && (e.code === Code.Unknown || e.code === Code.Unavailable || e.code === Code.Internal)) {
    return { text: `Could not reach cara at ${location.host} (is the server running?). Retrying…`, code: Code.Unavailable };
  }
  switch (e.code) {
    case Code.Unauthenticated:
      return { text: `Token rejected: ${e.rawMessage}`, code: e.code };
    case Code.ResourceExhausted: {
      const wait = retryAfter(e);
      return {
        text:
          wait !== undefined && /authentication/.test(e.rawMessage)
            ? `Too many failed sign-in attempts: wrong tokens are refused for ${wait} s more (the right token is still accepted).`
            : e.rawMessage,
        code: e.code,
        ...(wait !== undefined ? { retryAfterS: wait } : {}),
      };
    }
    case Code.DeadlineExceeded:
      return { text: "cara did not answer within 30 s; check the server's logs.", code: e.code };
    default:
      return { text: e.rawMessage || `request failed (${Code[e.code]})`, code: e.code };
  }
}

/**
 * For calls made while signed in: a rejected token (rotated, server restarted with another)
 * signs out with "token rejected"; returns the problem to show otherwise.
 */
export function report(err: unknown): Problem {
  const p = describe(err);
  if (p.code === Code.Unauthenticated) session.signOut("Token rejected: sign in with the server's current token.");
  return p;
}
