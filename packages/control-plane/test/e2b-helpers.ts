import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Harness } from "./harness.ts";

export type Json = Record<string, unknown>;

export async function otherTeamKey(h: Harness): Promise<string> {
  const signup = await h.api("/v1/auth/signup", {
    method: "POST",
    key: null,
    json: {
      email: `b-${randomBytes(3).toString("hex")}@example.com`,
      password: "another long one",
    },
  });
  const { token } = (await signup.json()) as { token: string };
  const created = await h.api("/v1/api-keys", {
    method: "POST",
    key: null,
    headers: { authorization: `Bearer ${token}` },
    json: { name: "b" },
  });
  return ((await created.json()) as { key: string }).key;
}

export async function e2bCreate(h: Harness, body: Json = {}, path = "/v2/sandboxes") {
  const res = await h.api(path, { method: "POST", json: { templateID: "base", ...body } });
  const json = (await res.json()) as Json;
  assert.equal(res.status, 201, JSON.stringify(json));
  return json as Json & { sandboxID: string };
}

/** A 4xx in E2B's shape: exactly `{code: <status>, message}`. */
export async function expectError(res: Response, status: number, message?: RegExp) {
  const body = (await res.json()) as Json;
  assert.equal(res.status, status, JSON.stringify(body));
  assert.deepEqual(Object.keys(body).sort(), ["code", "message"], JSON.stringify(body));
  assert.equal(body.code, status);
  assert.equal(typeof body.message, "string");
  if (message) assert.match(body.message as string, message);
}
