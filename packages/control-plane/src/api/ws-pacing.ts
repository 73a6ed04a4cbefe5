import type { WebSocket } from "ws";

/** Past this many bytes queued for a client, the source is not read until they drain. */
export const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;

/**
 * Sends to a WebSocket at the pace its client reads. `send` resolves at once
 * while less than HIGH_WATER bytes wait to leave this process, else when the
 * queue is back under LOW_WATER (or the socket closed): a caller that awaits
 * it between reads of its source (an agent's stream) holds that source back
 * instead of buffering whatever a client that never reads is sent.
 */
export function pacedSender(ws: WebSocket) {
  let queued = 0;
  let wake: (() => void) | null = null;
  const resume = () => {
    wake?.();
    wake = null;
  };
  ws.once("close", resume);
  return {
    /** Bytes sent but not yet written to the network. */
    get queued() {
      return queued;
    },
    async send(data: string | Uint8Array, binary = false): Promise<void> {
      if (ws.readyState !== ws.OPEN) return;
      const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
      queued += size;
      // The callback runs once `ws` has handed the frame to the socket and the socket
      // has written it out: what the client does not read stays counted.
      ws.send(data, { binary }, () => {
        queued -= size;
        if (queued < LOW_WATER) resume();
      });
      if (queued < HIGH_WATER) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (ws.readyState !== ws.OPEN || queued < LOW_WATER) resume();
      });
    },
  };
}
