// The agent's terminal sessions without a VM: a scripted stand-in for envd's
// PTY stream (the real one runs in packages/web/test/dashboard.test.ts,
// where a reload shows what the shell printed before it).
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { WrennError } from "@wrenn/shared/errors.ts";
import { type PtyEvent, type PtyRequest, PtySessions } from "../src/pty/sessions.ts";

/** envd's PTY streams as a test drives them: one per open, fed by hand. */
class FakeEnvd {
  opened: Array<PtyRequest & { signal: AbortSignal }> = [];
  #streams: Array<{ push: (ev: PtyEvent | Error | null) => void }> = [];
  nextPid = 7;
  failOpen: Error | null = null;

  open = (req: PtyRequest & { signal: AbortSignal }): AsyncIterable<PtyEvent> => {
    this.opened.push(req);
    const queue: Array<PtyEvent | Error | null> = [];
    let wake: (() => void) | undefined;
    this.#streams.push({
      push: (ev) => {
        queue.push(ev);
        wake?.();
      },
    });
    const fail = this.failOpen;
    const pid = req.pid === 0 ? this.nextPid : req.pid;
    return (async function* () {
      if (fail) throw fail;
      yield { type: "start", pid } as PtyEvent;
      for (;;) {
        while (queue.length === 0) {
          if (req.signal.aborted) throw new WrennError("cancelled", "aborted");
          await new Promise<void>((r) => {
            wake = r;
            req.signal.addEventListener("abort", () => r(), { once: true });
          });
        }
        const ev = queue.shift();
        if (ev === null || ev === undefined) return;
        if (ev instanceof Error) throw ev;
        yield ev;
      }
    })();
  };

  /** The latest stream's output. */
  print(text: string): void {
    this.#streams.at(-1)?.push({ type: "data", data: Buffer.from(text) });
  }

  cut(err: Error): void {
    this.#streams.at(-1)?.push(err);
  }

  exit(code: number): void {
    this.#streams.at(-1)?.push({ type: "end", exitCode: code });
  }
}

/** A viewer: collects what it is shown until it leaves or its stream ends. */
function view(sessions: PtySessions, envd: FakeEnvd, pid: number) {
  const leave = new AbortController();
  const seen: PtyEvent[] = [];
  let error: unknown = null;
  const done = (async () => {
    try {
      for await (const ev of sessions.attach(
        "sb1",
        { pid, cols: 80, rows: 24 },
        envd.open,
        leave.signal,
      ))
        seen.push(ev);
    } catch (err) {
      error = err;
    }
  })();
  const text = () =>
    seen
      .filter((e) => e.type === "data")
      .map((e) => Buffer.from(e.data).toString())
      .join("");
  return { seen, text, leave: () => leave.abort(), done, error: () => error };
}

const tick = () => sleep(20);

describe("terminal sessions with scrollback", { timeout: 20_000 }, () => {
  test("a reattach shows what was printed before and while nobody watched", async () => {
    const envd = new FakeEnvd();
    const sessions = new PtySessions();
    const a = view(sessions, envd, 0);
    await tick();
    assert.deepEqual(a.seen[0], { type: "start", pid: 7 });
    envd.print("$ echo before\r\nbefore\r\n");
    await tick();
    a.leave();
    await a.done;
    envd.print("$ sleep 1; echo while-away\r\nwhile-away\r\n");
    await tick();
    assert.equal(envd.opened[0]?.signal.aborted, false, "the reader stays after the viewer left");

    const b = view(sessions, envd, 7);
    await tick();
    assert.deepEqual(b.seen[0], { type: "start", pid: 7 });
    assert.match(b.text(), /before\r\n.*while-away\r\n$/s);
    envd.print("live\r\n");
    await tick();
    assert.match(b.text(), /while-away\r\nlive\r\n$/);
    assert.equal(envd.opened.length, 1, "one envd stream serves every viewer");
    b.leave();
    await b.done;
  });

  test("two viewers see the same bytes; the shell's exit ends both and forgets it", async () => {
    const envd = new FakeEnvd();
    const sessions = new PtySessions();
    const a = view(sessions, envd, 0);
    await tick();
    const b = view(sessions, envd, 7);
    await tick();
    envd.print("shared\r\n");
    envd.exit(3);
    await Promise.all([a.done, b.done]);
    assert.equal(a.text(), "shared\r\n");
    assert.equal(b.text(), "shared\r\n");
    assert.deepEqual(a.seen.at(-1), { type: "end", exitCode: 3 });
    assert.deepEqual(b.seen.at(-1), { type: "end", exitCode: 3 });
    assert.deepEqual(sessions.stats(), { sessions: 0, reading: 0, bytes: 0 });
  });

  test("the scrollback is bounded and replays from a line start", async () => {
    const envd = new FakeEnvd();
    const sessions = new PtySessions({ scrollbackBytes: 100 });
    const a = view(sessions, envd, 0);
    await tick();
    for (let i = 0; i < 20; i++) envd.print(`line ${String(i).padStart(2, "0")}\r\n`);
    await tick();
    a.leave();
    await a.done;
    assert.equal(sessions.stats().bytes, 100);
    const b = view(sessions, envd, 7);
    await tick();
    const replay = b.text();
    assert.ok(replay.length <= 100);
    assert.match(replay, /^line \d\d\r\n(line \d\d\r\n)*line 19\r\n$/);
    b.leave();
    await b.done;
  });

  test("a cut stream (pause): viewers get the error; a reattach opens a new stream and replays", async () => {
    const envd = new FakeEnvd();
    const sessions = new PtySessions();
    const a = view(sessions, envd, 0);
    await tick();
    envd.print("before pause\r\n");
    await tick();
    envd.cut(new WrennError("unavailable", "the VM stopped"));
    await a.done;
    assert.match(String(a.error()), /the VM stopped/);
    assert.deepEqual(sessions.stats(), { sessions: 1, reading: 0, bytes: 14 });

    const b = view(sessions, envd, 7);
    await tick();
    assert.equal(envd.opened.length, 2);
    assert.equal(envd.opened[1]?.pid, 7, "the new stream reattaches to the same shell");
    envd.print("after resume\r\n");
    await tick();
    assert.equal(b.text(), "before pause\r\nafter resume\r\n");
    b.leave();
    await b.done;
  });

  test("a shell that is gone (not_found) takes its scrollback with it", async () => {
    const envd = new FakeEnvd();
    const sessions = new PtySessions();
    const a = view(sessions, envd, 0);
    await tick();
    envd.print("x\r\n");
    envd.cut(new WrennError("unavailable", "the VM stopped"));
    await a.done;
    envd.failOpen = new WrennError("not_found", "process 7 not found");
    const b = view(sessions, envd, 7);
    await b.done;
    assert.match(String(b.error()), /not found/);
    assert.equal(sessions.stats().sessions, 0);
  });

  test("a reader nobody watches stops after lingerMs; the oldest terminals are forgotten first", async () => {
    const envd = new FakeEnvd();
    // Long enough that the readers left first still read when checked below,
    // on a host busy with other tests' VMs (at 50 ms one had stopped).
    const sessions = new PtySessions({ lingerMs: 1000, maxSessions: 2 });
    for (const pid of [7, 8, 9]) {
      envd.nextPid = pid;
      const v = view(sessions, envd, 0);
      await tick();
      envd.print(`shell ${pid}\r\n`);
      await tick();
      v.leave();
      await v.done;
    }
    assert.equal(envd.opened[0]?.signal.aborted, true, "the evicted terminal's reader is stopped");
    assert.deepEqual(sessions.stats(), { sessions: 2, reading: 2, bytes: 18 });
    const deadline = Date.now() + 10_000;
    while (sessions.stats().reading > 0 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(sessions.stats(), { sessions: 2, reading: 0, bytes: 18 });
    assert.ok(envd.opened.every((o) => o.signal.aborted));
  });
});
