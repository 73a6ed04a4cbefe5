/**
 * The sandbox lifecycle under random faults, on real VMs (as root, after
 * `./wrenn image build`): a host agent in its own process, driven through
 * random creates, execs, pauses, resumes and destroys, with faults thrown
 * in — the agent SIGKILLed and restarted, a sandbox's VMM SIGKILLed, the
 * agent restarted with a crash point armed. After every step the model
 * must hold:
 * - every sandbox the agent lists is one we made, in the state the rules say
 *   (running, paused, or failed once its VMM was killed);
 * - a running or paused sandbox keeps what was written to its disk (a
 *   marker file, rewritten by each exec), whatever happened to the agent;
 * - at the end, with everything destroyed, nothing is left on the host.
 * Seeded, so a failure replays: prints the seed and every step.
 *
 *   node soak/lifecycle-faults.ts [cycles=1000] [seed]
 */
import assert from "node:assert/strict";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { AgentHarness } from "../packages/host-agent/test/agent-harness.ts";
import { seeded } from "./random.ts";

const cycles = Number(process.argv[2] ?? 1000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const MAX_SANDBOXES = 3;

const { pick } = seeded(seed);

type Expected = "running" | "paused" | "failed";
interface Model {
  state: Expected;
  /** What the marker file holds (the last exec's write). */
  marker: string;
}

const h = new AgentHarness("wsf");
const model = new Map<string, Model>();
const counts: Record<string, number> = {};
let serial = 0;

const STATE_NAMES: Record<number, Expected | undefined> = {
  [SandboxState.RUNNING]: "running",
  [SandboxState.PAUSED]: "paused",
  [SandboxState.FAILED]: "failed",
};

async function listed(): Promise<Map<string, Expected | undefined>> {
  const { sandboxes } = await h.client.listSandboxes({});
  return new Map(sandboxes.map((s) => [s.sandboxId, STATE_NAMES[s.state]]));
}

/** The agent's list is the model; running sandboxes hold their marker. */
async function check(step: string): Promise<void> {
  let seen = await listed();
  // A killed VMM is noticed asynchronously: give it a moment to show as failed.
  for (let i = 0; i < 50; i++) {
    const settled = [...model].every(
      ([id, m]) => m.state !== "failed" || seen.get(id) === "failed",
    );
    if (settled) break;
    await new Promise((r) => setTimeout(r, 100));
    seen = await listed();
  }
  assert.deepEqual([...seen.keys()].sort(), [...model.keys()].sort(), `${step}: the sandboxes`);
  for (const [id, m] of model) {
    assert.equal(seen.get(id), m.state, `${step}: ${id}'s state`);
    if (m.state === "running") {
      const { stdout } = await h.sh(id, "cat ~/marker");
      assert.equal(stdout, m.marker, `${step}: ${id}'s marker`);
    }
  }
}

async function restartAgent(crashAt?: string): Promise<void> {
  h.process?.kill("SIGKILL");
  await h.processExit();
  await h.startProcess(crashAt ? { WRENN_CRASH_AT: crashAt } : {});
}

const steps = {
  async create(): Promise<void> {
    if (model.size >= MAX_SANDBOXES) return;
    const id = `s${seed.toString(36)}x${++serial}`;
    await h.create(id);
    const marker = `${id}-0\n`;
    await h.sh(id, `printf '${marker.trim()}\\n' > ~/marker && sync`);
    model.set(id, { state: "running", marker });
  },
  async exec(): Promise<void> {
    const running = [...model].filter(([, m]) => m.state === "running");
    if (running.length === 0) return;
    const [id, m] = pick(running);
    const marker = `${id}-${++serial}\n`;
    const res = await h.sh(id, `printf '${marker.trim()}\\n' > ~/marker && sync`);
    assert.equal(res.exitCode, 0);
    m.marker = marker;
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
    const running = [...model].filter(([, m]) => m.state === "running");
    if (running.length === 0) return;
    const [id, m] = pick(running);
    process.kill(await h.vmmPid(id), "SIGKILL");
    m.state = "failed";
  },
  async killAgent(): Promise<void> {
    await restartAgent();
  },
  /** The agent dies inside a pause (after the memory is saved): the next one finishes it. */
  async crashInPause(): Promise<void> {
    const running = [...model].filter(([, m]) => m.state === "running");
    if (running.length === 0) return;
    const [id, m] = pick(running);
    await restartAgent("pause:after-memory");
    await h.client.pauseSandbox({ sandboxId: id }).catch(() => undefined);
    await restartAgent();
    m.state = "paused";
  },
};
type Step = keyof typeof steps;
/** Weights: mostly ordinary use, a fault every few steps. */
const MENU: Step[] = [
  ...Array<Step>(3).fill("create"),
  ...Array<Step>(4).fill("exec"),
  ...Array<Step>(3).fill("pause"),
  ...Array<Step>(3).fill("resume"),
  ...Array<Step>(2).fill("destroy"),
  "killVmm",
  "killAgent",
  "crashInPause",
];

console.log(`seed ${seed}, ${cycles} cycles`);
const t0 = Date.now();
await h.setUp();
await h.startProcess();
try {
  for (let i = 1; i <= cycles; i++) {
    const step = pick(MENU);
    counts[step] = (counts[step] ?? 0) + 1;
    process.stdout.write(`${i} ${step}\n`);
    await steps[step]();
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
  await h.noLeaks();
  console.log(
    `ok: ${cycles} cycles in ${Math.round((Date.now() - t0) / 1000)} s, nothing lost, nothing left; steps ${JSON.stringify(counts)}`,
  );
} catch (err) {
  console.error(`FAILED with seed ${seed}: ${err instanceof Error ? err.stack : String(err)}`);
  process.exitCode = 1;
} finally {
  await h.tearDown().catch((err: unknown) => console.error(`teardown: ${String(err)}`));
}
