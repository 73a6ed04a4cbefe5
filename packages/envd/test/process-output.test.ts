// The output fan-out on its own: readers, flow control and the stall cut-off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { OutputHub, type OutputLimits, type Subscription } from "../src/process/output.ts";

const limits: OutputLimits = { highWaterBytes: 100, lowWaterBytes: 40, stallMs: 200 };

function hub() {
  const flow = { paused: false, pauses: 0 };
  const stalled: Subscription[] = [];
  const h = new OutputHub(
    {
      pause: () => {
        flow.paused = true;
        flow.pauses++;
      },
      resume: () => void (flow.paused = false),
    },
    limits,
    (sub) => stalled.push(sub),
  );
  return { h, flow, stalled };
}

const signal = new AbortController().signal;
const bytes = (n: number) => new Uint8Array(n);

test("every reader gets the output from when it subscribed, then the end", async () => {
  const { h } = hub();
  const early = h.subscribe();
  h.publish("stdout", bytes(1));
  const late = h.subscribe();
  h.publish("stderr", bytes(2));
  h.finish({ exitCode: 0, exited: true, status: "exit status 0" });
  const drain = async (s: Subscription) => {
    const seen: string[] = [];
    for (let item = await s.next(signal); item; item = await s.next(signal)) {
      seen.push(item.type === "data" ? `${item.stream}:${item.bytes.length}` : item.type);
    }
    return seen;
  };
  assert.deepEqual(await drain(early), ["stdout:1", "stderr:2", "end"]);
  assert.deepEqual(await drain(late), ["stderr:2", "end"]);
  assert.deepEqual(
    await drain(h.subscribe()),
    ["end"],
    "after the end, a reader learns how it ended",
  );
});

test("nobody listening: output is dropped and the process never paused", () => {
  const { h, flow } = hub();
  for (let i = 0; i < 100; i++) h.publish("stdout", bytes(50));
  assert.equal(flow.pauses, 0);
});

test("a slow reader pauses the process until it catches up", async () => {
  const { h, flow } = hub();
  const sub = h.subscribe();
  h.publish("stdout", bytes(60));
  assert.equal(flow.paused, false);
  h.publish("stdout", bytes(60));
  assert.equal(flow.paused, true, "paused at the high-water mark");
  await sub.next(signal);
  assert.equal(flow.paused, true, "60 bytes queued is still above the low-water mark");
  await sub.next(signal);
  assert.equal(flow.paused, false, "resumed once drained");
});

test("a reader that stops reading is cut off after stallMs and the process resumes", async () => {
  const { h, flow, stalled } = hub();
  const sub = h.subscribe();
  const other = h.subscribe();
  h.publish("stdout", bytes(150));
  assert.equal(flow.paused, true);
  // `other` keeps reading; `sub` never does.
  await other.next(signal);
  await sleep(limits.stallMs + 100);
  assert.equal(flow.paused, false, "the stalled reader no longer holds the process");
  assert.deepEqual(stalled, [sub]);
  assert.equal(h.readers, 1);
  const first = await sub.next(signal);
  assert.equal(first?.type, "data", "what was queued before the cut-off is still delivered");
  await assert.rejects(sub.next(signal), (err) => isWrennError(err, "resource_exhausted"));
});

test("a reader that goes away stops counting at once", async () => {
  const { h, flow } = hub();
  const sub = h.subscribe();
  h.publish("stdout", bytes(150));
  assert.equal(flow.paused, true);
  sub.close();
  assert.equal(flow.paused, false);
  assert.equal(h.readers, 0);
  const aborted = new AbortController();
  aborted.abort();
  assert.equal(await h.subscribe().next(aborted.signal), undefined);
});
