import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Invite, type Me } from "../api.ts";
import { inviteLink } from "../invite-link.ts";
import { Card, ErrorBox, Secret, Skeleton, age, until } from "../ui.tsx";

// The API takes 60 s to 30 days; these are the choices people make.
const EXPIRIES = [
  ["1 hour", 3600],
  ["1 day", 86400],
  ["7 days", 7 * 86400],
  ["30 days", 30 * 86400],
] as const;

/** Invites into the current team (owners and admins): how people sign up once sign-up is closed. */
export function Invites({ me }: { me: Me }) {
  const qc = useQueryClient();
  const key = ["invites", me.team_id];
  const pending = useQuery({ queryKey: key, queryFn: api.invites });
  const [role, setRole] = useState<Invite["role"]>("member");
  const [ttl, setTtl] = useState<number>(7 * 86400);
  const [email, setEmail] = useState("");
  const refresh = () => qc.invalidateQueries({ queryKey: key });
  const create = useMutation({
    mutationFn: () =>
      api.createInvite({ role, ttl_sec: ttl, ...(email.trim() ? { email: email.trim() } : {}) }),
    onSuccess: () => setEmail(""),
    onSettled: refresh,
  });
  const revoke = useMutation({ mutationFn: api.revokeInvite, onSettled: refresh });
  const roles: Invite["role"][] =
    me.role === "owner" ? ["member", "admin", "owner"] : ["member", "admin"];
  return (
    <Card title="Invites">
      <p className="muted small">
        Someone without an account signs up with an invite link and joins this team in its role.
        (Someone who already has an account: add them above by email.)
      </p>
      <form
        className="row"
        aria-label="create invite"
        onSubmit={(e) => {
          e.preventDefault();
          create.mutate();
        }}
      >
        <select
          aria-label="invite role"
          value={role}
          onChange={(e) => setRole(e.target.value as Invite["role"])}
        >
          {roles.map((r) => (
            <option key={r}>{r}</option>
          ))}
        </select>
        <select
          aria-label="invite expires in"
          value={ttl}
          onChange={(e) => setTtl(Number(e.target.value))}
        >
          {EXPIRIES.map(([label, sec]) => (
            <option key={sec} value={sec}>
              expires in {label}
            </option>
          ))}
        </select>
        <input
          aria-label="invite email"
          type="email"
          placeholder="for one email (optional)"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <button className="primary" type="submit" disabled={create.isPending}>
          Create invite
        </button>
      </form>
      {create.data && (
        <div className="secret" role="status">
          <p>
            Send this link to the person you invite; it is shown only once, and works once, for a{" "}
            {create.data.role}
            {create.data.email ? ` signing up as ${create.data.email}` : ""}, until{" "}
            {new Date(create.data.expires_at).toLocaleString()}.
          </p>
          <Secret text={inviteLink(create.data.token, location.origin)} testId="new-invite-link" />
        </div>
      )}
      <ErrorBox error={pending.error ?? create.error ?? revoke.error} />
      {pending.isPending ? (
        <Skeleton rows={1} />
      ) : (pending.data ?? []).length === 0 ? (
        <p className="muted">No pending invites.</p>
      ) : (
        <div className="table-wrap">
          <table aria-label="pending invites">
            <thead>
              <tr>
                <th>For</th>
                <th>Role</th>
                <th>Expires in</th>
                <th className="hide-sm">Created</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {(pending.data ?? []).map((i) => (
                <tr key={i.id} data-invite={i.id}>
                  <td>{i.email ?? <span className="muted">anyone with the link</span>}</td>
                  <td>{i.role}</td>
                  <td>{until(i.expires_at)}</td>
                  <td className="hide-sm">{age(i.created_at)} ago</td>
                  <td className="row end">
                    <button
                      className="danger"
                      disabled={revoke.isPending}
                      onClick={() => {
                        if (confirm("Revoke this invite? Its link stops working.")) {
                          revoke.mutate(i.id);
                        }
                      }}
                    >
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  );
}
