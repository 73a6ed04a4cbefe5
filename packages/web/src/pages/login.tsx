import { useState, type FormEvent } from "react";
import { api, type Session } from "../api.ts";
import { inviteFromUrl, inviteToken } from "../invite-link.ts";
import { ErrorBox } from "../ui.tsx";

export function Login({
  notice,
  onSignedIn,
}: {
  notice: string | null;
  onSignedIn: (s: Session) => void;
}) {
  // An invite link (/dashboard/signup#invite=…) opens the sign-up form with its token.
  const [invite, setInvite] = useState(() => inviteFromUrl(location.hash, location.search));
  const [mode, setMode] = useState<"login" | "signup">(() =>
    invite || location.pathname === "/dashboard/signup" ? "signup" : "login",
  );
  const invited = !!inviteFromUrl(location.hash, location.search);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(
        mode === "login"
          ? await api.login(email, password)
          : await api.signup(email, password, name || undefined, inviteToken(invite) || undefined),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="login">
      <form
        className="card"
        onSubmit={submit}
        aria-label={mode === "login" ? "sign in" : "sign up"}
      >
        <h1>Wrenn</h1>
        <div className="tabs" role="tablist">
          <button
            type="button"
            role="tab"
            aria-selected={mode === "login"}
            onClick={() => setMode("login")}
          >
            Sign in
          </button>
          <button
            type="button"
            role="tab"
            aria-selected={mode === "signup"}
            onClick={() => setMode("signup")}
          >
            Sign up
          </button>
        </div>
        {notice && <p className="notice">{notice}</p>}
        {invited && mode === "signup" && (
          <p className="muted" data-testid="invite-notice">
            You were invited: create your account to join the team.
          </p>
        )}
        <label>
          Email
          <input
            name="email"
            type="email"
            autoComplete="username"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </label>
        {mode === "signup" && (
          <label>
            Name (optional)
            <input name="name" value={name} onChange={(e) => setName(e.target.value)} />
          </label>
        )}
        {mode === "signup" && (
          <label>
            Invite {invited ? "" : "(needed unless sign-up is open)"}
            <input
              name="invite"
              autoComplete="off"
              spellCheck={false}
              value={invite}
              onChange={(e) => setInvite(e.target.value)}
            />
          </label>
        )}
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === "login" ? "current-password" : "new-password"}
            minLength={mode === "signup" ? 8 : 1}
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <ErrorBox error={error} />
        <button className="primary" type="submit" disabled={busy}>
          {busy ? "…" : mode === "login" ? "Sign in" : "Create account"}
        </button>
        <p className="muted small">
          After <code>wrenn up</code>, the admin's email and password are in{" "}
          <code>control-plane/admin.json</code> under the data dir.
        </p>
      </form>
    </div>
  );
}
