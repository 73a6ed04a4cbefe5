import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test(
  "the exec WebSocket holds a fast command back while its client does not read: memory stays bounded, the stream goes on once it reads",
  {
    timeout: 120_000,
  },
  async () => {
    const h = await startHarness("pglite");
    let ws: WebSocket | undefined;
    try {
      const created = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const id = String(((await created.json()) as Json).sandbox_id);
      const agent = h.agents[0]!;
      global.gc?.();
      const rssBefore = process.memoryUsage().rss;
      ws = new WebSocket(`${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream`, {
        headers: { "x-api-key": h.key },
      });
      let received = 0;
      ws.on("message", (m: Buffer) => {
        received += m.length;
      });
      await new Promise<void>((resolve, reject) => {
        ws!.once("open", resolve);
        ws!.once("error", reject);
      });
      ws.send(JSON.stringify({ cmd: "flood", timeout_sec: 600 }));
      await until("the flood to start", () => agent.flooded > 0);
      // A client that stops reading: its socket is paused, the kernel's buffers fill.
      ws.pause();
      await sleep(500);
      const paused = agent.flooded;
      await sleep(4_000);
      const heldAt = agent.flooded;
      const rssGrowth = process.memoryUsage().rss - rssBefore;
      console.log(
        `# flood while the client is paused: ${(paused / 2 ** 20).toFixed(1)} MiB by 0.5 s, ${(heldAt / 2 ** 20).toFixed(1)} MiB by 4.5 s; RSS +${(rssGrowth / 2 ** 20).toFixed(1)} MiB`,
      );
      // Without pacing the control plane read the agent as fast as it wrote (GiBs here).
      assert.ok(heldAt < 64 << 20, `the command was held back: ${heldAt} bytes written`);
      assert.ok(heldAt - paused < 16 << 20, `and stopped: ${heldAt - paused} more bytes in 4 s`);
      assert.ok(rssGrowth < 128 << 20, `RSS grew by ${rssGrowth} bytes`);

      // Reading again: the command goes on.
      ws.resume();
      const before = received;
      await until("more output", () => received > before + (32 << 20));
      assert.ok(agent.flooded > heldAt + (16 << 20));
      ws.close();
      await until("the agent's exec stream to end", () => agent.active.execs === 0);
    } finally {
      ws?.terminate();
      await h.close();
    }
  },
);
