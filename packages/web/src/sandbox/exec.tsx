import { useState, type KeyboardEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, type ExecResult } from "../api.ts";
import { Card, ErrorBox } from "../ui.tsx";

const MAX_HISTORY = 50;

function decode(r: ExecResult, s: string): string {
  return r.encoding === "base64" ? atob(s) : s;
}

/** Runs one shell command to completion; the history is kept per sandbox in localStorage. */
export function ExecPanel({ id, running }: { id: string; running: boolean }) {
  const key = `wrenn.exec.${id}`;
  const [history, setHistory] = useState<string[]>(
    () => JSON.parse(localStorage.getItem(key) ?? "[]") as string[],
  );
  const [cmd, setCmd] = useState("");
  const [cursor, setCursor] = useState(-1);
  const run = useMutation({
    mutationFn: (command: string) => api.exec(id, "/bin/sh", ["-c", command]),
  });
  const submit = (command: string) => {
    if (!command.trim()) return;
    const next = [command, ...history.filter((h) => h !== command)].slice(0, MAX_HISTORY);
    setHistory(next);
    localStorage.setItem(key, JSON.stringify(next));
    setCursor(-1);
    run.mutate(command);
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "ArrowUp" && cursor + 1 < history.length) {
      e.preventDefault();
      setCursor(cursor + 1);
      setCmd(history[cursor + 1] ?? "");
    } else if (e.key === "ArrowDown" && cursor >= 0) {
      e.preventDefault();
      setCursor(cursor - 1);
      setCmd(cursor - 1 >= 0 ? (history[cursor - 1] ?? "") : "");
    }
  };
  const r = run.data;
  return (
    <Card title="Run a command">
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          submit(cmd);
        }}
      >
        <input
          aria-label="command"
          className="grow mono"
          placeholder="uname -a"
          value={cmd}
          onChange={(e) => setCmd(e.target.value)}
          onKeyDown={onKey}
          disabled={!running}
        />
        <button className="primary" type="submit" disabled={!running || run.isPending}>
          {run.isPending ? "Running…" : "Run"}
        </button>
      </form>
      <ErrorBox error={run.error} />
      {r && (
        <div className="exec-out">
          <div className="small muted">
            exit {r.exit_code} · {r.duration_ms} ms
            {(r.stdout_truncated || r.stderr_truncated) &&
              ` · output cut at 16 MiB (${[r.stdout_truncated && "stdout", r.stderr_truncated && "stderr"].filter(Boolean).join(", ")})`}
          </div>
          <pre data-testid="exec-stdout">{decode(r, r.stdout)}</pre>
          {r.stderr && <pre className="stderr">{decode(r, r.stderr)}</pre>}
        </div>
      )}
      {history.length > 0 && (
        <>
          <h3>History</h3>
          <ul className="history">
            {history.map((h) => (
              <li key={h}>
                <button
                  className="link mono"
                  onClick={() => setCmd(h)}
                  onDoubleClick={() => submit(h)}
                >
                  {h}
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </Card>
  );
}
