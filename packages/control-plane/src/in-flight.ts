/**
 * Concurrent reads of one key share one query: a burst of requests with the
 * same API key, or creates from the same template, asks the database once
 * instead of once each (with the embedded PGlite, every query is CPU on the
 * control plane's one thread). A call that arrives while the read is in
 * flight gets its result, so it can be as old as that read's query — what
 * the same call would have seen had it arrived a moment sooner.
 */
export class InFlight<V> {
  readonly #pending = new Map<string, Promise<V>>();

  run(key: string, read: () => Promise<V>): Promise<V> {
    const pending = this.#pending.get(key);
    if (pending) return pending;
    // The read waits for the event loop's turn: the requests that arrived
    // with this one (handled one after another, each until it waits on I/O;
    // the embedded database answers without any) join it first.
    const started = new Promise<void>((resolve) => setImmediate(resolve))
      .then(read)
      .finally(() => this.#pending.delete(key));
    this.#pending.set(key, started);
    return started;
  }
}
