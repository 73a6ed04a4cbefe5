import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { WrennError } from "@wrenn/shared/errors.ts";

/** An asynchronous QMP event (STOP, RESUME, SHUTDOWN, MIGRATION, …). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * A QEMU Machine Protocol client on a Unix socket: reads the greeting,
 * negotiates capabilities, then runs commands matched to replies by id.
 * No npm package for this is maintained, and the protocol is one JSON object
 * per line.
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(event: QmpEvent) => void>();
  #nextId = 1;
  #buffer = "";
  #closedError: Error | null = null;
  /** Set until the greeting line has arrived. */
  #greeting: ((err: Error | null) => void) | null = null;
  /** Resolves when the connection is gone (QEMU exited or closed it). */
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.#closedError ??= new WrennError("unavailable", "QMP connection closed (QEMU exited)");
        this.#greeting?.(this.#closedError);
        for (const p of this.#pending.values()) p.reject(this.#closedError);
        this.#pending.clear();
        resolve();
      });
    });
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err) => {
      this.#closedError = new WrennError("unavailable", `QMP connection failed: ${err.message}`, {
        cause: err,
      });
    });
  }

  /**
   * Connects and negotiates. Retries while the socket does not exist yet
   * (QEMU creates it a few milliseconds after starting) until `timeoutMs`, or
   * until `abort` fires (the process died).
   */
  static async connect(
    path: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<QmpClient> {
    const deadline = performance.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        const socket = await openSocket(path);
        const client = new QmpClient(socket);
        try {
          await client.#handshake(Math.max(1000, deadline - performance.now()));
        } catch (err) {
          client.close();
          throw err;
        }
        return client;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== "ENOENT" && code !== "ECONNREFUSED") || performance.now() > deadline) {
          if (code === "ENOENT" || code === "ECONNREFUSED") {
            throw new WrennError("unavailable", `QMP socket ${path} did not come up`, {
              cause: err,
            });
          }
          throw err;
        }
        await sleep(5);
      }
    }
  }

  async #handshake(timeoutMs: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#greeting = null;
        reject(new WrennError("deadline_exceeded", "no QMP greeting from QEMU"));
      }, timeoutMs);
      this.#greeting = (err) => {
        clearTimeout(timer);
        this.#greeting = null;
        if (err) reject(err);
        else resolve();
      };
    });
    await this.execute("qmp_capabilities");
  }

  #onData(chunk: Buffer): void {
    this.#buffer += chunk.toString("utf8");
    if (this.#greeting) {
      const nl = this.#buffer.indexOf("\n");
      if (nl < 0) return;
      const line = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      this.#greeting(
        line.includes('"QMP"') ? null : new WrennError("internal", `not a QMP greeting: ${line}`),
      );
    }
    let nl: number;
    while ((nl = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#dispatch(line);
    }
  }

  #dispatch(line: string): void {
    let msg: {
      id?: number;
      return?: unknown;
      error?: { class: string; desc: string };
      event?: string;
    };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.event !== undefined) {
      for (const listener of this.#listeners) listener(msg as QmpEvent);
      return;
    }
    if (msg.id === undefined) return;
    const pending = this.#pending.get(msg.id);
    if (!pending) return;
    this.#pending.delete(msg.id);
    if (msg.error) {
      pending.reject(
        new WrennError(
          "internal",
          `QEMU ${pending.command}: ${msg.error.desc} (${msg.error.class})`,
        ),
      );
    } else {
      pending.resolve(msg.return);
    }
  }

  /** Runs one QMP command; rejects with QEMU's own error description. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.#socket.write(
        JSON.stringify(
          args ? { execute: command, arguments: args, id } : { execute: command, id },
        ) + "\n",
      );
    });
  }

  /** Subscribes to events; returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Waits for the next event named `name` (optionally matching `filter`). */
  waitEvent(
    name: string,
    timeoutMs: number,
    filter: (event: QmpEvent) => boolean = () => true,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(
          new WrennError("deadline_exceeded", `no ${name} event from QEMU in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const off = this.onEvent((event) => {
        if (event.event !== name || !filter(event)) return;
        clearTimeout(timer);
        off();
        resolve(event);
      });
    });
  }

  close(): void {
    this.#closedError ??= new WrennError("cancelled", "QMP connection closed by the agent");
    this.#socket.destroy();
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}
