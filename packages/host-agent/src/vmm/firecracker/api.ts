import { request } from "node:http";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { WrennError } from "@wrenn/shared/errors.ts";

export type ApiMethod = "GET" | "PUT" | "PATCH";

/** One request as sent, for tracing and tests. */
export interface ApiRequest {
  method: ApiMethod;
  path: string;
  body?: unknown;
}

/** A failed call: Firecracker's `fault_message`, or the transport error. */
export class FirecrackerApiError extends WrennError {
  readonly status: number | null;
  readonly faultMessage: string;

  constructor(req: ApiRequest, status: number | null, faultMessage: string, cause?: unknown) {
    super(
      status !== null && status < 500 ? "failed_precondition" : "internal",
      `firecracker ${req.method} ${req.path}: ${faultMessage}`,
      { cause },
    );
    this.name = "FirecrackerApiError";
    this.status = status;
    this.faultMessage = faultMessage;
  }
}

/**
 * Firecracker's HTTP API on its Unix socket, one connection per request
 * (the API server handles one request at a time and calls are rare).
 */
export class FirecrackerApi {
  readonly socketPath: string;
  readonly #trace: ((req: ApiRequest) => void) | undefined;

  constructor(socketPath: string, trace?: (req: ApiRequest) => void) {
    this.socketPath = socketPath;
    this.#trace = trace;
  }

  /** Waits until something accepts connections on the socket. */
  static async waitReady(
    socketPath: string,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    const deadline = performance.now() + opts.timeoutMs;
    for (;;) {
      opts.signal?.throwIfAborted();
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(socketPath);
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (ok) return;
      if (performance.now() > deadline) {
        throw new WrennError(
          "unavailable",
          `firecracker API socket ${socketPath} did not come up in ${opts.timeoutMs} ms`,
        );
      }
      await sleep(5);
    }
  }

  async call<T = unknown>(method: ApiMethod, path: string, body?: unknown): Promise<T> {
    const req: ApiRequest = body === undefined ? { method, path } : { method, path, body };
    this.#trace?.(req);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const r = request(
          {
            socketPath: this.socketPath,
            method,
            path,
            agent: false,
            headers: {
              Accept: "application/json",
              ...(payload === undefined
                ? {}
                : {
                    "Content-Type": "application/json",
                    "Content-Length": Buffer.byteLength(payload),
                  }),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                text: Buffer.concat(chunks).toString("utf8"),
              }),
            );
            res.on("error", reject);
          },
        );
        r.on("error", (err) => reject(new FirecrackerApiError(req, null, err.message, err)));
        r.end(payload);
      },
    );
    if (status >= 200 && status < 300) {
      return (text ? JSON.parse(text) : undefined) as T;
    }
    let fault = text;
    try {
      fault = (JSON.parse(text) as { fault_message?: string }).fault_message ?? text;
    } catch {
      // Not JSON: keep the raw body.
    }
    throw new FirecrackerApiError(req, status, fault || `HTTP ${status}`);
  }
}
