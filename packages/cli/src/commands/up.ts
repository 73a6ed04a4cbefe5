import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startHostAgent } from "@wrenn/host-agent/agent.ts";
import { dataDir } from "@wrenn/host-agent/image/store.ts";
import { requireTools } from "@wrenn/host-agent/image/prerequisites.ts";
import { AGENT_TOOLS } from "./host-agent.ts";

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * `wrenn up`: the whole platform on this machine. Installs what is missing,
 * builds the base template on first run, starts the host agent, shows a
 * sandbox running a command, and keeps serving until interrupted.
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: "string", default: "127.0.0.1:7070" },
      "data-dir": { type: "string", default: dataDir() },
      "skip-setup": { type: "boolean", default: false },
    },
  });
  const data = resolve(values["data-dir"]);
  process.env.WRENN_DATA_DIR = data;

  if (!values["skip-setup"]) {
    say("==> host packages (wrenn setup)");
    await (await import("./setup.ts")).run([]);
  }
  say("==> base template (wrenn image build; the first run takes a few minutes)");
  await (await import("./image.ts")).run(["build"]);
  requireTools(AGENT_TOOLS, { needsRoot: true, hint: " — run `./wrenn setup` as root" });

  say("==> host agent");
  const agent = await startHostAgent({ listen: values.listen, dataDir: data });
  say(`host agent ${agent.hostId} listening on ${agent.url}`);

  const client = createClient(
    HostAgentService,
    createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
  );
  const id = `demo${randomBytes(4).toString("hex")}`;
  say(`==> demo: creating sandbox ${id} from 'minimal'`);
  const t0 = performance.now();
  await client.createSandbox({ sandboxId: id, template: "minimal", timeoutSec: 300 });
  const t1 = performance.now();
  const res = await client.exec({
    sandboxId: id,
    cmd: "/bin/bash",
    args: ["-lc", 'echo "hello from $(hostname), $(uname -sr), user $(whoami)"; df -h / | tail -1'],
    timeoutSec: 30,
  });
  const t2 = performance.now();
  process.stdout.write(Buffer.from(res.stdout));
  process.stderr.write(Buffer.from(res.stderr));
  say(
    `sandbox created in ${Math.round(t1 - t0)} ms, command ran in ${Math.round(t2 - t1)} ms (exit ${res.exitCode})`,
  );
  await client.destroySandbox({ sandboxId: id });
  say(
    `demo sandbox destroyed\n\nWrenn is serving: HostAgentService at ${agent.url} (Ctrl-C stops it)`,
  );

  await new Promise<void>((done) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => {
        say("\nstopping: destroying sandboxes…");
        void agent.shutdown().then(done);
      });
    }
  });
}
