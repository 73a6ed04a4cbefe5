import { useEffect, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api.ts";
import { Card, ErrorBox, Skeleton } from "../ui.tsx";

/** The console text kept in the page; older bytes scroll away. */
const KEEP_CHARS = 256 * 1024;
const POLL_MS = 2000;

/**
 * The sandbox's log: its guest console (kernel, init and envd output, kept
 * by the host agent for the VM's current run), followed while the page is
 * open; and the kernel's ring buffer, read with dmesg in the guest (the
 * console is quiet about the kernel: the guest boots with `quiet`).
 */
export function GuestLog({ id, running }: { id: string; running: boolean }) {
  return (
    <>
      <ConsoleLog id={id} running={running} />
      <KernelLog id={id} running={running} />
    </>
  );
}

function ConsoleLog({ id, running }: { id: string; running: boolean }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    if (!running) return;
    let offset: number | undefined;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const read = await api.logs(id, offset);
        if (stopped) return;
        const gap = offset !== undefined && read.offset > offset;
        offset = read.next_offset;
        setError(null);
        setLoaded(true);
        if (read.text || gap)
          setText((t) =>
            `${t}${gap ? "\n… (older output dropped)\n" : ""}${read.text}`.slice(-KEEP_CHARS),
          );
      } catch (err) {
        if (!stopped) setError(err);
      }
      if (!stopped) timer = setTimeout(() => void poll(), POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [id, running]);
  return (
    <Card title="Console (live)">
      {!running && <p className="muted">The sandbox is not running.</p>}
      <ErrorBox error={error} />
      {running && !loaded && !error ? (
        <Skeleton rows={3} />
      ) : (
        running && (
          <pre data-testid="console-log">
            {text || "Nothing written to the console since this VM started."}
          </pre>
        )
      )}
    </Card>
  );
}

function KernelLog({ id, running }: { id: string; running: boolean }) {
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
      title="Kernel log (dmesg)"
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
