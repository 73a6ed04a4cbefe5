/**
 * The agent's end of envd's control channel (packages/envd/src/control.ts):
 * one connection per guest incarnation, upgraded from HTTP, carrying /init
 * as a line of JSON each way. A guest's envd that predates it (a snapshot
 * template or a paused sandbox saved before) answers the upgrade with a
 * plain response: the channel is then unsupported and /init goes over HTTP.
 */
import { request } from "node:http";
import type { Socket } from "node:net";
import { CONTROL_PATH, CONTROL_PROTOCOL } from "@wrenn/shared/envd-control.ts";
import { messageOf } from "@wrenn/shared/errors.ts";

/** envd's answer to a control request that it refused (as POST /init would have). */
export class ControlRefusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

interface Waiter {
  resolve: (line: string) => void;
  reject: (err: Error) => void;
}

export class ControlChannel {
  readonly #host: string;
  readonly #port: number;
  #socket: Promise<Socket> | null = null;
  #waiter: Waiter | null = null;
  #pending: Buffer = Buffer.alloc(0);
  /** envd answered the upgrade with a plain response: it has no control channel. */
  #unsupported = false;
  /** open() was called: /init goes this way (connecting again if envd closed it). */
  #wanted = false;
  #connected = false;

  /** Whether /init should take the channel: opened, and envd has one. */
  get usable(): boolean {
    return this.#wanted && !this.#unsupported;
  }

  /** Upgraded and not closed since. */
  get connected(): boolean {
    return this.#connected;
  }

  constructor(address: string) {
    const at = address.lastIndexOf(":");
    this.#host = address.slice(0, at);
    this.#port = Number(address.slice(at + 1));
  }

  /**
   * Sends /init's body with `token` and waits for envd's answer. Throws
   * ControlRefusal when envd refused it; any other error means the channel
   * failed (not connected, unsupported, cut, aborted) and the caller may
   * send the same over HTTP.
   */
  async init(token: string | undefined, body: object, signal: AbortSignal): Promise<void> {
    if (this.#waiter !== null) throw new Error("a control request is already under way");
    const socket = await this.#connect(signal);
    const line = await new Promise<string>((resolve, reject) => {
      const onAbort = () => fail(new Error(`control request aborted: ${messageOf(signal.reason)}`));
      const fail = (err: Error) => {
        signal.removeEventListener("abort", onAbort);
        this.#waiter = null;
        // What the guest made of a request cut short is unknown: a fresh connection next time.
        this.close();
        reject(err);
      };
      this.#waiter = {
        resolve: (l) => {
          signal.removeEventListener("abort", onAbort);
          this.#waiter = null;
          resolve(l);
        },
        reject: fail,
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      socket.write(`${JSON.stringify({ token, init: body })}\n`);
    });
    let answer: { ok?: unknown; status?: unknown; message?: unknown };
    try {
      answer = JSON.parse(line) as typeof answer;
    } catch {
      this.close();
      throw new Error(`envd's control answer is not JSON: ${line.slice(0, 200)}`);
    }
    if (answer.ok === true) return;
    throw new ControlRefusal(
      typeof answer.status === "number" ? answer.status : 500,
      typeof answer.message === "string" ? answer.message : line.slice(0, 200),
    );
  }

  /**
   * Connects now, so that the inits that follow take the channel. Opening
   * it is an HTTP request of its own: worth it for a guest that gets more
   * than one /init (a warm pool entry: its warm-up's, then its claim's),
   * not for a resume's single one.
   */
  async open(signal: AbortSignal): Promise<void> {
    this.#wanted = true;
    await this.#connect(signal);
  }

  close(): void {
    const socket = this.#socket;
    this.#socket = null;
    this.#pending = Buffer.alloc(0);
    void socket?.then((s) => s.destroy()).catch(() => undefined);
  }

  #connect(signal: AbortSignal): Promise<Socket> {
    this.#socket ??= new Promise<Socket>((resolve, reject) => {
      const req = request({
        host: this.#host,
        port: this.#port,
        path: CONTROL_PATH,
        headers: { connection: "Upgrade", upgrade: CONTROL_PROTOCOL },
        // Its own connection: an upgraded socket leaves HTTP for good.
        agent: false,
        signal,
      });
      req.once("upgrade", (_res, socket: Socket, head: Buffer) => {
        socket.setNoDelay(true);
        this.#connected = true;
        this.#pending = head;
        socket.on("data", (chunk: Buffer) => this.#receive(chunk));
        const end = (err?: Error) => {
          this.#connected = false;
          this.#waiter?.reject(err ?? new Error("envd closed the control channel"));
          if (this.#socket === attempt) this.#socket = null;
        };
        socket.once("error", end);
        socket.once("close", () => end());
        resolve(socket);
      });
      req.once("response", (res) => {
        res.resume();
        this.#unsupported = true;
        reject(new Error(`envd answered the control upgrade with ${res.statusCode}`));
      });
      req.once("error", reject);
      req.end();
    });
    const attempt = this.#socket;
    attempt.catch(() => {
      if (this.#socket === attempt) this.#socket = null;
    });
    return attempt;
  }

  #receive(chunk: Buffer): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const nl = this.#pending.indexOf(10);
    if (nl < 0) return;
    const line = this.#pending.toString("utf8", 0, nl);
    this.#pending = this.#pending.subarray(nl + 1);
    this.#waiter?.resolve(line);
  }
}
