import { useEffect, useState } from "preact/hooks";
import { BackupsPage } from "./pages/backups.js";
import { LogsPage } from "./pages/logs.js";
import { OverviewPage } from "./pages/overview.js";
import { SignIn } from "./pages/sign-in.js";
import { TasksPage } from "./pages/tasks.js";
import { UpdatePage } from "./pages/update.js";
import { onLinkClick, useRoute, type Route } from "./router.js";
import { session } from "./session.js";

const PAGES: { page: Route["page"]; href: string; label: string }[] = [
  { page: "overview", href: "/", label: "Overview" },
  { page: "logs", href: "/console/logs", label: "Logs" },
  { page: "tasks", href: "/console/tasks", label: "Tasks" },
  { page: "backups", href: "/console/backups", label: "Backups" },
  { page: "update", href: "/console/update", label: "Update" },
];

function useSignedIn(): boolean {
  const [signedIn, setSignedIn] = useState(session.token !== null);
  useEffect(() => session.subscribe(() => setSignedIn(session.token !== null)), []);
  return signedIn;
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "overview":
      return <OverviewPage />;
    case "logs":
      return <LogsPage />;
    case "tasks":
      return <TasksPage id={route.id} create={route.create ?? false} />;
    case "backups":
      return <BackupsPage />;
    case "update":
      return <UpdatePage />;
    case "missing":
      return (
        <div class="page-header">
          <h1 tabIndex={-1} id="page-title">
            Not found
          </h1>
          <p>
            There is no console page at <code>{route.path}</code>.{" "}
            <a href="/" onClick={onLinkClick}>
              Go to the overview
            </a>
            .
          </p>
        </div>
      );
  }
}

export function App() {
  const signedIn = useSignedIn();
  const route = useRoute();
  const title = PAGES.find((p) => p.page === route.page)?.label ?? "Not found";

  // Moving between pages puts the keyboard focus on the new page's heading, as a page load would.
  useEffect(() => {
    document.title = signedIn ? `${title} · cara console` : "Sign in · cara console";
    if (signedIn) document.getElementById("page-title")?.focus({ preventScroll: false });
  }, [route.page, signedIn]);

  if (!signedIn) return <SignIn />;
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/" onClick={onLinkClick}>
          <span class="brand-mark" aria-hidden="true">
            c
          </span>
          cara <span class="brand-sub">console</span>
        </a>
        <nav aria-label="Console pages" class="nav">
          <ul>
            {PAGES.map((p) => (
              <li key={p.page}>
                <a href={p.href} onClick={onLinkClick} aria-current={route.page === p.page ? "page" : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="signout" onClick={() => session.signOut("Signed out. The token was removed from this tab.")}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} />
      </main>
    </div>
  );
}
