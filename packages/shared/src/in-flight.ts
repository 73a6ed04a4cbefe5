/**
 * Concurrent reads of one key share one read: a burst of requests with the
 * same API key, or creates of the same template and shape, look it up once
 * instead of once each. A call that arrives while the read is in flight gets
 * its result, so it can be as old as that read — what the same call would
 * have seen had it arrived a moment sooner.
 */
export class InFlight<V> {
  readonly #pending = new Map<string, Promise<V>>();

  run(key: string, read: () => Promise<V>): Promise<V> {
    const pending = this.#pending.get(key);
    if (pending) return pending;
    // The read waits for the event loop's turn: the requests that arrived
    // with this one (handled one after another, each until it waits on I/O;
    // an embedded database answers without any) join it first.
    const started = new Promise<void>((resolve) => setImmediate(resolve))
      .then(read)
      .finally(() => this.#pending.delete(key));
    this.#pending.set(key, started);
    return started;
  }
}
