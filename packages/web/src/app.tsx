import { lazy, Suspense, useEffect, useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, onSessionExpired, session, type Me } from "./api.ts";
import { match, navigate, usePath } from "./router.ts";
import { ErrorBox, Link, Skeleton } from "./ui.tsx";
import { Login } from "./pages/login.tsx";
import { SandboxList } from "./pages/sandboxes.tsx";

// Pages past the first screen load on demand, keeping the first load small;
// once the first screen is up they are fetched while the browser is idle, so
// a click in the navigation does not wait for its page's code.
const pages = {
  sandbox: () => import("./pages/sandbox.tsx"),
  templates: () => import("./pages/templates.tsx"),
  admin: () => import("./pages/admin.tsx"),
  keys: () => import("./pages/keys.tsx"),
  members: () => import("./pages/members.tsx"),
  test: () => import("./pages/test-page.tsx"),
};
const SandboxPage = lazy(pages.sandbox);
const Templates = lazy(pages.templates);
const Admin = lazy(pages.admin);
const Keys = lazy(pages.keys);
const Members = lazy(pages.members);
const TestPage = lazy(pages.test);

function prefetchPages(): void {
  const idle = window.requestIdleCallback ?? ((fn: () => void) => setTimeout(fn, 200));
  idle(() => {
    for (const load of Object.values(pages)) void load().catch(() => {});
  });
}

export function App() {
  const [token, setToken] = useState(session.token());
  const [notice, setNotice] = useState<string | null>(null);
  const qc = useQueryClient();
  useEffect(
    () =>
      onSessionExpired(() => {
        session.clear();
        qc.clear();
        setNotice("Your session expired or was revoked: sign in again.");
        setToken(null);
      }),
    [qc],
  );
  if (!token) {
    return (
      <Login
        notice={notice}
        onSignedIn={(s) => {
          session.set(s.token, s.team.id);
          setNotice(null);
          setToken(s.token);
          const p = location.pathname;
          if (p === "/" || p.startsWith("/dashboard/login") || p.startsWith("/dashboard/signup")) {
            navigate("/dashboard/sandboxes", true);
          }
        }}
      />
    );
  }
  return (
    <Shell
      onLogout={() => {
        session.clear();
        qc.clear();
        setNotice("Signed out.");
        setToken(null);
      }}
    />
  );
}

const NAV = [
  ["/dashboard/sandboxes", "Sandboxes"],
  ["/dashboard/templates", "Templates"],
  ["/dashboard/keys", "API keys"],
  ["/dashboard/members", "Members"],
] as const;

function Shell({ onLogout }: { onLogout: () => void }) {
  const path = usePath();
  const qc = useQueryClient();
  const me = useQuery({ queryKey: ["me"], queryFn: api.me, staleTime: 30_000 });
  const [menu, setMenu] = useState(false);
  useEffect(prefetchPages, []);
  const nav: ReadonlyArray<readonly [string, string]> = me.data?.is_admin
    ? [...NAV, ["/dashboard/admin", "Admin"]]
    : NAV;
  const switchTeam = (teamId: string) => {
    session.setTeam(teamId);
    // Everything cached belongs to the old team.
    qc.clear();
    navigate("/dashboard/sandboxes");
  };
  return (
    <div className="shell">
      <header className="topbar">
        <button className="ghost menu-btn" aria-label="menu" onClick={() => setMenu(!menu)}>
          ☰
        </button>
        <Link href="/dashboard/sandboxes" className="brand">
          Wrenn
        </Link>
        <div className="spacer" />
        {me.data && <TeamSwitcher me={me.data} onSwitch={switchTeam} />}
        <span className="who" title={me.data?.user?.email}>
          {me.data?.user?.email}
        </span>
        <button className="ghost" onClick={onLogout}>
          Sign out
        </button>
      </header>
      <nav className={`sidebar ${menu ? "open" : ""}`} onClick={() => setMenu(false)}>
        {nav.map(([href, label]) => (
          <Link key={href} href={href} className={path.startsWith(href) ? "active" : ""}>
            {label}
          </Link>
        ))}
        <Link href="/test" className={path === "/test" ? "active" : ""}>
          Lifecycle test
        </Link>
        <a href="/docs">API docs</a>
      </nav>
      <main className="content">
        <ErrorBox error={me.error} />
        <Suspense fallback={<Skeleton rows={4} />}>
          <Page path={path} me={me.data} onLogout={onLogout} />
        </Suspense>
      </main>
    </div>
  );
}

function TeamSwitcher({ me, onSwitch }: { me: Me; onSwitch: (id: string) => void }) {
  if (me.teams.length < 2) return <span className="team muted">team {me.teams[0]?.name}</span>;
  return (
    <label className="team">
      <span className="sr-only">Team</span>
      <select aria-label="team" value={me.team_id} onChange={(e) => onSwitch(e.target.value)}>
        {me.teams.map((t) => (
          <option key={t.id} value={t.id}>
            {t.name} ({t.role})
          </option>
        ))}
      </select>
    </label>
  );
}

function Page({ path, me, onLogout }: { path: string; me: Me | undefined; onLogout: () => void }) {
  if (
    path === "/" ||
    path === "/dashboard" ||
    path === "/dashboard/" ||
    path === "/dashboard/login"
  ) {
    return <Redirect to="/dashboard/sandboxes" />;
  }
  if (path === "/test") return <TestPage />;
  if (match("/dashboard/signup", path)) return <InviteWhileSignedIn me={me} onLogout={onLogout} />;
  if (match("/dashboard/sandboxes", path)) return <SandboxList />;
  const sb = match("/dashboard/sandboxes/:id", path);
  if (sb?.id) return <SandboxPage key={sb.id} id={sb.id} />;
  if (match("/dashboard/templates", path)) return <Templates />;
  if (match("/dashboard/keys", path)) return <Keys />;
  if (match("/dashboard/members", path)) return <Members me={me} />;
  if (match("/dashboard/admin", path)) return <Admin me={me} />;
  return (
    <div className="card">
      <h2>Not found</h2>
      <p>
        Nothing at <code>{path}</code>. <Link href="/dashboard/sandboxes">Go to sandboxes</Link>
      </p>
    </div>
  );
}

/** An invite link opened in a browser that is signed in: invites make new accounts. */
function InviteWhileSignedIn({ me, onLogout }: { me: Me | undefined; onLogout: () => void }) {
  return (
    <div className="card">
      <h2>Sign up with an invite</h2>
      <p>
        This link signs up a new account, and you are signed in as{" "}
        <strong>{me?.user?.email ?? "someone"}</strong>. Sign out to use it; to bring an existing
        account into a team, its owner adds it on the Members page.
      </p>
      <div className="row">
        <button className="primary" onClick={onLogout}>
          Sign out and sign up
        </button>
        <Link href="/dashboard/sandboxes">Stay signed in</Link>
      </div>
    </div>
  );
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, true), [to]);
  return null;
}
