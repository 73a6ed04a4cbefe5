import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, type Me, type Member } from "../api.ts";
import { Card, ErrorBox, Skeleton, age } from "../ui.tsx";
import { Invites } from "./invites.tsx";

export default function Members({ me }: { me: Me | undefined }) {
  const qc = useQueryClient();
  const teamId = me?.team_id ?? "";
  const members = useQuery({
    queryKey: ["members", teamId],
    queryFn: () => api.members(teamId),
    enabled: !!teamId,
  });
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Member["role"]>("member");
  const [teamName, setTeamName] = useState("");
  const refresh = () => qc.invalidateQueries({ queryKey: ["members", teamId] });
  const add = useMutation({
    mutationFn: () => api.addMember(teamId, email, role),
    onSuccess: () => setEmail(""),
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: (userId: string) => api.removeMember(teamId, userId),
    onSettled: refresh,
  });
  const newTeam = useMutation({
    mutationFn: () => api.createTeam(teamName),
    onSuccess: () => {
      setTeamName("");
      void qc.invalidateQueries({ queryKey: ["me"] });
    },
  });
  const canManage = me?.role === "owner" || me?.role === "admin";
  const team = me?.teams.find((t) => t.id === teamId);
  return (
    <>
      <Card title={`Members of ${team?.name ?? "this team"}`}>
        {canManage && (
          <form
            className="row"
            aria-label="add member"
            onSubmit={(e) => {
              e.preventDefault();
              add.mutate();
            }}
          >
            <input
              aria-label="email"
              type="email"
              placeholder="email of a signed-up user"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              required
            />
            <select
              aria-label="role"
              value={role}
              onChange={(e) => setRole(e.target.value as Member["role"])}
            >
              <option>member</option>
              <option>admin</option>
              <option>owner</option>
            </select>
            <button className="primary" type="submit" disabled={add.isPending}>
              Add
            </button>
          </form>
        )}
        <ErrorBox error={members.error ?? add.error ?? remove.error} />
        {add.error instanceof ApiError && add.error.code === "not_found" && (
          <p className="muted" data-testid="invite-hint">
            No account has that email yet: create an invite below and send them its link.
          </p>
        )}
        {members.isPending ? (
          <Skeleton rows={2} />
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Email</th>
                  <th>Role</th>
                  <th className="hide-sm">Joined</th>
                  {canManage && <th />}
                </tr>
              </thead>
              <tbody>
                {(members.data ?? []).map((m) => (
                  <tr key={m.user_id}>
                    <td>{m.email}</td>
                    <td>{m.role}</td>
                    <td className="hide-sm">{age(m.created_at)} ago</td>
                    {canManage && (
                      <td className="row end">
                        {m.user_id !== me?.user?.id && (
                          <button
                            className="danger"
                            onClick={() => {
                              if (confirm(`Remove ${m.email}?`)) remove.mutate(m.user_id);
                            }}
                          >
                            Remove
                          </button>
                        )}
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      {canManage && me && <Invites me={me} />}
      <Card title="New team">
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (teamName) newTeam.mutate();
          }}
        >
          <input
            aria-label="team name"
            placeholder="team name"
            value={teamName}
            onChange={(e) => setTeamName(e.target.value)}
          />
          <button type="submit" disabled={newTeam.isPending}>
            Create team
          </button>
        </form>
        <ErrorBox error={newTeam.error} />
        {newTeam.data && (
          <p className="muted">Team {newTeam.data.name} created: switch to it in the top bar.</p>
        )}
      </Card>
    </>
  );
}
