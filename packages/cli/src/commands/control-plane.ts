import { parseArgs } from "node:util";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { startControlPlane } from "@wrenn/control-plane/server.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { ADMISSION_OPTIONS, admissionOptions } from "./admission.ts";
import { TEAM_POLICY_OPTIONS, teamPolicyOptions } from "./team-policy.ts";
import { TRAFFIC_OPTIONS, readPem, trafficOptions } from "./traffic.ts";

function integer(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new WrennError(
      "invalid_argument",
      `${flag} must be an integer ${min}..${max}, got '${value}'`,
    );
  }
  return n;
}

/**
 * Where the embedded database lives by default: `$WRENN_DATA_DIR/control-plane`,
 * the same place `wrenn up` keeps it, so both commands see one database; without
 * WRENN_DATA_DIR (a user running the API alone) under ~/.wrenn.
 */
function defaultDataDir(): string {
  const root = process.env.WRENN_DATA_DIR;
  return root ? join(root, "control-plane") : join(homedir(), ".wrenn", "control-plane");
}

/**
 * `wrenn control-plane`: the REST API alone. PostgreSQL from --database-url
 * or DATABASE_URL; otherwise an embedded PGlite under --data-dir.
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: process.env.WRENN_PORT ?? "8080" },
      host: { type: "string", default: "127.0.0.1" },
      "database-url": { type: "string", default: process.env.DATABASE_URL },
      "data-dir": { type: "string", default: defaultDataDir() },
      "reconcile-interval": { type: "string", default: "10" },
      "host-agent": { type: "string", multiple: true, default: [] },
      "agent-ca": { type: "string", default: process.env.WRENN_AGENT_CA },
      ...TRAFFIC_OPTIONS,
      ...TEAM_POLICY_OPTIONS,
      ...ADMISSION_OPTIONS,
    },
  });
  const traffic = trafficOptions(values);
  const databaseUrl = values["database-url"] || undefined;
  const cp = await startControlPlane({
    port: integer("--port", values.port, 0, 65535),
    host: values.host,
    ...(databaseUrl ? { databaseUrl } : { dataDir: resolve(values["data-dir"], "pgdata") }),
    ...(process.env.WRENN_JWT_SECRET ? { jwtSecret: process.env.WRENN_JWT_SECRET } : {}),
    reconcileIntervalMs:
      integer("--reconcile-interval", values["reconcile-interval"], 1, 3600) * 1000,
    ...traffic,
    ...teamPolicyOptions(values),
    ...admissionOptions(values),
    ...(values["agent-ca"] ? { agentCa: readPem("--agent-ca", values["agent-ca"]) } : {}),
  });
  try {
    for (const address of values["host-agent"]) {
      // The agent's --secret / WRENN_HOST_SECRET, when it was started with one.
      const secret = process.env.WRENN_HOST_SECRET || undefined;
      const id = await cp.addHost(address, { secret });
      process.stdout.write(`host agent ${address} registered as ${id}\n`);
    }
  } catch (err) {
    // A listening server would keep the process alive after the error.
    await cp.close();
    throw err;
  }
  process.stdout.write(
    `control plane listening on ${cp.url} (API docs at ${cp.url}/docs, database: ${databaseUrl ? "postgres" : "embedded"})\n`,
  );
  if (cp.proxyUrl) process.stdout.write(`sandbox traffic proxy on ${cp.proxyUrl}\n`);
  await new Promise<void>((done) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => void cp.close().then(done));
    }
  });
}
