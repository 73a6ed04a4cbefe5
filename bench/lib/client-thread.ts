/**
 * A benchmark's HTTP client on a thread of its own. A platform's users call
 * it from elsewhere; a client on the platform's own event loop makes a burst
 * of requests pay for both ends (undici's fetch took ≈ 14 ms of the ≈ 220 ms
 * a 20-create burst kept that loop busy, 2026-12-05), which no user's burst
 * costs the platform.
 */
import { isMainThread, parentPort, Worker } from "node:worker_threads";

export type Outcome = { ok: true; ms: number; body: unknown } | { ok: false; error: string };

interface Job {
  id: number;
  n: number;
  url: string;
  headers: Record<string, string>;
  body: string;
}

interface Answer {
  id: number;
  /** From the first request's start to the last one's answer, on the client's clock. */
  wallMs: number;
  /** The client thread's CPU meanwhile, in core-seconds. */
  cpuSec: number;
  outcomes: Outcome[];
}

export class ClientThread {
  readonly #worker = new Worker(new URL(import.meta.url));
  readonly #waiting = new Map<
    number,
    { resolve: (a: Answer) => void; reject: (e: Error) => void }
  >();
  #next = 0;

  constructor() {
    this.#worker.on("message", (a: Answer) => {
      this.#waiting.get(a.id)?.resolve(a);
      this.#waiting.delete(a.id);
    });
    // A dead client must fail the bench, not leave it waiting.
    this.#worker.on("error", (err: Error) => {
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    });
  }

  /** POSTs `body` as JSON `n` times at once; each request's time and its answer, or why it failed. */
  post(
    url: string,
    body: unknown,
    headers: Record<string, string>,
    n = 1,
  ): Promise<Omit<Answer, "id">> {
    const id = this.#next++;
    const job: Job = { id, n, url, headers, body: JSON.stringify(body) };
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage(job);
    });
  }

  async close(): Promise<void> {
    await this.#worker.terminate();
  }
}

async function once(job: Job): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(job.url, {
      method: "POST",
      headers: { "content-type": "application/json", ...job.headers },
      body: job.body,
    });
    const text = await res.text();
    if (!res.ok) return { ok: false, error: `${res.status} ${text}` };
    return { ok: true, ms: performance.now() - t0, body: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: String(err) };
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on("message", (job: Job) => {
    const t0 = performance.now();
    const cpu0 = process.threadCpuUsage();
    void Promise.all(Array.from({ length: job.n }, () => once(job))).then((outcomes) => {
      const wallMs = performance.now() - t0;
      const cpu = process.threadCpuUsage(cpu0);
      const answer: Answer = {
        id: job.id,
        wallMs,
        cpuSec: (cpu.user + cpu.system) / 1e6,
        outcomes,
      };
      port.postMessage(answer);
    });
  });
}
