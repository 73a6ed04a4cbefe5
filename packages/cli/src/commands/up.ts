import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { runCommand } from "@wrenn/shared/command.ts";
import { startHostAgent, type HostAgent } from "@wrenn/host-agent/agent.ts";
import { mountDataFs } from "@wrenn/host-agent/storage/data-fs.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { dataDir } from "@wrenn/host-agent/image/store.ts";
import { requireTools } from "@wrenn/host-agent/image/prerequisites.ts";
import { startControlPlane, type ControlPlane } from "@wrenn/control-plane/server.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import {
  AGENT_TOOLS,
  ALLOW_PRIVATE_OPTION,
  POOL_OPTIONS,
  allowPrivateOf,
  poolsOf,
} from "./host-agent.ts";
import { ADMISSION_OPTIONS, admissionOptions } from "./admission.ts";
import { TEAM_POLICY_OPTIONS, teamPolicyOptions } from "./team-policy.ts";
import { TRAFFIC_OPTIONS, e2bEnvLines, trafficOptions } from "./traffic.ts";
import { registerUpHost } from "./up-host.ts";

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A REST call to our own control plane; errors carry its `{error: {code, message}}`. */
async function api<T>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  auth: Record<string, string> = {},
): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json", ...auth },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    throw new WrennError("unavailable", `${method} ${path} answered ${res.status}: ${text}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

interface Admin {
  email: string;
  password: string;
}

/**
 * The platform admin `wrenn up` acts as: signed up on the first run (the
 * first user is the admin), its password kept in the data dir (mode 0600).
 */
async function adminSession(base: string, stateDir: string): Promise<string> {
  const file = join(stateDir, "admin.json");
  let admin = await readFile(file, "utf8").then(
    (text) => JSON.parse(text) as Admin,
    () => null,
  );
  if (admin === null) {
    admin = { email: "admin@wrenn.local", password: randomBytes(18).toString("base64url") };
    const s = await api<{ token: string }>(base, "POST", "/v1/auth/signup", {
      ...admin,
      name: "admin",
    });
    await writeFile(file, JSON.stringify(admin, null, 2), { mode: 0o600 });
    return s.token;
  }
  return (await api<{ token: string }>(base, "POST", "/v1/auth/login", admin)).token;
}

/**
 * `wrenn up`: the whole platform on this machine. Installs what is missing,
 * builds the base template on first run, starts a host agent and the control
 * plane (embedded PostgreSQL unless DATABASE_URL is set), prints the API URL,
 * the docs URL and a fresh API key, shows a sandbox running a command through
 * the REST API, and keeps serving until interrupted.
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: process.env.WRENN_PORT ?? "8080" },
      host: { type: "string", default: "127.0.0.1" },
      "agent-listen": { type: "string", default: "127.0.0.1:7070" },
      "data-dir": { type: "string", default: dataDir() },
      "skip-setup": { type: "boolean", default: false },
      ...ALLOW_PRIVATE_OPTION,
      ...POOL_OPTIONS,
      ...TRAFFIC_OPTIONS,
      ...TEAM_POLICY_OPTIONS,
      ...ADMISSION_OPTIONS,
    },
  });
  const traffic = trafficOptions(values);
  const allowPrivate = allowPrivateOf(values);
  const pools = poolsOf(values);
  const data = resolve(values["data-dir"]);
  process.env.WRENN_DATA_DIR = data;
  // The daemons' JSON logs would bury the summary; WRENN_LOG_LEVEL=info brings them back.
  process.env.WRENN_LOG_LEVEL ??= "warn";
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new WrennError("invalid_argument", `--port must be 0..65535, got '${values.port}'`);
  }

  if (!values["skip-setup"]) {
    say("==> host packages and data dir (wrenn setup)");
    await (await import("./setup.ts")).run([]);
  } else {
    await mountDataFs(data, { log: createLogger("up") });
  }
  say("==> base template (wrenn image build; the first run takes a few minutes)");
  await (await import("./image.ts")).run(["build"]);
  requireTools(AGENT_TOOLS, { needsRoot: true, hint: " — run `./wrenn setup` as root" });

  // From here on Ctrl-C stops whatever has started (its VMs, network,
  // database); before the platform is up it also ends the command.
  let agent: HostAgent | undefined;
  let cp: ControlPlane | undefined;
  let ready = false;
  let stopping: Promise<void> | undefined;
  // Once: a Ctrl-C and the failure it causes in the start-up both call it.
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await cp?.close().catch(() => undefined);
      await agent?.shutdown();
    })());
  const stopped = new Promise<void>((done) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => {
        say("\nstopping: destroying sandboxes…");
        void stop().then(() => (ready ? done() : process.exit(130)));
      });
    }
  });

  try {
    say("==> host agent");
    // Only this control plane may drive the agent, even on a shared machine.
    const hostSecret = randomBytes(24).toString("hex");
    agent = await startHostAgent({
      listen: values["agent-listen"],
      dataDir: data,
      // As for `wrenn host-agent`: a second platform (or a test) beside a running one.
      networkPrefix: process.env.WRENN_NETWORK_PREFIX || undefined,
      secret: hostSecret,
      allowPrivate,
      ...pools,
    });
    say(`host agent ${agent.hostId} on ${agent.url}`);

    const web = new URL("../../../web/", import.meta.url).pathname;
    if (!existsSync(join(web, "dist", "index.html"))) {
      say("==> dashboard (first run: vite build)");
      await runCommand(
        process.execPath,
        [join(web, "../../node_modules/vite/bin/vite.js"), "build"],
        { cwd: web },
      );
    }
    say("==> control plane");
    const stateDir = join(data, "control-plane");
    await mkdir(stateDir, { recursive: true });
    const databaseUrl = process.env.DATABASE_URL || undefined;
    cp = await startControlPlane({
      port,
      host: values.host,
      ...(databaseUrl ? { databaseUrl } : { dataDir: join(stateDir, "pgdata") }),
      ...traffic,
      ...teamPolicyOptions(values),
      ...admissionOptions(values),
      // Traffic to this agent's sandboxes skips a loopback relay (ControlPlaneOptions.localHops).
      localHops: new Map([[new URL(agent.url).host, agent.hop]]),
    });
    await registerUpHost(cp, stateDir, new URL(agent.url).host, hostSecret);
    const session = await adminSession(cp.url, stateDir);
    const { key } = await api<{ key: string }>(
      cp.url,
      "POST",
      "/v1/api-keys",
      { name: `wrenn up ${new Date().toISOString()}` },
      { authorization: `Bearer ${session}` },
    );
    const auth = { "x-api-key": key };

    say("==> demo: a sandbox from 'minimal' through the REST API");
    const t0 = performance.now();
    const sb = await api<{ sandbox_id: string }>(
      cp.url,
      "POST",
      "/v1/sandboxes",
      { template: "minimal", timeout_sec: 300 },
      auth,
    );
    const t1 = performance.now();
    const res = await api<{ stdout: string; stderr: string; exit_code: number }>(
      cp.url,
      "POST",
      `/v1/sandboxes/${sb.sandbox_id}/exec`,
      {
        cmd: "/bin/bash",
        args: [
          "-lc",
          'echo "hello from $(hostname), $(uname -sr), user $(whoami)"; df -h / | tail -1',
        ],
        timeout_sec: 30,
      },
      auth,
    );
    const t2 = performance.now();
    process.stdout.write(res.stdout);
    process.stderr.write(res.stderr);
    say(
      `sandbox ${sb.sandbox_id} created in ${Math.round(t1 - t0)} ms; the command ran in ${Math.round(t2 - t1)} ms (exit ${res.exit_code})`,
    );
    await api(cp.url, "DELETE", `/v1/sandboxes/${sb.sandbox_id}`, undefined, auth);

    say("");
    say(`Wrenn is up (Ctrl-C stops it and destroys its sandboxes).`);
    say(`  API:      ${cp.url}/v1`);
    say(`  docs:     ${cp.url}/docs   (OpenAPI: ${cp.url}/openapi.yaml)`);
    say(`  API key:  ${key}   (shown once; send it as X-API-Key)`);
    say(
      `  dashboard: ${cp.url}/   (sign in with the email and password in ${join(stateDir, "admin.json")})`,
    );
    say(`  try:      curl -s -H 'X-API-Key: ${key}' ${cp.url}/v1/sandboxes`);
    say("");
    say("The official e2b SDK works unchanged; export these (in a project with `npm i e2b`):");
    for (const line of e2bEnvLines(cp, key, traffic.domain)) say(`  ${line}`);
    say(
      `  node --input-type=module -e "import { Sandbox } from 'e2b'; const s = await Sandbox.create(); console.log((await s.commands.run('echo hello from wrenn')).stdout); await s.kill()"`,
    );
    if (traffic.domain && !traffic.tls) {
      say(
        `  (the SDK reaches sandboxes at https://<port>-<id>.${traffic.domain}: point *.${traffic.domain} here and give --tls-cert/--tls-key)`,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  ready = true;
  await stopped;
}
