import { useEffect, useMemo, useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Sandbox } from "../api.ts";
import { useSandboxActions } from "../actions.ts";
import { navigate } from "../router.ts";
import { Card, ErrorBox, Labels, Link, Skeleton, Status, age, timeLeft } from "../ui.tsx";

export function SandboxList() {
  const list = useQuery({ queryKey: ["sandboxes"], queryFn: api.sandboxes, refetchInterval: 2000 });
  const [filter, setFilter] = useState("");
  const [status, setStatus] = useState("all");
  const [creating, setCreating] = useState(false);
  const rows = useMemo(
    () =>
      (list.data ?? []).filter(
        (s) =>
          (status === "all" || s.status === status) &&
          (filter === "" ||
            s.sandbox_id.includes(filter) ||
            s.template.includes(filter) ||
            Object.entries(s.metadata).some(([k, v]) => `${k}=${v}`.includes(filter))),
      ),
    [list.data, filter, status],
  );
  return (
    <>
      <Card
        title="Sandboxes"
        actions={
          <button
            className="primary"
            onClick={() => setCreating(!creating)}
            aria-expanded={creating}
          >
            New sandbox
          </button>
        }
      >
        {creating && <CreateSandbox onDone={() => setCreating(false)} />}
        <div className="row filters">
          <input
            aria-label="filter"
            placeholder="Filter by id, template or label"
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
          />
          <select aria-label="status" value={status} onChange={(e) => setStatus(e.target.value)}>
            {["all", "running", "paused", "pending", "unknown", "error"].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
          <span className="muted small">{list.isFetching ? "updating…" : "live"}</span>
        </div>
        <ErrorBox error={list.error} />
        {list.isPending ? <Skeleton rows={3} /> : <SandboxTable rows={rows} />}
      </Card>
    </>
  );
}

/** The time now, once a second: countdowns move between the list's polls. */
function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

function SandboxTable({ rows }: { rows: Sandbox[] }) {
  const a = useSandboxActions();
  const now = useNow();
  const [error, setError] = useState<unknown>(null);
  const act = (fn: () => Promise<unknown>) => {
    setError(null);
    fn().catch(setError);
  };
  if (rows.length === 0)
    return <p className="muted">No sandboxes. Create one with “New sandbox”.</p>;
  return (
    <>
      <ErrorBox error={error} />
      <div className="table-wrap">
        <table className="sandboxes">
          <thead>
            <tr>
              <th>Sandbox</th>
              <th>Template</th>
              <th>Status</th>
              <th className="hide-sm">Resources</th>
              <th className="hide-sm">Age</th>
              <th>Time left</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.sandbox_id} data-sandbox={s.sandbox_id}>
                <td>
                  <Link href={`/dashboard/sandboxes/${s.sandbox_id}`}>
                    <code>{s.sandbox_id}</code>
                  </Link>
                  <Labels metadata={s.metadata} />
                </td>
                <td>{s.template}</td>
                <td>
                  <Status status={s.status} />
                </td>
                <td className="hide-sm">
                  {s.vcpus} vCPU · {s.memory_mb} MiB · {Math.round(s.disk_size_mb / 1024)} GiB
                </td>
                <td className="hide-sm">{age(s.created_at)}</td>
                <td
                  className="time-left"
                  data-time-left
                  title={
                    s.end_at
                      ? `ends ${new Date(s.end_at).toLocaleString()}`
                      : `paused after ${s.timeout_sec} s without use`
                  }
                >
                  {timeLeft(s, now)}
                </td>
                <td className="row end">
                  {s.status === "running" && (
                    <>
                      <button
                        onClick={() => act(() => a.ping.mutateAsync(s.sandbox_id))}
                        title="Reset the idle timer"
                      >
                        Extend
                      </button>
                      <button onClick={() => act(() => a.pause.mutateAsync(s.sandbox_id))}>
                        Pause
                      </button>
                    </>
                  )}
                  {s.status === "paused" && (
                    <button onClick={() => act(() => a.resume.mutateAsync(s.sandbox_id))}>
                      Resume
                    </button>
                  )}
                  <button
                    className="danger"
                    onClick={() => {
                      if (confirm(`Destroy ${s.sandbox_id}?`))
                        act(() => a.destroy.mutateAsync(s.sandbox_id));
                    }}
                  >
                    Destroy
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

export function CreateSandbox({ onDone, template }: { onDone: () => void; template?: string }) {
  const qc = useQueryClient();
  const templates = useQuery({ queryKey: ["templates"], queryFn: api.templates });
  const [form, setForm] = useState({
    template: template ?? "minimal",
    vcpus: 1,
    memory_mb: 512,
    disk_size_mb: 20480,
    timeout_sec: 300,
    env: "",
  });
  const [labels, setLabels] = useState<Array<{ key: string; value: string }>>([]);
  const create = useMutation({
    mutationFn: () => {
      const env_vars: Record<string, string> = {};
      for (const line of form.env.split("\n")) {
        const i = line.indexOf("=");
        if (i > 0) env_vars[line.slice(0, i).trim()] = line.slice(i + 1);
      }
      const metadata: Record<string, string> = {};
      for (const { key, value } of labels) if (key.trim()) metadata[key.trim()] = value;
      return api.createSandbox({
        template: form.template,
        vcpus: form.vcpus,
        memory_mb: form.memory_mb,
        disk_size_mb: form.disk_size_mb,
        timeout_sec: form.timeout_sec,
        ...(Object.keys(env_vars).length ? { env_vars } : {}),
        ...(Object.keys(metadata).length ? { metadata } : {}),
      });
    },
    onSuccess: (sb) => {
      void qc.invalidateQueries({ queryKey: ["sandboxes"] });
      onDone();
      navigate(`/dashboard/sandboxes/${sb.sandbox_id}`);
    },
  });
  const num = (k: "vcpus" | "memory_mb" | "disk_size_mb" | "timeout_sec") => ({
    type: "number",
    name: k,
    value: form[k],
    onChange: (e: { target: { value: string } }) =>
      setForm({ ...form, [k]: Number(e.target.value) }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <form className="create grid" onSubmit={submit} aria-label="create sandbox">
      <label>
        Template
        <select
          name="template"
          value={form.template}
          onChange={(e) => setForm({ ...form, template: e.target.value })}
        >
          {(templates.data ?? [{ name: form.template, type: "base" as const }]).map((t) => (
            <option key={t.name} value={t.name}>
              {t.name} ({t.type})
            </option>
          ))}
        </select>
      </label>
      <label>
        vCPUs
        <input {...num("vcpus")} min={1} max={32} />
      </label>
      <label>
        Memory (MiB)
        <input {...num("memory_mb")} min={128} step={128} />
      </label>
      <label>
        Disk (MiB)
        <input {...num("disk_size_mb")} min={512} step={512} />
      </label>
      <label>
        Idle timeout (s)
        <input {...num("timeout_sec")} min={1} max={86400} />
      </label>
      <label className="wide">
        Environment (NAME=value per line)
        <textarea
          name="env"
          rows={2}
          value={form.env}
          onChange={(e) => setForm({ ...form, env: e.target.value })}
        />
      </label>
      <fieldset className="wide labels-edit">
        <legend>Metadata</legend>
        {labels.map((l, i) => (
          <div className="row" key={i}>
            <input
              aria-label={`metadata key ${i + 1}`}
              placeholder="key"
              value={l.key}
              onChange={(e) =>
                setLabels(labels.map((x, j) => (j === i ? { ...x, key: e.target.value } : x)))
              }
            />
            <input
              aria-label={`metadata value ${i + 1}`}
              placeholder="value"
              value={l.value}
              onChange={(e) =>
                setLabels(labels.map((x, j) => (j === i ? { ...x, value: e.target.value } : x)))
              }
            />
            <button
              type="button"
              aria-label={`remove metadata ${i + 1}`}
              onClick={() => setLabels(labels.filter((_, j) => j !== i))}
            >
              ×
            </button>
          </div>
        ))}
        <button type="button" onClick={() => setLabels([...labels, { key: "", value: "" }])}>
          Add metadata
        </button>
      </fieldset>
      <div className="wide row">
        <button className="primary" type="submit" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create"}
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      <div className="wide">
        <ErrorBox error={create.error ?? templates.error} />
      </div>
    </form>
  );
}
