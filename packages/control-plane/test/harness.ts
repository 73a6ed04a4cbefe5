import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { createLogger } from "@wrenn/shared/log.ts";
import { openDatabase } from "../src/db/open.ts";
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from "../src/server.ts";
import { startFakeAgent, type FakeAgent } from "./fake-agent.ts";

export const silent = createLogger("test", process.env.WRENN_TEST_LOG ?? "silent");

/** Which databases the suite runs on: PGlite always, PostgreSQL when DATABASE_URL is set. */
export const DATABASES: Array<"pglite" | "postgres"> = process.env.DATABASE_URL
  ? ["pglite", "postgres"]
  : ["pglite"];

let migrated: Promise<PGlite> | undefined;

/** A database no other test sees: a clone of one migrated PGlite, or a new PostgreSQL database. */
export async function freshDatabase(kind: "pglite" | "postgres"): Promise<{
  options: Pick<ControlPlaneOptions, "pglite" | "databaseUrl">;
  drop(): Promise<void>;
}> {
  if (kind === "pglite") {
    migrated ??= (async () => {
      const template = await PGlite.create();
      const db = await openDatabase({ pglite: template, log: silent });
      void db;
      return template;
    })();
    const clone = (await (await migrated).clone()) as PGlite;
    return { options: { pglite: clone }, drop: async () => {} };
  }
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error("DATABASE_URL unset");
  const name = `wrenn_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    options: { databaseUrl: url.toString() },
    drop: async () => {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export interface Harness {
  cp: ControlPlane;
  agents: FakeAgent[];
  /** An admin's API key (the first user to sign up is an admin). */
  key: string;
  token: string;
  api(
    path: string,
    init?: RequestInit & { key?: string | null; json?: unknown },
  ): Promise<Response>;
  registerAgent(agent: FakeAgent): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(
  kind: "pglite" | "postgres",
  options: { agents?: number } & Partial<ControlPlaneOptions> = {},
): Promise<Harness> {
  const db = await freshDatabase(kind);
  const cp = await startControlPlane({
    port: 0,
    log: silent,
    reconcileIntervalMs: 3600_000,
    // Tests sign up several users; invites.test.ts checks sign-up closed.
    openSignup: true,
    ...db.options,
    ...options,
  });
  const agents: FakeAgent[] = [];
  const api: Harness["api"] = (path, init = {}) => {
    const headers = new Headers(init.headers);
    const key = init.key === undefined ? h.key : init.key;
    if (key) headers.set("x-api-key", key);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(init.json);
    }
    return fetch(`${cp.url}${path}`, { ...init, headers, body });
  };
  const h: Harness = {
    cp,
    agents,
    key: "",
    token: "",
    api,
    async registerAgent(agent) {
      const tok = await (await api("/v1/admin/host-tokens", { method: "POST", json: {} })).json();
      const res = await api("/v1/hosts/register", {
        method: "POST",
        key: null,
        json: { token: (tok as { token: string }).token, address: agent.address },
      });
      if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { host_id: string }).host_id;
    },
    async close() {
      await cp.close();
      await Promise.all(agents.map((a) => a.close()));
      await db.drop();
    },
  };
  const signup = await api("/v1/auth/signup", {
    method: "POST",
    key: null,
    json: {
      email: `admin-${randomBytes(3).toString("hex")}@example.com`,
      password: "correct horse battery",
    },
  });
  h.token = ((await signup.json()) as { token: string }).token;
  const created = await api("/v1/api-keys", {
    method: "POST",
    key: null,
    headers: { authorization: `Bearer ${h.token}` },
    json: { name: "admin" },
  });
  h.key = ((await created.json()) as { key: string }).key;
  for (let i = 0; i < (options.agents ?? 1); i++) {
    const agent = await startFakeAgent();
    agents.push(agent);
    await h.registerAgent(agent);
  }
  return h;
}

/** Where the real-VM tests find the base image (`./wrenn image build`). */
export const imageRoot = resolve(process.env.WRENN_DATA_DIR || "/var/lib/wrenn");

/** Why a test of `what` through real host agents and VMs cannot run here (said loudly), or false. */
export function realAgentSkipReason(what: string): string | false {
  const why =
    process.getuid?.() !== 0
      ? "needs root (host agents make namespaces, TAPs and VMs)"
      : !existsSync(join(imageRoot, "images", "minimal"))
        ? `no 'minimal' image under ${imageRoot} (run ./wrenn image build)`
        : !["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].some(existsSync)
          ? "qemu-system-x86_64 is not installed"
          : false;
  if (why) console.warn(`\n!!! SKIPPING ${what}: ${why}\n`);
  return why;
}
