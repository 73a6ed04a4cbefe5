import { useEffect, useRef, useState } from "react";
import { Terminal as XTerm } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { terminalUrl } from "../api.ts";

type State = "connecting" | "connected" | "waiting" | "exited";

/**
 * A live terminal on a PTY in the guest. The shell's pid is kept in
 * sessionStorage: a reload, a dropped socket or a pause and resume reattach to
 * the same shell instead of starting another, and the screen comes back: the
 * host agent replays the shell's last 64 KiB of output on a reattach.
 */
export function Terminal({ id, running }: { id: string; running: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const term = useRef<XTerm | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const ws = useRef<WebSocket | null>(null);
  const [state, setState] = useState<State>("connecting");
  const [message, setMessage] = useState("");
  const [generation, setGeneration] = useState(0);
  const pidKey = `wrenn.pty.${id}`;

  useEffect(() => {
    if (!box.current) return;
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const t = new XTerm({
      cursorBlink: true,
      fontSize: 14,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      theme: dark
        ? { background: "#0b1020" }
        : { background: "#ffffff", foreground: "#111827", cursor: "#111827" },
      scrollback: 5000,
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.open(box.current);
    f.fit();
    term.current = t;
    fit.current = f;
    const enc = new TextEncoder();
    const input = t.onData((d) => {
      if (ws.current?.readyState === WebSocket.OPEN) ws.current.send(enc.encode(d));
    });
    const resize = t.onResize(({ cols, rows }) => {
      if (ws.current?.readyState === WebSocket.OPEN)
        ws.current.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    const ro = new ResizeObserver(() => {
      if (box.current?.offsetParent) f.fit();
    });
    ro.observe(box.current);
    return () => {
      ro.disconnect();
      input.dispose();
      resize.dispose();
      t.dispose();
      term.current = null;
    };
  }, []);

  useEffect(() => {
    const t = term.current;
    if (!t) return;
    if (!running) {
      setState("waiting");
      return;
    }
    let closed = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let attempts = 0;
    const connect = () => {
      const pid = Number(sessionStorage.getItem(pidKey) ?? 0);
      setState("connecting");
      const socket = new WebSocket(terminalUrl(id, { pid, cols: t.cols, rows: t.rows }));
      socket.binaryType = "arraybuffer";
      ws.current = socket;
      socket.onmessage = (ev) => {
        if (typeof ev.data !== "string") {
          t.write(new Uint8Array(ev.data as ArrayBuffer));
          return;
        }
        const msg = JSON.parse(ev.data) as {
          type: string;
          pid?: number;
          exit_code?: number;
          code?: string;
          message?: string;
        };
        if (msg.type === "start" && msg.pid) {
          // A reattach replays the shell's recent output (the host agent keeps it):
          // start from a clean screen so it is shown once.
          if (pid !== 0) t.reset();
          attempts = 0;
          sessionStorage.setItem(pidKey, String(msg.pid));
          setState("connected");
          setMessage("");
          t.focus();
        } else if (msg.type === "end") {
          sessionStorage.removeItem(pidKey);
          setState("exited");
          setMessage(`the shell exited (${msg.exit_code ?? "?"})`);
          closed = true;
        } else if (msg.type === "error") {
          // The shell we knew is gone (the sandbox was restarted): start a new one.
          if (msg.code === "not_found" && pid !== 0) sessionStorage.removeItem(pidKey);
          setMessage(msg.message ?? msg.code ?? "terminal error");
        }
      };
      socket.onclose = () => {
        if (ws.current === socket) ws.current = null;
        if (closed) return;
        setState("connecting");
        attempts++;
        retry = setTimeout(connect, Math.min(5000, 300 * attempts));
      };
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(retry);
      ws.current?.close();
      ws.current = null;
    };
  }, [id, running, generation, pidKey]);

  return (
    <div className="terminal">
      <div className="row small">
        <span className={`dot dot-${state}`} aria-hidden="true" />
        <span data-terminal-state={state}>
          {state === "waiting" ? "the sandbox is not running" : state}
        </span>
        {message && <span className="muted">{message}</span>}
        <div className="spacer" />
        <button
          onClick={() => {
            sessionStorage.removeItem(pidKey);
            term.current?.reset();
            setGeneration(generation + 1);
          }}
          disabled={!running}
        >
          New shell
        </button>
      </div>
      <div ref={box} className="xterm-box" data-testid="terminal" />
    </div>
  );
}
