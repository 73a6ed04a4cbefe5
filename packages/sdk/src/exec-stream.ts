import WebSocket from "ws";
import { errorFromBody, errorOf, unreachable, type ErrorCode } from "./errors.ts";
import type { components } from "./gen/openapi.d.ts";

export type ExecRequest = components["schemas"]["Exec"];

export type ExecEvent =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: Uint8Array }
  | { type: "end"; exitCode: number; error: string };

type WireEvent =
  | { type: "start"; pid: number }
  | { type: "stdout" | "stderr"; data: string }
  | { type: "end"; exit_code: number; error: string }
  | { type: "error"; code: ErrorCode; status?: number; message: string };

/**
 * Runs a command over `/v1/sandboxes/{id}/exec/stream` and yields its events
 * as they arrive. Breaking out of the loop (or aborting `signal`) closes the
 * socket, which cancels the command in the sandbox.
 */
export async function* execEvents(
  apiUrl: string,
  apiKey: string,
  sandboxId: string,
  request: ExecRequest,
  signal?: AbortSignal,
): AsyncGenerator<ExecEvent, void, undefined> {
  const url = `${apiUrl.replace(/^http/, "ws")}/v1/sandboxes/${encodeURIComponent(sandboxId)}/exec/stream`;
  const ws = new WebSocket(url, { headers: { "x-api-key": apiKey }, maxPayload: 64 << 20 });
  const queue: Array<WireEvent> = [];
  let failure: unknown;
  let closed = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };

  // The server refuses a handshake (bad key, unknown or paused sandbox) with the API's JSON error.
  ws.on("unexpected-response", (_req, res) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => {
      let body: unknown = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        // not the API's shape: the status alone decides
      }
      failure ??= errorFromBody(res.statusCode ?? 502, body);
      closed = true;
      ws.terminate();
      notify();
    });
  });
  ws.on("open", () => ws.send(JSON.stringify(request)));
  ws.on("message", (data) => {
    queue.push(JSON.parse(String(data)) as WireEvent);
    notify();
  });
  ws.on("error", (err) => {
    failure ??= unreachable(apiUrl, err);
    closed = true;
    notify();
  });
  ws.on("close", () => {
    closed = true;
    notify();
  });
  const onAbort = () => ws.terminate();
  signal?.addEventListener("abort", onAbort, { once: true });

  let ended = false;
  try {
    for (;;) {
      const ev = queue.shift();
      if (ev === undefined) {
        if (closed) break;
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      if (ev.type === "error") throw errorOf(ev.code, ev.message, ev.status ?? 0);
      if (ev.type === "end") {
        ended = true;
        yield { type: "end", exitCode: ev.exit_code, error: ev.error };
      } else if (ev.type === "start") yield ev;
      else yield { type: ev.type, data: Buffer.from(ev.data, "base64") };
    }
    if (signal?.aborted) throw signal.reason;
    if (failure) throw failure;
    if (!ended) throw errorOf("unavailable", "the exec stream closed before the command ended", 0);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (ws.readyState !== ws.CLOSED) ws.terminate();
  }
}
