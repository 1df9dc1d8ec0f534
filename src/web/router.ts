// History-API routing: the server answers /console/... with the page, so deep links and reloads work.
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "overview" }
  | { page: "logs" }
  | { page: "tasks"; id?: string; create?: boolean }
  | { page: "backups" }
  | { page: "update" }
  | { page: "missing"; path: string };

export function parseRoute(path: string): Route {
  const parts = path.replace(/\/+$/, "").split("/").filter(Boolean);
  if (parts.length === 0 || (parts[0] === "console" && (parts.length === 1 || (parts.length === 2 && parts[1] === "overview")))) return { page: "overview" };
  if (parts[0] !== "console") return { page: "missing", path };
  const [, page, arg] = parts;
  if (page === "logs" && !arg) return { page: "logs" };
  if (page === "backups" && !arg) return { page: "backups" };
  if (page === "update" && !arg) return { page: "update" };
  if (page === "tasks" && parts.length <= 3)
    return arg === "new" ? { page: "tasks", create: true } : arg ? { page: "tasks", id: decodeURIComponent(arg) } : { page: "tasks" };
  return { page: "missing", path };
}

const NAV_EVENT = "cara:navigate";

export function navigate(path: string, replace = false): void {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  dispatchEvent(new Event(NAV_EVENT));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.pathname));
    addEventListener("popstate", update);
    addEventListener(NAV_EVENT, update);
    return () => {
      removeEventListener("popstate", update);
      removeEventListener(NAV_EVENT, update);
    };
  }, []);
  return route;
}

/** A click on a same-app link navigates without a reload (a modified click opens a tab as usual). */
export function onLinkClick(e: MouseEvent): void {
  const a = e.currentTarget as HTMLAnchorElement;
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.pathname);
}
