import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Template } from "../api.ts";
import { useSandboxActions } from "../actions.ts";
import { Card, ErrorBox, Skeleton, age, bytes } from "../ui.tsx";
import { CreateSandbox } from "./sandboxes.tsx";

export function TemplateTable({
  rows,
  onCreate,
  onDelete,
  showTeam,
}: {
  rows: Template[];
  onCreate?: (t: Template) => void;
  onDelete?: (t: Template) => void;
  showTeam?: boolean;
}) {
  if (rows.length === 0) return <p className="muted">No templates.</p>;
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Type</th>
            {showTeam && <th>Team</th>}
            <th className="hide-sm">Shape</th>
            <th className="hide-sm">Size</th>
            <th className="hide-sm">Age</th>
            {(onCreate || onDelete) && <th />}
          </tr>
        </thead>
        <tbody>
          {rows.map((t) => (
            <tr key={`${t.team_id}/${t.name}`} data-template={t.name}>
              <td>
                <b>{t.name}</b>
              </td>
              <td>{t.type}</td>
              {showTeam && (
                <td>
                  <code className="small">{t.team_id.slice(0, 8)}</code>
                </td>
              )}
              <td className="hide-sm">
                {t.vcpus ? `${t.vcpus} vCPU · ${t.memory_mb} MiB` : "any"}
              </td>
              <td
                className="hide-sm"
                title={t.size_bytes ? undefined : "the host did not report its size"}
              >
                {t.size_bytes ? bytes(t.size_bytes) : "—"}
              </td>
              <td className="hide-sm">{age(t.created_at)}</td>
              {(onCreate || onDelete) && (
                <td className="row end">
                  {onCreate && <button onClick={() => onCreate(t)}>Create sandbox</button>}
                  {onDelete && t.type === "snapshot" && (
                    <button className="danger" onClick={() => onDelete(t)}>
                      Delete
                    </button>
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export default function Templates() {
  const qc = useQueryClient();
  const templates = useQuery({
    queryKey: ["templates"],
    queryFn: api.templates,
    refetchInterval: 10_000,
  });
  const sandboxes = useQuery({ queryKey: ["sandboxes"], queryFn: api.sandboxes });
  const [createFrom, setCreateFrom] = useState<string | null>(null);
  const [source, setSource] = useState("");
  const [name, setName] = useState("");
  const a = useSandboxActions();
  const del = useMutation({
    mutationFn: (n: string) => api.deleteTemplate(n),
    onSettled: () => qc.invalidateQueries({ queryKey: ["templates"] }),
  });
  const candidates = (sandboxes.data ?? []).filter(
    (s) => s.status === "running" || s.status === "paused",
  );
  const base = (templates.data ?? []).filter((t) => t.type === "base");
  const snaps = (templates.data ?? []).filter((t) => t.type === "snapshot");
  return (
    <>
      {createFrom && (
        <Card title={`New sandbox from ${createFrom}`}>
          <CreateSandbox template={createFrom} onDone={() => setCreateFrom(null)} />
        </Card>
      )}
      <Card title="Snapshot a sandbox into a template">
        <form
          className="row"
          aria-label="snapshot a sandbox"
          onSubmit={(e) => {
            e.preventDefault();
            if (source) a.snapshot.mutate({ id: source, name: name || undefined });
          }}
        >
          <select aria-label="sandbox" value={source} onChange={(e) => setSource(e.target.value)}>
            <option value="">choose a sandbox…</option>
            {candidates.map((s) => (
              <option key={s.sandbox_id} value={s.sandbox_id}>
                {s.sandbox_id} ({s.template}, {s.status})
              </option>
            ))}
          </select>
          <input
            aria-label="template name"
            placeholder="name (optional)"
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
          <button type="submit" disabled={!source || a.snapshot.isPending}>
            {a.snapshot.isPending ? "Snapshotting…" : "Snapshot"}
          </button>
        </form>
        <ErrorBox error={a.snapshot.error} />
        {a.snapshot.data && (
          <p className="muted">
            Template {a.snapshot.data.name} created; the sandbox stays paused.
          </p>
        )}
      </Card>
      <Card title="Your team's snapshot templates">
        <ErrorBox error={templates.error ?? del.error} />
        {templates.isPending ? (
          <Skeleton rows={2} />
        ) : (
          <TemplateTable
            rows={snaps}
            onCreate={(t) => setCreateFrom(t.name)}
            onDelete={(t) => {
              if (confirm(`Delete template ${t.name}?`)) del.mutate(t.name);
            }}
          />
        )}
      </Card>
      <Card title="Base images">
        {templates.isPending ? (
          <Skeleton rows={1} />
        ) : (
          <TemplateTable rows={base} onCreate={(t) => setCreateFrom(t.name)} />
        )}
      </Card>
    </>
  );
}
