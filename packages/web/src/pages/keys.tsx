import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api.ts";
import { Card, ErrorBox, Secret, Skeleton, age } from "../ui.tsx";

export default function Keys() {
  const qc = useQueryClient();
  const keys = useQuery({ queryKey: ["api-keys"], queryFn: api.apiKeys });
  const [name, setName] = useState("");
  const refresh = () => qc.invalidateQueries({ queryKey: ["api-keys"] });
  const create = useMutation({
    mutationFn: api.createApiKey,
    onSuccess: () => setName(""),
    onSettled: refresh,
  });
  const revoke = useMutation({ mutationFn: api.revokeApiKey, onSettled: refresh });
  return (
    <Card title="API keys">
      <form
        className="row"
        aria-label="create API key"
        onSubmit={(e) => {
          e.preventDefault();
          if (name) create.mutate(name);
        }}
      >
        <input
          aria-label="key name"
          placeholder="key name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          required
        />
        <button className="primary" type="submit" disabled={create.isPending}>
          Create key
        </button>
      </form>
      {create.data && (
        <div className="secret" role="status">
          <p>Copy the key now: it is shown only once.</p>
          <Secret text={create.data.key} testId="new-key" />
        </div>
      )}
      <ErrorBox error={keys.error ?? create.error ?? revoke.error} />
      {keys.isPending ? (
        <Skeleton rows={2} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Name</th>
                <th>Prefix</th>
                <th className="hide-sm">Created</th>
                <th className="hide-sm">Last used</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {(keys.data ?? []).map((k) => (
                <tr key={k.id} className={k.revoked_at ? "muted" : ""}>
                  <td>{k.name}</td>
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td className="hide-sm">{age(k.created_at)} ago</td>
                  <td className="hide-sm">
                    {k.last_used_at ? `${age(k.last_used_at)} ago` : "never"}
                  </td>
                  <td className="row end">
                    {k.revoked_at ? (
                      "revoked"
                    ) : (
                      <button
                        className="danger"
                        onClick={() => {
                          if (confirm(`Revoke ${k.name}?`)) revoke.mutate(k.id);
                        }}
                      >
                        Revoke
                      </button>
                    )}
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
