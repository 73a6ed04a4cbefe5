import { useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Sandbox } from "../api.ts";
import { Status } from "../ui.tsx";

interface LogLine {
  at: string;
  text: string;
  ok: boolean;
}

/**
 * The seed's lifecycle page, for an operator checking a new host: every step
 * on one screen, each with its time, no navigation.
 */
export default function TestPage() {
  const qc = useQueryClient();
  const sandboxes = useQuery({
    queryKey: ["sandboxes"],
    queryFn: api.sandboxes,
    refetchInterval: 2000,
  });
  const templates = useQuery({
    queryKey: ["templates"],
    queryFn: api.templates,
    refetchInterval: 5000,
  });
  const [template, setTemplate] = useState("minimal");
  const [cmd, setCmd] = useState("uname -a");
  const [snapName, setSnapName] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [log, setLog] = useState<LogLine[]>([]);
  const [output, setOutput] = useState("");

  const step = async (label: string, fn: () => Promise<string | void>) => {
    setBusy(label);
    const t0 = performance.now();
    try {
      const detail = await fn();
      const ms = Math.round(performance.now() - t0);
      setLog((l) => [
        {
          at: new Date().toLocaleTimeString(),
          text: `${label}: ok in ${ms} ms${detail ? ` — ${detail}` : ""}`,
          ok: true,
        },
        ...l,
      ]);
    } catch (err) {
      setLog((l) => [
        {
          at: new Date().toLocaleTimeString(),
          text: `${label}: ${(err as Error).message}`,
          ok: false,
        },
        ...l,
      ]);
    } finally {
      setBusy(null);
      void qc.invalidateQueries({ queryKey: ["sandboxes"] });
      void qc.invalidateQueries({ queryKey: ["templates"] });
    }
  };
  const exec = (s: Sandbox) =>
    step(`exec ${s.sandbox_id}`, async () => {
      const r = await api.exec(s.sandbox_id, "/bin/sh", ["-c", cmd]);
      const out = r.encoding === "base64" ? atob(r.stdout) : r.stdout;
      const err = r.encoding === "base64" ? atob(r.stderr) : r.stderr;
      setOutput(out + err);
      return `exit ${r.exit_code}`;
    });
  const snaps = (templates.data ?? []).filter((t) => t.type === "snapshot");
  return (
    <div className="test-page">
      <h1>Sandbox lifecycle test</h1>
      <section className="card">
        <form
          className="row"
          aria-label="create"
          onSubmit={(e) => {
            e.preventDefault();
            void step(
              `create from ${template}`,
              async () =>
                (
                  await api.createSandbox({
                    template,
                    vcpus: 1,
                    memory_mb: 512,
                    disk_size_mb: 20480,
                    timeout_sec: 600,
                  })
                ).sandbox_id,
            );
          }}
        >
          <select
            aria-label="template"
            value={template}
            onChange={(e) => setTemplate(e.target.value)}
          >
            {(templates.data ?? [{ name: "minimal", type: "base" }]).map((t) => (
              <option key={t.name} value={t.name}>
                {t.name} ({t.type})
              </option>
            ))}
          </select>
          <button className="primary" type="submit" disabled={busy !== null}>
            Create
          </button>
          <input
            aria-label="command"
            className="grow mono"
            value={cmd}
            onChange={(e) => setCmd(e.target.value)}
          />
          <input
            aria-label="snapshot name"
            placeholder="snapshot name (optional)"
            value={snapName}
            onChange={(e) => setSnapName(e.target.value)}
          />
          {busy && <span className="muted small">{busy}…</span>}
        </form>
      </section>
      <section className="card">
        <h2>Sandboxes</h2>
        <table>
          <tbody>
            {(sandboxes.data ?? []).map((s) => (
              <tr key={s.sandbox_id} data-sandbox={s.sandbox_id}>
                <td>
                  <code>{s.sandbox_id}</code>
                </td>
                <td>{s.template}</td>
                <td>
                  <Status status={s.status} />
                </td>
                <td className="row end">
                  <button
                    disabled={busy !== null || s.status !== "running"}
                    onClick={() => void exec(s)}
                  >
                    Exec
                  </button>
                  <button
                    disabled={busy !== null || s.status !== "running"}
                    onClick={() =>
                      void step(`pause ${s.sandbox_id}`, () =>
                        api.pause(s.sandbox_id).then(() => undefined),
                      )
                    }
                  >
                    Pause
                  </button>
                  <button
                    disabled={busy !== null || s.status !== "paused"}
                    onClick={() =>
                      void step(`resume ${s.sandbox_id}`, () =>
                        api.resume(s.sandbox_id).then(() => undefined),
                      )
                    }
                  >
                    Resume
                  </button>
                  <button
                    disabled={busy !== null || (s.status !== "running" && s.status !== "paused")}
                    onClick={() =>
                      void step(
                        `snapshot ${s.sandbox_id}`,
                        async () => (await api.snapshot(s.sandbox_id, snapName || undefined)).name,
                      )
                    }
                  >
                    Snapshot
                  </button>
                  <button
                    className="danger"
                    disabled={busy !== null}
                    onClick={() =>
                      void step(`destroy ${s.sandbox_id}`, () => api.destroy(s.sandbox_id))
                    }
                  >
                    Destroy
                  </button>
                </td>
              </tr>
            ))}
            {sandboxes.data?.length === 0 && (
              <tr>
                <td className="muted">no sandboxes</td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
      <section className="card">
        <h2>Snapshots</h2>
        <table>
          <tbody>
            {snaps.map((t) => (
              <tr key={t.name} data-template={t.name}>
                <td>
                  <b>{t.name}</b>
                </td>
                <td>
                  {t.vcpus} vCPU · {t.memory_mb} MiB
                </td>
                <td className="row end">
                  <button
                    className="danger"
                    disabled={busy !== null}
                    onClick={() =>
                      void step(`delete snapshot ${t.name}`, () => api.deleteTemplate(t.name))
                    }
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
            {snaps.length === 0 && (
              <tr>
                <td className="muted">no snapshots</td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
      <section className="card">
        <h2>Output</h2>
        <pre data-testid="test-output">{output}</pre>
        <h2>Log</h2>
        <ul className="log" data-testid="test-log">
          {log.map((l, i) => (
            <li key={log.length - i} className={l.ok ? "" : "error-text"}>
              {l.at} {l.text}
            </li>
          ))}
        </ul>
      </section>
    </div>
  );
}
