/**
 * Fuzzed REST requests against a real control plane (PGlite, a fake host
 * agent): random methods, every documented path and E2B's with random and
 * hostile ids, random bodies (malformed JSON, wrong types, huge strings,
 * deep nesting), random headers and credentials — none may answer 500.
 * Seeded, so a failure replays: prints the seed and each 5xx request.
 *
 *   node soak/rest-fuzz.ts [requests=10000] [seed]
 */
import { request } from "node:http";
import { startHarness } from "../packages/control-plane/test/harness.ts";
import { seeded } from "./random.ts";

const total = Number(process.argv[2] ?? 10_000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);

const { random, pick, int } = seeded(seed);

const E2B_PATHS = [
  "/sandboxes",
  "/v2/sandboxes",
  "/sandboxes/metrics",
  "/sandboxes/{id}",
  "/sandboxes/{id}/fork",
  "/sandboxes/{id}/metrics",
  "/sandboxes/{id}/network",
  "/sandboxes/{id}/pause",
  "/sandboxes/{id}/resume",
  "/sandboxes/{id}/connect",
  "/v2/sandboxes/{id}/connect",
  "/sandboxes/{id}/refreshes",
  "/sandboxes/{id}/snapshots",
  "/sandboxes/{id}/timeout",
  "/sandboxes/{id}/logs",
  "/snapshots",
  "/templates",
  "/templates/aliases/{alias}",
  "/templates/{template_id}",
  "/health",
];

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];

function segment(known: string[]): string {
  return pick([
    () => pick(known),
    () => "a".repeat(int(300) + 1),
    () => encodeURIComponent("../../etc/passwd"),
    () => "%00",
    () => "%ff%fe",
    () => encodeURIComponent("名前-😀"),
    () => String(int(1e9)),
    () => "-1",
    () => "null",
    () => encodeURIComponent("' OR 1=1 --"),
    () => "x".repeat(int(20)),
  ])();
}

function value(depth = 0): unknown {
  const leaf = [
    () => null,
    () => random() < 0.5,
    () => int(2 ** 31) * (random() < 0.5 ? -1 : 1),
    () => random() * 1e308,
    () => "s".repeat(int(5000)),
    () => "\u0000\ud800",
    () => "",
    () => new Date(int(2 ** 42)).toISOString(),
  ];
  if (depth > 6 || random() < 0.5) return pick(leaf)();
  if (random() < 0.5) return Array.from({ length: int(5) }, () => value(depth + 1));
  return object(depth + 1);
}

const KEYS = [
  "name",
  "template",
  "templateID",
  "template_id",
  "timeout",
  "timeout_sec",
  "vcpus",
  "memory_mb",
  "disk_size_mb",
  "metadata",
  "envVars",
  "env_vars",
  "cmd",
  "args",
  "path",
  "email",
  "password",
  "role",
  "allowOut",
  "denyOut",
  "network",
  "autoPause",
  "secure",
  "overwrite",
  "token",
  "address",
  "user_id",
  "__proto__",
  "constructor",
];

function object(depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = int(6); i > 0; i--) out[pick(KEYS)] = value(depth);
  return out;
}

function body(): { text?: string; type?: string } {
  return pick([
    () => ({}),
    () => ({ text: JSON.stringify(object()), type: "application/json" }),
    () => ({ text: JSON.stringify(value()), type: "application/json" }),
    () => ({ text: "{ not json", type: "application/json" }),
    () => ({ text: "[".repeat(5000), type: "application/json" }),
    () => ({
      text: JSON.stringify(object()),
      type: pick(["text/plain", "", "multipart/form-data"]),
    }),
    () => ({ text: "a=b&c=d", type: "application/x-www-form-urlencoded" }),
    () => ({ text: "x".repeat(int(2_000_000)), type: "application/octet-stream" }),
  ])();
}

/** One request on a connection of its own (a fuzz case must not inherit the last one's socket). */
function send(
  url: string,
  method: string,
  headers: Headers,
  body: string | undefined,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, headers: Object.fromEntries(headers), agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  // Throttles off: they would answer most of a fuzz run 429 (their own tests cover them).
  const lots = { burst: 1e9, perMinute: 1e9 };
  const h = await startHarness("pglite", {
    rateLimits: { signup: lots, login: lots, loginFailures: lots, badCredentials: lots },
  });
  try {
    const doc = (await (await h.api("/openapi.json")).json()) as { paths: Record<string, unknown> };
    const paths = [...Object.keys(doc.paths), ...E2B_PATHS];
    // Some real ids, so requests also reach the handlers behind the lookups.
    const created = await h.api("/v1/sandboxes", { method: "POST", json: { template: "minimal" } });
    const sandboxId = ((await created.json()) as { id?: string }).id ?? "nosuch";
    const known = [sandboxId, "minimal", "base", "nosuch"];
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const t0 = performance.now();
    let previous = "";
    for (let i = 0; i < total; i++) {
      const path = pick(paths).replace(/\{[^}]+\}/g, () => segment(known));
      const query =
        random() < 0.3
          ? `?${pick(["limit", "state", "metadata", "nextToken", "order"])}=${segment(known)}`
          : "";
      const method = pick(METHODS);
      const b = method === "GET" || method === "HEAD" ? {} : body();
      const headers = new Headers();
      if (b.type !== undefined) headers.set("content-type", b.type);
      const auth = pick(["key", "key", "none", "garbage", "bearer", "e2b"]);
      if (auth === "key") headers.set("x-api-key", h.key);
      if (auth === "garbage") headers.set("x-api-key", segment(known));
      if (auth === "bearer")
        headers.set("authorization", `Bearer ${random() < 0.5 ? h.token : segment(known)}`);
      if (auth === "e2b") headers.set("x-api-key", `e2b_${"0".repeat(40)}`);
      let status: number;
      let text = "";
      try {
        ({ status, text } = await send(`${h.cp.url}${path}${query}`, method, headers, b.text));
      } catch (err) {
        status = -1;
        text = `${String(err)}; body ${b.text?.length ?? 0} B ${b.type}`;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status >= 500 || status < 0) {
        failures.push(
          `${status} ${method} ${path.slice(0, 200)}${query.slice(0, 100)} → ${text.slice(0, 300)} (after ${previous})`,
        );
      }
      previous = `${method} ${path.slice(0, 80)} ${b.type ?? ""} ${b.text?.length ?? 0} B → ${status}`;
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(`seed ${seed}: ${total} requests in ${secs.toFixed(1)} s`);
    console.log(
      "statuses:",
      [...statuses]
        .sort((a, b) => a[0] - b[0])
        .map(([s, n]) => `${s}×${n}`)
        .join(" "),
    );
    const fives = failures.length;
    console.log(`5xx or no answer: ${fives}`);
    for (const f of failures.slice(0, 30)) console.log("  " + f);
    process.exitCode = fives === 0 ? 0 : 1;
  } finally {
    await h.close();
  }
}

await main();
