import { test } from "node:test";
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { parse } from "yaml";
import { startHarness } from "./harness.ts";

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>>;
}

const METHODS = ["get", "post", "put", "patch", "delete"];

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
        .filter((r) => r.path.startsWith("/v1/") && r.method !== "ALL")
        .map((r) => `${r.method} ${r.path.replace(/:([a-z_]+)/g, "{$1}")}`),
    );
    assert.ok(served.size >= 25, `expected the full API, found ${served.size} routes`);
    for (const route of served)
      assert.ok(documented.has(route), `${route} is not in /openapi.yaml`);
    for (const route of documented) {
      if (route !== "GET /v1/sandboxes/{id}/exec/stream") {
        assert.ok(served.has(route), `${route} is documented but not served`);
      }
    }

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

test("every route answers junk with a 4xx in the error shape, never a 500", async () => {
  const h = await startHarness("pglite");
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
              if (res.status >= 400) {
                const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
                assert.equal(typeof body.error?.code, "string", where);
                assert.equal(typeof body.error?.message, "string", where);
              }
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
