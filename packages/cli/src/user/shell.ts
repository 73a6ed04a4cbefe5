import WebSocket from "ws";
import { errorFromBody, errorOf, type ErrorCode } from "../../../sdk/src/errors.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { connect } from "./connect.ts";

type ServerEvent =
  | { type: "start"; pid: number }
  | { type: "end"; exit_code: number; error?: string }
  | { type: "error"; code: ErrorCode; status?: number; message: string };

/**
 * `wrenn sandbox shell ID`: a login shell in the sandbox over
 * /v1/sandboxes/{id}/terminal. The local terminal goes raw so keys (Ctrl-C
 * too) reach the guest; its size follows the window. Resolves with the
 * shell's exit code.
 */
export async function shell(id: string, o: { user?: string }): Promise<number> {
  const wrenn = await connect();
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  const q = new URLSearchParams({ cols: String(size().cols), rows: String(size().rows) });
  if (o.user) q.set("user", o.user);
  const url = `${wrenn.apiUrl.replace(/^http/, "ws")}/v1/sandboxes/${encodeURIComponent(id)}/terminal?${q}`;
  const ws = new WebSocket(url, { headers: wrenn.headers });

  return new Promise<number>((resolve, reject) => {
    let raw = false;
    let exitCode: number | undefined;
    let failure: unknown;
    const onResize = () => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "resize", ...size() }));
    };
    const onInput = (chunk: Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(chunk, { binary: true });
    };
    const restore = () => {
      stdout.off("resize", onResize);
      stdin.off("data", onInput);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    };
    ws.on("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let body: unknown = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          // the status decides
        }
        failure =
          res.statusCode === 404 && !(body as { error?: unknown })?.error
            ? new WrennError(
                "failed_precondition",
                "this control plane has no terminal endpoint yet",
              )
            : errorFromBody(res.statusCode ?? 502, body);
        ws.terminate();
      });
    });
    ws.on("open", () => {
      if (stdin.isTTY) {
        stdin.setRawMode(true);
        raw = true;
      }
      stdin.on("data", onInput);
      stdin.resume();
      stdout.on("resize", onResize);
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) {
        stdout.write(data as Buffer);
        return;
      }
      const ev = JSON.parse(String(data)) as ServerEvent;
      if (ev.type === "end") exitCode = ev.exit_code;
      else if (ev.type === "error") failure = errorOf(ev.code, ev.message, ev.status ?? 0);
    });
    ws.on("error", (err) => {
      failure ??= err;
    });
    ws.on("close", () => {
      restore();
      if (exitCode !== undefined) resolve(exitCode);
      else
        reject(
          failure ?? new WrennError("unavailable", "the terminal closed before the shell exited"),
        );
    });
  });
}
