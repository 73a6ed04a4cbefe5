import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api.ts";
import { useSandboxActions } from "../actions.ts";
import { navigate } from "../router.ts";
import { Card, ErrorBox, Labels, Link, Skeleton, Status, age, duration, timeLeft } from "../ui.tsx";
import { Terminal } from "../sandbox/terminal.tsx";
import { Files } from "../sandbox/files.tsx";
import { ExecPanel } from "../sandbox/exec.tsx";
import { Metrics } from "../sandbox/metrics.tsx";
import { GuestLog } from "../sandbox/log.tsx";

const TABS = ["Terminal", "Files", "Exec", "Metrics", "Log"] as const;
type Tab = (typeof TABS)[number];

export default function SandboxPage({ id }: { id: string }) {
  const sb = useQuery({
    queryKey: ["sandbox", id],
    queryFn: () => api.sandbox(id),
    refetchInterval: 2000,
  });
  const a = useSandboxActions();
  const [tab, setTab] = useState<Tab>("Terminal");
  const [snapName, setSnapName] = useState("");
  const [error, setError] = useState<unknown>(null);
  const act = (fn: () => Promise<unknown>) => {
    setError(null);
    fn().catch(setError);
  };
  const s = sb.data;
  const running = s?.status === "running";
  return (
    <>
      <Card
        title={
          <>
            <Link href="/dashboard/sandboxes" className="muted">
              Sandboxes
            </Link>{" "}
            / <code>{id}</code> {s && <Status status={s.status} />}
          </>
        }
        actions={
          s && (
            <>
              {running && (
                <button
                  onClick={() => act(() => a.ping.mutateAsync(id))}
                  title="Reset the idle timer"
                >
                  Extend
                </button>
              )}
              {running && (
                <button
                  onClick={() => act(() => a.pause.mutateAsync(id))}
                  disabled={a.pause.isPending}
                >
                  {a.pause.isPending ? "Pausing…" : "Pause"}
                </button>
              )}
              {s.status === "paused" && (
                <button
                  onClick={() => act(() => a.resume.mutateAsync(id))}
                  disabled={a.resume.isPending}
                >
                  {a.resume.isPending ? "Resuming…" : "Resume"}
                </button>
              )}
              <button
                className="danger"
                onClick={() => {
                  if (!confirm(`Destroy ${id}?`)) return;
                  act(async () => {
                    await a.destroy.mutateAsync(id);
                    navigate("/dashboard/sandboxes");
                  });
                }}
              >
                Destroy
              </button>
            </>
          )
        }
      >
        <ErrorBox error={sb.error ?? error} />
        {!s ? (
          <Skeleton rows={1} />
        ) : (
          <div className="facts">
            <span>
              template <b>{s.template}</b>
            </span>
            <span>{s.vcpus} vCPU</span>
            <span>{s.memory_mb} MiB</span>
            <span>{Math.round(s.disk_size_mb / 1024)} GiB disk</span>
            <span>age {age(s.created_at)}</span>
            <span>idle timeout {duration(s.timeout_sec)}</span>
            {s.end_at && running && <span>time left {timeLeft(s)}</span>}
            <Labels metadata={s.metadata} />
            {s.error && <span className="error-text">{s.error}</span>}
          </div>
        )}
        {s && (running || s.status === "paused") && (
          <form
            className="row snapshot"
            aria-label="snapshot"
            onSubmit={(e) => {
              e.preventDefault();
              act(async () => {
                await a.snapshot.mutateAsync({ id, name: snapName || undefined });
                setSnapName("");
              });
            }}
          >
            <input
              aria-label="template name"
              placeholder="template name (optional)"
              value={snapName}
              onChange={(e) => setSnapName(e.target.value)}
            />
            <button type="submit" disabled={a.snapshot.isPending}>
              {a.snapshot.isPending ? "Snapshotting…" : "Snapshot to template"}
            </button>
            {a.snapshot.data && (
              <span className="muted small">
                template <b>{a.snapshot.data.name}</b> created (the sandbox is paused)
              </span>
            )}
          </form>
        )}
      </Card>
      <div className="tabs" role="tablist">
        {TABS.map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} onClick={() => setTab(t)}>
            {t}
          </button>
        ))}
      </div>
      {/* The terminal stays mounted across tabs so its shell and scrollback survive. */}
      <div hidden={tab !== "Terminal"}>
        <Card>
          <Terminal id={id} running={running} />
        </Card>
      </div>
      {tab === "Files" && <Files id={id} running={running} />}
      {tab === "Exec" && <ExecPanel id={id} running={running} />}
      {tab === "Metrics" && <Metrics id={id} running={running} />}
      {tab === "Log" && <GuestLog id={id} running={running} />}
    </>
  );
}
