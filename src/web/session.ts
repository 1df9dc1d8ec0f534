// The bearer token lives in this tab's sessionStorage only: never in a URL, a cookie or a log.
// Closing the tab or signing out forgets it.
const KEY = "cara.token";

type Listener = () => void;
const listeners = new Set<Listener>();

function read(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the token then lives in memory until reload
  }
}

let token: string | null = read();
let notice: string | null = null;

function emit(): void {
  for (const fn of listeners) fn();
}

export const session = {
  get token(): string | null {
    return token;
  },
  /** Why the user was signed out (shown on the sign-in form), e.g. "token rejected". */
  get notice(): string | null {
    return notice;
  },
  signIn(value: string): void {
    token = value;
    notice = null;
    try {
      sessionStorage.setItem(KEY, value);
    } catch {
      // keep it in memory only
    }
    emit();
  },
  signOut(reason?: string): void {
    token = null;
    notice = reason ?? null;
    try {
      sessionStorage.removeItem(KEY);
    } catch {
      // nothing stored
    }
    emit();
  },
  subscribe(fn: Listener): () => void {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};
