/**
 * The sandbox lifecycle under random faults, on real VMs (as root, after
 * `./wrenn image build`): a host agent in its own process, on a data dir of
 * its own (a throw-away xfs pool, so filling it touches nothing else), driven
 * through random creates, execs, pauses, resumes and destroys; one step in
 * ten is a fault — the agent SIGKILLed and restarted, a sandbox's VMM
 * SIGKILLed, the agent killed inside a pause, the data dir filled to 0 bytes
 * free for the next operations, envd SIGKILLed inside a guest. After every
 * step the model must hold:
 * - every sandbox the agent lists is one we made, in the state the rules say
 *   (running, paused, or failed — with a reason — once its VM died);
 * - a running or paused sandbox keeps what was written to its disk (a
 *   marker file, rewritten by each exec), whatever happened to the agent;
 * - each running sandbox has its own VMM, and no VMM runs beyond those but
 *   the warm pool's and the standbys (as many as `wrenn up` keeps);
 * - at the end, with everything destroyed and the agent stopped, nothing is
 *   left on the host.
 * Seeded, so a failure replays: prints the seed and every step.
 *
 *   node soak/lifecycle-faults.ts [cycles=1000] [seed] [fault-rate=0.1]
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { AgentHarness } from "../packages/host-agent/test/agent-harness.ts";
import { fillDisk, type Filler } from "../packages/host-agent/test/fill-disk.ts";
import { seeded } from "./random.ts";

const cycles = Number(process.argv[2] ?? 1000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const FAULT_RATE = Number(process.argv[4] ?? 0.1);
const MAX_SANDBOXES = 3;

const { pick, random } = seeded(seed);
const run = promisify(execFile);

type Expected = "running" | "paused" | "failed";
interface Model {
  state: Expected;
  /** What the marker file holds (the last exec's write; "" before the first). */
  marker: string;
  /** A write that failed on the full disk: the file may hold it or `marker`. */
  pending?: string;
}

/**
 * As `wrenn up` runs its agent: network slots, ready sandboxes and
 * standby QEMUs kept ahead, so the faults hit those too.
 */
const POOLS = { networkPool: 2, warmPool: 2, standbyVmms: 2 };
/** QEMUs beyond the running sandboxes': the warm pool's (one template, one shape) and the standbys. */
const SPARE_VMMS = POOLS.warmPool + POOLS.standbyVmms;

const h = new AgentHarness("wsf", POOLS, { pool: true });
const model = new Map<string, Model>();
const counts: Record<string, number> = {};
/** What the operations on a full disk did, and the running sandboxes it cost. */
const onFullDisk: Record<string, number> = {};
const tally = (key: string) => (onFullDisk[key] = (onFullDisk[key] ?? 0) + 1);
let serial = 0;

const STATE_NAMES: Record<number, Expected | undefined> = {
  [SandboxState.RUNNING]: "running",
  [SandboxState.PAUSED]: "paused",
  [SandboxState.FAILED]: "failed",
};

async function listedWithErrors(): Promise<Map<string, { state?: Expected; error: string }>> {
  const { sandboxes } = await h.client.listSandboxes({});
  return new Map(
    sandboxes.map((s) => [s.sandboxId, { state: STATE_NAMES[s.state], error: s.error }]),
  );
}

async function listed(): Promise<Map<string, Expected | undefined>> {
  return new Map([...(await listedWithErrors())].map(([id, s]) => [id, s.state]));
}

/** QEMU processes started for this run's data dir (their RAM path names it). */
async function vmmCount(): Promise<number> {
  const { stdout } = await run("pgrep", ["-c", "-f", `qemu-system.*${h.root}`]).catch(
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? "0" }),
  );
  return Number(stdout.trim());
}

/** The agent's list is the model; running sandboxes hold their marker. */
async function check(step: string): Promise<void> {
  let seen = await listed();
  // A killed VMM is noticed asynchronously, and a guest whose envd was killed
  // panics and ends its VMM a few seconds later: give it time to show as failed.
  for (let i = 0; i < 200; i++) {
    const settled = [...model].every(
      ([id, m]) => m.state !== "failed" || seen.get(id) === "failed",
    );
    if (settled) break;
    await new Promise((r) => setTimeout(r, 100));
    seen = await listed();
  }
  assert.deepEqual([...seen.keys()].sort(), [...model.keys()].sort(), `${step}: the sandboxes`);
  const errors = await listedWithErrors();
  for (const [id, m] of model) {
    assert.equal(seen.get(id), m.state, `${step}: ${id}'s state`);
    if (m.state === "failed") {
      assert.ok(errors.get(id)?.error, `${step}: failed ${id} carries a reason`);
    }
    if (m.state === "running") {
      const { stdout } = await h.sh(id, "cat ~/marker");
      assert.equal(stdout, m.marker, `${step}: ${id}'s marker`);
    }
  }
  const running = [...model].filter(([, m]) => m.state === "running").map(([id]) => id);
  const pids = await Promise.all(running.map((id) => h.vmmPid(id)));
  assert.equal(new Set(pids).size, pids.length, `${step}: one VMM per running sandbox`);
  for (const [i, pid] of pids.entries()) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    assert.match(cmdline, /^qemu-system/, `${step}: ${running[i]}'s VMM runs`);
  }
  // A failed VM's process may take a moment to be reaped, a stray (a killed
  // agent's standby) a moment to be found by the next agent.
  const fits = (n: number) => n >= running.length && n <= running.length + SPARE_VMMS;
  for (let i = 0; i < 50 && !fits(await vmmCount()); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const n = await vmmCount();
  assert.ok(
    fits(n),
    `${step}: ${n} VMMs for ${running.length} running sandboxes and at most ${SPARE_VMMS} spare`,
  );
}

/** An operation must end within this, whatever the fault. */
const BOUND_MS = 120_000;

async function bounded<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung past ${BOUND_MS} ms`)), BOUND_MS);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A failure the user can act on: a Connect error with a code other than
 * internal/unknown and a message without a stack trace.
 */
function assertClearError(what: string, err: unknown): ConnectError {
  if (!(err instanceof ConnectError)) throw err;
  assert.ok(
    err.code !== Code.Internal && err.code !== Code.Unknown,
    `${what}: failed with code ${Code[err.code]}, not a clear one: ${err.rawMessage}`,
  );
  assert.doesNotMatch(err.rawMessage, /\n\s+at /, `${what}: a stack trace in the error`);
  return err;
}

async function restartAgent(crashAt?: string): Promise<void> {
  h.process?.kill("SIGKILL");
  await h.processExit();
  await h.startProcess(crashAt ? { WRENN_CRASH_AT: crashAt } : {});
}

/** A running sandbox for a fault to hit: one of the model's, or a new one. */
async function aRunning(): Promise<[string, Model]> {
  let running = [...model].filter(([, m]) => m.state === "running");
  if (running.length === 0) {
    if (model.size >= MAX_SANDBOXES) await steps.destroy();
    await steps.create();
    running = [...model].filter(([, m]) => m.state === "running");
  }
  return pick(running);
}

/** Rewrites the sandbox's marker file; until the write is known to be done, either may be there. */
async function writeMarker(id: string, m: Model, marker: string): Promise<void> {
  m.pending = marker;
  const res = await h.sh(id, `printf '${marker.trim()}\\n' > ~/marker && sync`);
  assert.equal(res.exitCode, 0);
  m.marker = marker;
  delete m.pending;
}

const steps = {
  async create(): Promise<void> {
    if (model.size >= MAX_SANDBOXES) return;
    const id = `s${seed.toString(36)}x${++serial}`;
    await h.create(id);
    // Ours from here on, whatever its first write does.
    const m: Model = { state: "running", marker: "" };
    model.set(id, m);
    await writeMarker(id, m, `${id}-0\n`);
  },
  async exec(): Promise<void> {
    const running = [...model].filter(([, m]) => m.state === "running");
    if (running.length === 0) return;
    const [id, m] = pick(running);
    await writeMarker(id, m, `${id}-${++serial}\n`);
  },
  async pause(): Promise<void> {
    const running = [...model].filter(([, m]) => m.state === "running");
    if (running.length === 0) return;
    const [id, m] = pick(running);
    await h.client.pauseSandbox({ sandboxId: id });
    m.state = "paused";
  },
  async resume(): Promise<void> {
    const paused = [...model].filter(([, m]) => m.state === "paused");
    if (paused.length === 0) return;
    const [id, m] = pick(paused);
    await h.client.resumeSandbox({ sandboxId: id });
    m.state = "running";
  },
  async destroy(): Promise<void> {
    if (model.size === 0) return;
    const id = pick([...model.keys()]);
    await h.client.destroySandbox({ sandboxId: id });
    model.delete(id);
  },
  async killVmm(): Promise<void> {
    const [id, m] = await aRunning();
    process.kill(await h.vmmPid(id), "SIGKILL");
    m.state = "failed";
  },
  /** envd SIGKILLed inside a guest: its init (tini) exits, the guest panics, the VM ends. */
  async killEnvd(): Promise<void> {
    const [id, m] = await aRunning();
    const killed = await h.client
      .exec({
        sandboxId: id,
        cmd: "/bin/sh",
        args: ["-c", "kill -9 $(pgrep -f /opt/wrenn/envd/envd.cjs)"],
        user: "root",
        timeoutSec: 30,
      })
      // The exec's own connection goes with envd.
      .then(
        (res) => `exit ${res.exitCode}`,
        (err: unknown) => Code[assertClearError("exec killing envd", err).code],
      );
    process.stdout.write(`  envd of ${id} killed (${killed})\n`);
    m.state = "failed";
  },
  /**
   * The data dir full (0 bytes free) while one or two random operations run:
   * each succeeds or fails with a clear error within a bound; then space
   * comes back. A paused sandbox not resumed stays paused (its next resume
   * checks its disk); a running one stays running or is failed with a reason;
   * a pause that failed keeps the sandbox (running, or paused if it finished).
   */
  async diskFull(): Promise<void> {
    const filler = await fillDisk(join(h.root, "data"));
    standing.filler = filler;
    const free = filler.freeBytes;
    const before = new Map([...model].map(([id, m]) => [id, { ...m }]));
    const tried: string[] = [];
    try {
      for (let n = 1 + (random() < 0.5 ? 1 : 0); n > 0; n--) {
        const has = (state: Expected) => [...model.values()].some((m) => m.state === state);
        const ops = [
          ...(model.size < MAX_SANDBOXES ? (["create"] as const) : []),
          ...(has("running") ? (["exec", "pause"] as const) : []),
          ...(has("paused") ? (["resume"] as const) : []),
        ];
        const op = pick(ops.length > 0 ? ops : (["create"] as const));
        const t0 = Date.now();
        const outcome = await bounded(`${op} on a full disk`, steps[op]()).then(
          () => {
            tally(`${op} ok`);
            return "ok";
          },
          (err: unknown) => {
            const e = assertClearError(`${op} on a full disk`, err);
            tally(`${op} ${Code[e.code]}`);
            return `${Code[e.code]}: ${e.rawMessage}`;
          },
        );
        tried.push(`${op} ${Date.now() - t0} ms ${outcome}`);
      }
    } finally {
      await filler.remove();
      standing.filler = null;
    }
    process.stdout.write(`  ${free} bytes free: ${tried.join("; ")}\n`);
    // The steps' model updates hold only for what succeeded: take the agent's
    // word for the rest, within what the rules allow. A VM that died on the
    // full disk (SIGBUS) may still be listed running for a moment: a running
    // sandbox must answer, or show as failed soon.
    const settled = async (id: string): Promise<Expected | undefined> => {
      for (let i = 0; i < 200; i++) {
        const now = (await listed()).get(id);
        if (now !== "running") return now;
        const answered = await h.sh(id, "cat ~/marker", 30).then(
          (r) => r.exitCode === 0,
          () => false,
        );
        if (answered) return "running";
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail(`${id} neither answers nor shows as failed after the full disk`);
    };
    for (const [id, m] of [...model]) {
      const was = before.get(id);
      const now = await settled(id);
      if (!was) {
        // Created on the full disk: it ran, or failed with a reason (checked next).
        if (now === undefined) model.delete(id);
        else m.state = now;
      } else if (was.state === "paused" && m.state === "paused") {
        assert.equal(now, "paused", `a paused ${id} not resumed on the full disk stays paused`);
      } else {
        assert.ok(now !== undefined, `${id} is not lost on the full disk`);
        if (now === "failed") tally("running sandbox failed");
        m.state = now;
      }
      if (m.pending !== undefined && m.state === "running") {
        // A write that failed on the full disk may have been done, or be
        // finishing now: its VM waited for space and runs on.
        await new Promise((r) => setTimeout(r, 1000));
        const { stdout } = await h.sh(id, "cat ~/marker");
        assert.ok(
          stdout === m.marker || stdout === m.pending,
          `${id}'s marker reads ${JSON.stringify(stdout)}: neither the last one written nor the one tried`,
        );
        m.marker = stdout;
      }
      delete m.pending;
    }
    const seen = await listed();
    for (const id of seen.keys()) {
      assert.ok(model.has(id), `${id} listed after the full disk, unknown to the soak`);
    }
  },
  async killAgent(): Promise<void> {
    await restartAgent();
  },
  /** The agent dies inside a pause (after the memory is saved): the next one finishes it. */
  async crashInPause(): Promise<void> {
    const [id, m] = await aRunning();
    await restartAgent("pause:after-memory");
    await h.client.pauseSandbox({ sandboxId: id }).catch(() => undefined);
    await restartAgent();
    m.state = "paused";
  },
};
/** The disk-full fault's filler while it stands (a step cut off by its bound leaves it). */
const standing: { filler: Filler | null } = { filler: null };
type Step = keyof typeof steps;
/** Weights of ordinary use. */
const USE: Step[] = [
  ...Array<Step>(3).fill("create"),
  ...Array<Step>(4).fill("exec"),
  ...Array<Step>(3).fill("pause"),
  ...Array<Step>(3).fill("resume"),
  ...Array<Step>(2).fill("destroy"),
];
/** One step in ten is a fault (by default), each kind as likely. */
const FAULTS: Step[] = ["killVmm", "killAgent", "crashInPause", "diskFull", "killEnvd"];

console.log(`seed ${seed}, ${cycles} cycles, fault rate ${FAULT_RATE}`);
const t0 = Date.now();
await h.setUp();
// The disk-full fault fills the data dir: only a pool of the soak's own.
assert.ok(h.ownsDataFs, "the soak needs a data pool of its own (an ext4 /tmp, as root)");
await h.startProcess();
try {
  for (let i = 1; i <= cycles; i++) {
    const step = random() < FAULT_RATE ? pick(FAULTS) : pick(USE);
    counts[step] = (counts[step] ?? 0) + 1;
    process.stdout.write(`${i} ${step}\n`);
    await bounded(step, steps[step]());
    // A failed sandbox is destroyed by its user: the model's next step does it.
    await check(`cycle ${i} (${step})`);
    for (const [id, m] of model) {
      if (m.state === "failed") {
        await h.client.destroySandbox({ sandboxId: id });
        model.delete(id);
      }
    }
  }
  for (const id of model.keys()) await h.client.destroySandbox({ sandboxId: id });
  model.clear();
  await h.noLeaksOnceStopped();
  console.log(
    `ok: ${cycles} cycles in ${Math.round((Date.now() - t0) / 1000)} s, nothing lost, nothing left; steps ${JSON.stringify(counts)}; on a full disk ${JSON.stringify(onFullDisk)}`,
  );
} catch (err) {
  console.error(`FAILED with seed ${seed}: ${err instanceof Error ? err.stack : String(err)}`);
  process.exitCode = 1;
} finally {
  await standing.filler?.remove();
  await h.tearDown().catch((err: unknown) => console.error(`teardown: ${String(err)}`));
}
