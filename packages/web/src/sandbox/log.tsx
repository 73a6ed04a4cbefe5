import { useQuery } from "@tanstack/react-query";
import { api } from "../api.ts";
import { Card, ErrorBox, Skeleton } from "../ui.tsx";

/**
 * The guest's kernel log. The minimal image runs no syslog (its init execs
 * envd directly, to boot fast), so the kernel's ring buffer is the log there is.
 */
export function GuestLog({ id, running }: { id: string; running: boolean }) {
  const log = useQuery({
    queryKey: ["guest-log", id],
    queryFn: async () => {
      const r = await api.exec(id, "dmesg", ["--ctime"], 30, "root");
      const text = r.encoding === "base64" ? atob(r.stdout) : r.stdout;
      return r.exit_code === 0
        ? text
        : `${text}${r.encoding === "base64" ? atob(r.stderr) : r.stderr}`;
    },
    enabled: running,
  });
  return (
    <Card
      title="Guest log (kernel)"
      actions={
        <button onClick={() => void log.refetch()} disabled={!running || log.isFetching}>
          Refresh
        </button>
      }
    >
      {!running && <p className="muted">The sandbox is not running.</p>}
      <ErrorBox error={log.error} />
      {running && log.isPending ? (
        <Skeleton rows={4} />
      ) : (
        <pre data-testid="guest-log">{log.data}</pre>
      )}
    </Card>
  );
}
