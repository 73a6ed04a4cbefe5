import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import { fileURLToPath } from "node:url";
import { EnvdClient } from "@wrenn/host-agent/envd/client.ts";
import { isRoot } from "./filesystem-fixtures.ts";
import { spawnEnvd } from "./spawn-envd.ts";

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const NOBODY = 65534;

interface Child {
  url: string;
  /** envd's log once it has `count` /init lines: stderr may trail the HTTP answer. */
  afterInits: (count: number) => Promise<LogLine[]>;
}

/** envd from sources in its own process, as `uid` when given (root drops to it). */
async function startChild(t: TestContext, uid?: number): Promise<Child> {
  const user = uid === undefined ? userInfo().username : "nobody";
  const envd = await spawnEnvd(t, MAIN, user, {
    ...(uid === undefined ? {} : { uid, gid: uid, cwd: "/" }),
    // /init's line, which says whether it reseeded, is a debug line.
    env: { ...process.env, WRENN_LOG_LEVEL: "debug" },
  });
  const afterInits = async (count: number): Promise<LogLine[]> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const parsed = lines(envd.log());
      if (parsed.filter((l) => l.msg === "init").length >= count || Date.now() > deadline) {
        return parsed;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { url: envd.url, afterInits };
}

function postInit(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/init`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

interface LogLine {
  level: number;
  msg: string;
  reseeded?: boolean;
}

/** The complete pino JSON lines (the last chunk may end mid-line). */
function lines(log: string): LogLine[] {
  return log
    .split("\n")
    .slice(0, -1)
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogLine);
}

/**
 * Clones restored from one memory snapshot share the kernel's CRNG state;
 * /init's entropy reseeds it. Root (envd in the guest) reseeds the kernel
 * for real; the host's kernel takes it as its own periodic reseed.
 */
/** Three /init calls with fresh entropy answer 204; a reseed that cannot be is warned of once. */
async function checkInits(envd: Child, privileged: boolean): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const res = await postInit(envd.url, { entropy: randomBytes(64).toString("base64") });
    assert.equal(res.status, 204, await res.text());
  }
  const res = await postInit(envd.url, { entropy: "c2hvcnQ=" });
  assert.equal(res.status, 400, "a bad entropy field is refused as the others are");
  const log = await envd.afterInits(3);
  assert.deepEqual(
    log.filter((l) => l.msg === "init").map((l) => l.reseeded),
    [privileged, privileged, privileged],
  );
  const warnings = log.filter((l) => l.level >= 40);
  if (privileged) {
    assert.deepEqual(warnings, [], "no warnings as root");
  } else {
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]?.msg ?? "", /not privileged to reseed the kernel RNG/);
  }
}

/**
 * Clones restored from one memory snapshot share the kernel's CRNG state;
 * /init's entropy reseeds it. As root (envd in the guest) the kernel is
 * reseeded for real: the host's kernel takes it as an early periodic reseed.
 */
describe("POST /init with entropy", () => {
  test(`as ${isRoot ? "root: answers 204 and reseeds" : "this user: answers 204 and warns once that it cannot reseed"}`, async (t) => {
    await checkInits(await startChild(t), isRoot);
  });

  test("the host agent's EnvdClient sends fresh entropy on every /init", async (t) => {
    const envd = await startChild(t);
    const client = new EnvdClient(new URL(envd.url).host);
    t.after(() => client.close());
    await client.init({ envVars: { A: "1" } });
    await client.init({ envVars: {} });
    const log = await envd.afterInits(2);
    assert.deepEqual(
      log.filter((l) => l.msg === "init").map((l) => l.reseeded),
      [isRoot, isRoot],
    );
    // Unprivileged, only a request with entropy gets the reseed warning.
    if (!isRoot) assert.equal(log.filter((l) => l.level >= 40).length, 1);
  });

  test(
    "as nobody (dropped from root): answers 204 and warns once that it cannot reseed",
    { skip: !isRoot && "needs root to drop to nobody" },
    async (t) => {
      await checkInits(await startChild(t, NOBODY), false);
    },
  );
});
