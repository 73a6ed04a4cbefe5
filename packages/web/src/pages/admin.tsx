import { useMutation, useQuery } from "@tanstack/react-query";
import { api, type Me } from "../api.ts";
import { Card, ErrorBox, Secret, Skeleton, age } from "../ui.tsx";
import { TemplateTable } from "./templates.tsx";

export default function Admin({ me }: { me: Me | undefined }) {
  const admin = me?.is_admin === true;
  const templates = useQuery({
    queryKey: ["admin-templates"],
    queryFn: api.adminTemplates,
    enabled: admin,
  });
  const hosts = useQuery({
    queryKey: ["hosts"],
    queryFn: api.hosts,
    enabled: admin,
    refetchInterval: 5000,
  });
  const token = useMutation({ mutationFn: api.hostToken });
  if (me && !admin) {
    return (
      <Card title="Admin">
        <p role="alert">This page is for platform admins only.</p>
      </Card>
    );
  }
  return (
    <>
      <Card title="Templates of every team">
        <ErrorBox error={templates.error} />
        {templates.isPending ? (
          <Skeleton rows={3} />
        ) : (
          <TemplateTable rows={templates.data ?? []} showTeam />
        )}
      </Card>
      <Card
        title="Hosts"
        actions={
          <button onClick={() => token.mutate()} disabled={token.isPending}>
            New host token
          </button>
        }
      >
        <ErrorBox error={hosts.error ?? token.error} />
        {token.data && (
          <div className="secret" role="status">
            <p>
              A host registers once with this token (<code>POST /v1/hosts/register</code> with its
              token and address), until {new Date(token.data.expires_at).toLocaleString()}:
            </p>
            <Secret text={token.data.token} testId="host-token" />
          </div>
        )}
        {hosts.isPending ? (
          <Skeleton rows={2} />
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Address</th>
                  <th>Status</th>
                  <th>Capacity</th>
                  <th>In use</th>
                  <th className="hide-sm">VMM / storage</th>
                  <th className="hide-sm">Last seen</th>
                </tr>
              </thead>
              <tbody>
                {(hosts.data ?? []).map((h) => (
                  <tr key={h.id}>
                    <td>
                      <code>{h.address}</code>
                    </td>
                    <td>
                      <span
                        className={`status status-${h.status === "ready" ? "running" : "error"}`}
                      >
                        {h.status}
                      </span>
                    </td>
                    <td>
                      {h.total_vcpus} vCPU · {Math.round(h.total_memory_mb / 1024)} GiB ·{" "}
                      {Math.round(h.free_disk_mb / 1024)} GiB free
                    </td>
                    <td data-testid="host-usage">
                      {h.usage
                        ? `${h.usage.cpu_busy_cores.toFixed(1)} cores busy · ${(h.usage.memory_used_mb / 1024).toFixed(1)} GiB used`
                        : "not measured"}
                      {` · ${h.warm_sandboxes} warm`}
                    </td>
                    <td className="hide-sm">
                      {h.vmm} / {h.storage}
                    </td>
                    <td className="hide-sm">
                      {h.last_seen_at ? `${age(h.last_seen_at)} ago` : "never"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </>
  );
}
