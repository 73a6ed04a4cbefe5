import type { Readable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Gc = (options?: { type?: "minor" | "major"; execution?: "sync" | "async" }) => void;

/**
 * Every chunk a socket or file stream reads is a fresh buffer outside the JS
 * heap, and V8 only collects dead ones once ~64 MB of them piled up. In a
 * sandbox with a few hundred MB of RAM that pile is real memory, so large
 * transfers ask for a cheap young-generation collection every few MiB:
 * envd's memory stays flat however large the file.
 */
const EVERY_BYTES = 8 << 20;

let gc: Gc | undefined;
function collector(): Gc | undefined {
  if (gc === undefined) {
    try {
      setFlagsFromString("--expose-gc");
      // Only contexts created after the flag see `gc`.
      gc = runInNewContext("gc") as Gc;
    } catch {
      gc = () => {};
    }
  }
  return gc;
}

/** Counts the bytes flowing through `stream` and collects behind them. */
export function reclaimWhileStreaming(stream: Readable): void {
  let since = 0;
  stream.on("data", (chunk: Buffer) => {
    since += chunk.length;
    if (since >= EVERY_BYTES) {
      since = 0;
      collector()?.({ type: "minor" });
    }
  });
}
