/**
 * Running what a claim and a first command run, so a VM has done it once
 * before a user waits on it. Under TCG every piece of guest code is
 * translated the first time it runs in a QEMU process, and envd's
 * JavaScript is compiled again by V8 as it gets hot (new code, translated
 * again).
 */
import { basename, dirname } from "node:path";
import { text } from "node:stream/consumers";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdClient } from "../envd/client.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";

/** Written, read back and removed by the warm-up; nothing else uses it. */
export const WARM_FILE = "/tmp/.wrenn-warm-up";
const WARM_TEXT = "warm\n";
/** A warm-up command's deadline. */
const WARM_TIMEOUT_S = 30;

/**
 * `rounds` of /init (with the sandbox's own `token`) and the commands E2B's
 * SDK (a login bash) and /v1 (sh -c) start, as each of `users` (undefined:
 * the default), with output on both streams: the path a command's output
 * takes (pipe, envd's data events, the agent's buffers) is code a silent
 * command never runs. Then a small file uploaded as /v1 (a raw body) and
 * E2B's SDKs (a form) send it, downloaded, and a command and a listing
 * through envd's Connect services in JSON, as E2B's SDKs call them (the
 * agent's own calls are binary), and a metrics sample, which the agent
 * takes from every sandbox within seconds of its start. Without it that
 * sample cost each new sandbox 150–500 ms of its VMM's CPU (V8 compiling
 * envd's code for it, TCG translating that), amid a burst of creates.
 * Measured on claimed sandboxes before: the
 * first file write took 71–80 ms and later ones 16–24; the first form
 * 88–101 and later ones 52–58; the first read 25–33 and later ones 11–14;
 * the first filesystem call (a Stat) 1.45–1.56 s and later ones ≈ 40 ms;
 * then the first E2B-shaped command 171–223 ms and later ones 56–108.
 */
export async function warmUp(
  host: SandboxHost,
  id: string,
  opts: { rounds: number; token: string; users: (string | undefined)[] },
): Promise<void> {
  const { envd } = host.registry.running(id);
  // A claim's /init takes envd's control channel: opened here, so that the
  // warm-up's own inits run (and translate) the code a claim's will.
  await envd.openControl(WARM_TIMEOUT_S * 1000);
  for (let round = 0; round < opts.rounds; round++) {
    // Its own id as the name: a boot snapshot's builder boots as its
    // template and a pool entry is restored under the builder's, so the
    // rename runs here rather than first on a create's path (there it added
    // ≈ 65 ms to a restored guest's /init).
    await envd.init({ envVars: {}, accessToken: opts.token, defaultUser: "user", hostname: id });
    await envd.metrics(WARM_TIMEOUT_S * 1000);
    for (const user of opts.users) {
      await warmFiles(envd, user);
      await warmE2bCalls(envd, user);
      const run = await exec(host, id, {
        cmd: "/bin/bash",
        args: ["-l", "-c", `/bin/sh -c 'echo warm; echo warm >&2; rm -f -- ${WARM_FILE}'`],
        timeoutSec: WARM_TIMEOUT_S,
        ...(user ? { user } : {}),
      });
      if (run.exitCode !== 0) {
        throw new WrennError(
          "internal",
          `warm-up exited ${run.exitCode}: ${run.stderr.toString()}`,
        );
      }
      expectWarm("command's output", run.stdout.toString());
    }
  }
}

/** WARM_FILE written raw (as /v1 sends it) and as a form (as E2B's SDKs do), then read back. */
async function warmFiles(envd: EnvdClient, user: string | undefined): Promise<void> {
  await envd.writeFile(WARM_FILE, Buffer.from(WARM_TEXT), user);
  await envd.writeFileForm(WARM_FILE, Buffer.from(WARM_TEXT), user);
  expectWarm("file read back", await text(await envd.readFile(WARM_FILE, user)));
}

/** A login bash and a listing of WARM_FILE's directory, in Connect's JSON as E2B's SDKs call them. */
async function warmE2bCalls(envd: EnvdClient, user: string | undefined): Promise<void> {
  let said = "";
  for await (const ev of envd.execStream({
    cmd: "/bin/bash",
    args: ["-l", "-c", "echo warm"],
    user,
    json: true,
    signal: AbortSignal.timeout(WARM_TIMEOUT_S * 1000),
  })) {
    if (ev.type === "stdout") said += Buffer.from(ev.data).toString();
  }
  expectWarm("E2B-shaped command's output", said);
  const listed = await envd.listDir(dirname(WARM_FILE), user);
  if (!listed.includes(basename(WARM_FILE))) {
    throw new WrennError("internal", `warm-up did not find ${WARM_FILE}: ${listed.join(" ")}`);
  }
}

function expectWarm(what: string, got: string): void {
  if (got !== WARM_TEXT)
    throw new WrennError("internal", `warm-up's ${what}: ${JSON.stringify(got)}`);
}
