/**
 * A guest flooding its serial console costs the host at most the console
 * cap on disk (two files of CONSOLE_CAP_BYTES) and a small share of the
 * agent's CPU, and the log still reads by absolute offset afterwards (real
 * VM).
 *
 * The flood is 3 MiB (three times the cap) by default: the agent reads the
 * console at a pace that lets a guest write ≈50 KiB/s (a 115200-baud line
 * moves 11), so 200 MiB would take ≈70 min.
 * WRENN_TEST_CONSOLE_FLOOD_MB=200 runs it (a KVM host is far faster).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { CONSOLE_CAP_BYTES } from "../src/vmm/console-log.ts";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("console cap (real VM)");
const MiB = 1024 * 1024;
const FLOOD_MB = Number(process.env.WRENN_TEST_CONSOLE_FLOOD_MB) || 3;

describe("a flooded console", { skip, timeout: 900_000 }, () => {
  const h = new AgentHarness("wc");
  before(async () => {
    await h.setUp();
    await h.start();
  });
  after(async () => {
    await h.tearDown();
  });

  test("a guest flooding its console costs the host at most the cap", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      const run = join(h.root, "data", "run", id);
      const consoleBytes = async () => {
        let total = 0;
        for (const f of await readdir(run).catch(() => [])) {
          if (f.includes(".console."))
            total += (await stat(join(run, f)).catch(() => ({ size: 0 }))).size;
        }
        return total;
      };
      let peak = 0;
      const timer = setInterval(() => {
        void consoleBytes().then((b) => (peak = Math.max(peak, b)));
      }, 100);
      const t0 = Date.now();
      const cpu0 = process.cpuUsage();
      let res;
      try {
        res = await h.client.exec({
          sandboxId: id,
          cmd: "/bin/sh",
          args: [
            "-c",
            `head -c ${FLOOD_MB}M /dev/zero | tr '\\0' x > /dev/ttyS0; echo END-OF-FLOOD > /dev/ttyS0`,
          ],
          user: "root",
          timeoutSec: 850,
        });
      } finally {
        clearInterval(timer);
      }
      const ms = Date.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      // The agent runs in this process: its share of a core while the guest flooded.
      const share = (cpu.user + cpu.system) / 1000 / ms;
      assert.equal(res.exitCode, 0, Buffer.from(res.stderr).toString());
      peak = Math.max(peak, await consoleBytes());
      console.log(
        `${FLOOD_MB} MiB to ttyS0: ${ms} ms (${((FLOOD_MB * 1024) / (ms / 1000)).toFixed(0)} KiB/s); host console files peak ${(peak / MiB).toFixed(2)} MiB; ` +
          `the agent's process used ${(share * 100).toFixed(0)} % of a core meanwhile`,
      );
      // Read as QEMU's serial port sends it (a byte per write), the flood took
      // 95 % of a core here; read at the drain's pace, 10–15 %.
      assert.ok(share < 0.4, `the agent used ${(share * 100).toFixed(0)} % of a core`);
      assert.ok(peak <= 2 * CONSOLE_CAP_BYTES + 4096, `console files reached ${peak} bytes`);
      // The log still reads: the last bytes are the flood's end, offsets count all of it.
      // The agent drains the console behind the guest: wait until it is all in.
      for (let size = -1; size !== (await consoleBytes());) {
        size = await consoleBytes();
        await new Promise((r) => setTimeout(r, 1000));
      }
      // The log reads on from the oldest byte kept, a MiB at a time, to its end.
      const first = await h.agent.manager.logs(id, { offset: 0 });
      assert.ok(
        first.offset >= FLOOD_MB * MiB - 2 * CONSOLE_CAP_BYTES,
        `oldest kept ${first.offset}`,
      );
      let end = first;
      for (let next = first; next.text.length > 0;) {
        end = next;
        next = await h.agent.manager.logs(id, { offset: next.nextOffset });
      }
      // Offsets count every byte the console ever wrote, dropped ones too.
      assert.ok(end.nextOffset > FLOOD_MB * MiB, `next offset ${end.nextOffset}`);
      const last = await h.agent.manager.logs(id, { offset: end.nextOffset - 64 });
      console.log(
        `console log: oldest kept ${first.offset}, end ${end.nextOffset}, last read ${last.offset}..${last.nextOffset}`,
      );
      assert.match(last.text, /xEND-OF-FLOOD/);
    } finally {
      await h.client.destroySandbox({ sandboxId: id });
    }
  });
});
