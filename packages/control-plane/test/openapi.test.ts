import { test } from "node:test";
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { parse } from "yaml";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  pattern?: string;
  properties?: Record<string, Schema>;
  required?: string[];
}

interface Operation {
  parameters?: Array<{ name: string; in: string; schema: Schema }>;
  requestBody?: { content: Record<string, { schema: Schema }> };
}

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

const METHODS = ["get", "post", "put", "patch", "delete"];

/** Every `allOf` in the document, with where it is. */
function* allOfs(node: unknown, at: string): Generator<[string, Schema[]]> {
  if (typeof node !== "object" || node === null) return;
  for (const [key, value] of Object.entries(node)) {
    if (key === "allOf" && Array.isArray(value)) yield [at, value as Schema[]];
    yield* allOfs(value, `${at}/${key}`);
  }
}

test("the OpenAPI document is valid 3.1, lists every route, and /docs serves Swagger UI locally", async () => {
  const h = await startHarness("pglite");
  try {
    const res = await h.api("/openapi.yaml", { key: null });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /yaml/);
    const doc = parse(await res.text()) as Doc;
    assert.equal(doc.openapi, "3.1.0");
    const result = await new Validator().validate(
      structuredClone(doc) as unknown as Record<string, unknown>,
    );
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));

    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.keys(ops)
          .filter((m) => METHODS.includes(m))
          .map((m) => `${m.toUpperCase()} ${path}`),
      ),
    );
    const served = new Set(
      h.cp.app.routes
        // /v1 and E2B's paths (src/e2b); /health, /openapi.* and /docs are not API routes.
        .filter((r) => /^\/(v1|v2|sandboxes|snapshots|templates)(\/|$)/.test(r.path))
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method} ${r.path.replace(/:([a-z_]+)/g, "{$1}")}`),
    );
    assert.ok(served.size >= 25, `expected the full API, found ${served.size} routes`);
    for (const route of served)
      assert.ok(documented.has(route), `${route} is not in /openapi.yaml`);
    for (const route of documented) {
      // WebSocket upgrades are answered by the server's upgrade listener, not by Hono routes.
      if (!/^GET \/v1\/sandboxes\/\{id\}\/(exec\/stream|terminal)$/.test(route)) {
        assert.ok(served.has(route), `${route} is documented but not served`);
      }
    }
    // `Ref.nullable()` renders as allOf [ref, {type: [object, null]}]: null
    // fails the ref, so the field admits no null at all (and generated
    // clients type it as an empty object). A nullable ref is anyOf [ref, null].
    for (const [where, allOf] of allOfs(doc, "#")) {
      const nullable = allOf.some((s) => [s.type].flat().includes("null"));
      assert.ok(!nullable, `${where}: a nullable reference written as allOf`);
    }
    const me = doc.components.schemas.Me?.properties?.user as { anyOf?: Schema[] } | undefined;
    assert.deepEqual(me?.anyOf?.[1], { type: "null" }, "Me.user is a User or null");

    const page = await h.api("/docs", { key: null });
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(!/https?:\/\//.test(html), "Swagger UI loads nothing from a CDN");
    const bundle = await h.api("/docs/swagger-ui-bundle.js", { key: null });
    assert.equal(bundle.status, 200);
    assert.ok((await bundle.arrayBuffer()).byteLength > 100_000);
    assert.equal((await h.api("/docs/../package.json", { key: null })).status, 404);
  } finally {
    await h.close();
  }
});

const JUNK_PARAMS = [
  "..%2F..%2Fetc",
  "%00",
  "A".repeat(300),
  "00000000-0000-0000-0000-000000000000",
  "'; drop table users; --",
];
const JUNK_BODIES: Array<{ body: string | undefined; type?: string }> = [
  { body: undefined },
  { body: "", type: "application/json" },
  { body: "not json", type: "application/json" },
  { body: "{", type: "application/json" },
  { body: "[]", type: "application/json" },
  { body: "null", type: "application/json" },
  { body: "{}", type: "application/json" },
  { body: '"str"', type: "application/json" },
  {
    body: JSON.stringify({
      cmd: 1,
      args: "x",
      timeout_sec: -5,
      vcpus: 1e308,
      memory_mb: "big",
      name: "../x",
      sandbox_id: "UPPER-case",
      email: 3,
      password: null,
      path: "",
      token: {},
    }),
    type: "application/json",
  },
  {
    body: JSON.stringify({
      vcpus: 1000,
      memory_mb: 1,
      disk_size_mb: 2 ** 40,
      timeout_sec: 1e9,
      template: "-bad",
    }),
    type: "application/json",
  },
  { body: "a=1&b=2", type: "application/x-www-form-urlencoded" },
  {
    body: '--xx\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n--xx--\r\n',
    type: "multipart/form-data; boundary=xx",
  },
  { body: "garbage", type: "multipart/form-data" },
  { body: "\u0000\u0001\u0002", type: "application/octet-stream" },
];

/**
 * A 4xx must carry `{"error": {"code", "message"}}`, or under E2B's paths
 * (not /v1) E2B's `{"code": <status>, "message"}`; nothing may be a 5xx.
 */
function assertErrorShape(url: string, status: number, text: string, what: string): void {
  let body: { error?: { code?: unknown; message?: unknown }; code?: unknown; message?: unknown } =
    {};
  assert.doesNotThrow(() => (body = JSON.parse(text) as typeof body), what);
  // Node's parser refuses an oversize request before any route is known: /v1's shape.
  if (url.startsWith("/v1/") || status === 431) {
    assert.equal(typeof body.error?.code, "string", what);
    assert.equal(typeof body.error?.message, "string", what);
  } else {
    assert.equal(body.code, status, what);
    assert.equal(typeof body.message, "string", what);
  }
}

async function expectNo5xx(res: Response, url: string, where: string): Promise<void> {
  const text = await res.text();
  const what = `${where} → ${res.status} ${text.slice(0, 200)}`;
  assert.ok(res.status < 500, what);
  if (res.status >= 400) assertErrorShape(url, res.status, text, what);
}

for (const kind of DATABASES)
  test(`every route answers junk with a 4xx in the error shape, never a 500 (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const created = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const realId = ((await created.json()) as { sandbox_id: string }).sandbox_id;
      const doc = (await (await h.api("/openapi.json", { key: null })).json()) as Doc;
      let requests = 0;
      for (const [path, ops] of Object.entries(doc.paths)) {
        for (const method of Object.keys(ops).filter((m) => METHODS.includes(m))) {
          const params = path.includes("{") ? [...JUNK_PARAMS, realId] : [""];
          for (const param of params) {
            // Deleting the real sandbox would only make later requests 409s; keep it.
            if (method === "delete" && param === realId) continue;
            const url =
              path.replace(/\{[a-z_]+\}/g, param) +
              "?limit=abc&type=nope&overwrite=maybe&next_token=%%%";
            // A junk path parameter fails before the body is read: a few bodies are enough there.
            const bodies = param === realId || param === "" ? JUNK_BODIES : JUNK_BODIES.slice(0, 3);
            for (const junk of bodies) {
              // Without credentials one junk body per route is enough: auth answers first.
              for (const key of junk === JUNK_BODIES[2] ? [h.key, null] : [h.key]) {
                const headers: Record<string, string> = {};
                if (junk.type) headers["content-type"] = junk.type;
                const res = await h.api(url, {
                  method: method.toUpperCase(),
                  key,
                  headers,
                  ...(junk.body !== undefined && method !== "get" ? { body: junk.body } : {}),
                });
                requests++;
                const text = await res.text();
                const where = `${method.toUpperCase()} ${url} body=${JSON.stringify(junk.body)?.slice(0, 60)} → ${res.status} ${text.slice(0, 200)}`;
                assert.ok(res.status < 500, where);
                if (res.status >= 400) assertErrorShape(url, res.status, text, where);
              }
            }
          }
        }
      }
      assert.ok(requests > 300, `walked ${requests} requests`);
    } finally {
      await h.close();
    }
  });

/** Values that break one field at a time: types, bounds, NUL, sizes, odd Unicode. */
const BAD_VALUES: unknown[] = [
  "a\u0000b",
  "\u0000",
  "x".repeat(70_000),
  "",
  " ",
  "../../../etc/passwd",
  "é🙂",
  "\ud800",
  -1,
  0,
  1.5,
  2 ** 53,
  1e308,
  -1e308,
  true,
  null,
  [],
  {},
  ["a\u0000"],
  { "k\u0000": "v\u0000" },
];

/** A valid value for a field, so that a body breaks only where a test breaks it. */
function validValue(name: string, schema: Schema, ctx: { sandboxId: string }): unknown {
  if (name === "sandbox_id") return ctx.sandboxId;
  if (name === "email") return `fuzz-${crypto.randomUUID()}@example.com`;
  if (name === "password") return "a long password";
  if (name === "address") return "127.0.0.1:1";
  if (name === "path") return "/tmp/fuzz";
  if (name === "cmd") return "echo";
  if (schema.default !== undefined) return schema.default;
  if (schema.enum) return schema.enum[0];
  switch (schema.type) {
    case "integer":
    case "number":
      return schema.minimum ?? 1;
    case "boolean":
      return true;
    case "array":
      return [];
    case "object":
      return {};
    default:
      if (schema.format === "uuid") return crypto.randomUUID();
      return schema.pattern?.startsWith("^[a-zA-Z0-9]") ? "fuzz-name" : "fuzz";
  }
}

for (const kind of DATABASES)
  test(`every field of every body and query, broken one at a time: 4xx in the error shape, never a 500 (${kind})`, async () => {
    // Many fuzzed E2B creates are valid ones: room for all of them on the fake host.
    const h = await startHarness(kind, { overcommit: { cpu: 1000, memory: 1000 } });
    try {
      const created = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const sandboxId = ((await created.json()) as { sandbox_id: string }).sandbox_id;
      const me = (await (await h.api("/v1/me")).json()) as { team_id: string };
      // A host whose secret the test knows, so heartbeats get past authentication.
      const hostSecret = "fuzz-host-secret-0123456789";
      const hostId = await registerHost(h, "127.0.0.1:2", hostSecret);
      const doc = (await (await h.api("/openapi.json", { key: null })).json()) as Doc;
      const resolve = (s: Schema): Schema =>
        s.$ref ? (doc.components.schemas[s.$ref.split("/").pop() ?? ""] ?? {}) : s;
      const pathFor = (path: string) =>
        path
          .replace("{id}/members", `${me.team_id}/members`)
          .replace("/hosts/{id}", `/hosts/${hostId}`)
          .replace(/\{id\}/g, sandboxId)
          .replace(/\{[a-z_]+\}/g, crypto.randomUUID());
      let requests = 0;
      const send = async (method: string, url: string, init: RequestInit & { json?: unknown }) => {
        const headers = new Headers(init.headers);
        if (url.endsWith("/heartbeat")) headers.set("authorization", `Bearer ${hostSecret}`);
        const res = await h.api(url, { ...init, method, headers });
        requests++;
        const shown = JSON.stringify(init.json ?? "").slice(0, 80);
        await expectNo5xx(res, url, `${method} ${url.slice(0, 100)} ${shown}`);
      };
      for (const [path, ops] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(ops)) {
          if (!METHODS.includes(method) || path.endsWith("/exec/stream")) continue;
          const url = pathFor(path);
          const M = method.toUpperCase();
          // Query parameters, one at a time.
          for (const param of (op.parameters ?? []).filter((p) => p.in === "query")) {
            for (const bad of BAD_VALUES) {
              const q = new URLSearchParams({ [param.name]: String(bad) });
              const json = op.requestBody?.content["application/json"] ? {} : undefined;
              await send(M, `${url}?${q}`, json ? { json } : {});
            }
          }
          const schema = op.requestBody?.content["application/json"]?.schema;
          if (!schema) continue;
          const body = resolve(schema);
          const props = Object.entries(body.properties ?? {});
          const valid = async () => {
            const v: Record<string, unknown> = {};
            for (const [name, s] of props) v[name] = validValue(name, resolve(s), { sandboxId });
            if (path === "/v1/hosts/register") v.token = await hostToken(h);
            return v;
          };
          for (const [name] of props) {
            for (const bad of BAD_VALUES)
              await send(M, url, { json: { ...(await valid()), [name]: bad } });
            // And the field missing.
            const without = await valid();
            delete without[name];
            await send(M, url, { json: without });
          }
          // Keys the schema does not know are ignored, whatever they hold.
          await send(M, url, { json: { ...(await valid()), "x\u0000": "\u0000", __proto__: 1 } });
        }
      }
      // The multipart upload's fields.
      for (const bad of BAD_VALUES.filter((v) => typeof v === "string")) {
        for (const field of ["path", "user"]) {
          const form = new FormData();
          form.set("path", "/tmp/fuzz");
          form.set(field, bad);
          form.set("file", new Blob(["x"]));
          await send("POST", `/v1/sandboxes/${sandboxId}/files/write`, { body: form });
        }
        const q = new URLSearchParams({ path: bad });
        const form = new FormData();
        form.set("file", new Blob(["x"]));
        await send("POST", `/v1/sandboxes/${sandboxId}/files/write?${q}`, { body: form });
      }
      assert.ok(requests > 800, `sent ${requests} requests`);
    } finally {
      await h.close();
    }
  });

async function hostToken(h: Harness): Promise<string> {
  const res = await h.api("/v1/admin/host-tokens", { method: "POST", json: {} });
  return ((await res.json()) as { token: string }).token;
}

async function registerHost(h: Harness, address: string, secret: string): Promise<string> {
  const res = await h.api("/v1/hosts/register", {
    method: "POST",
    key: null,
    json: { token: await hostToken(h), address, secret },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { host_id: string }).host_id;
}
