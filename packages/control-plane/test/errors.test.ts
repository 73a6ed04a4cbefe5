/**
 * The error contract: every failure is `{"error": {"code", "message"}}`, and an
 * agent's verdict keeps its meaning (not_found → 404, invalid_argument → 400,
 * failed_precondition → 409) while anything else from or about an agent is 502.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { WrennError } from "@wrenn/shared/errors.ts";
import { toErrorResponse } from "../src/errors.ts";
import { TemplateInfoSchema, TemplateType } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { create } from "@bufbuild/protobuf";
import { DATABASES, startHarness } from "./harness.ts";

type ErrorJson = { error: { code: string; message: string } };

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as ErrorJson;
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message"]);
  return { status: res.status, code: body.error.code, message: body.error.message };
}

for (const kind of DATABASES) {
  test(`an agent's errors map to the API's: 404, 400, 409, else 502 (${kind})`, async () => {
    const h = await startHarness(kind);
    try {
      const created = await h.api("/v1/sandboxes", { method: "POST", json: {} });
      const id = String(((await created.json()) as { sandbox_id: string }).sandbox_id);
      const cases: Array<[string, number, string]> = [
        ["NotFound", 404, "not_found"],
        ["InvalidArgument", 400, "invalid_argument"],
        ["FailedPrecondition", 409, "failed_precondition"],
        ["AlreadyExists", 409, "already_exists"],
        ["Internal", 502, "unavailable"],
        ["Unavailable", 502, "unavailable"],
        ["Unknown", 502, "unavailable"],
        ["ResourceExhausted", 502, "unavailable"],
        ["DeadlineExceeded", 502, "unavailable"],
        ["PermissionDenied", 502, "unavailable"],
        // A host that refuses the control plane's secret is the host's problem, not the caller's.
        ["Unauthenticated", 502, "unavailable"],
      ];
      for (const [agentCode, status, code] of cases) {
        const res = await h.api(`/v1/sandboxes/${id}/exec`, {
          method: "POST",
          json: { cmd: `fail:${agentCode}` },
        });
        const e = await errorOf(res);
        assert.equal(e.status, status, `${agentCode}: ${e.message}`);
        assert.equal(e.code, code, agentCode);
        assert.match(e.message, new RegExp(`the agent says ${agentCode}`), "the agent's words");
      }

      // A create the agent fails: 502, the row turns `error` and is not listed.
      const agent = h.agents[0]!;
      agent.templates.set(
        "boom",
        create(TemplateInfoSchema, { name: "boom", type: TemplateType.BASE, vcpus: 1 }),
      );
      await h.cp.reconciler.runOnce();
      const boom = await h.api("/v1/sandboxes", { method: "POST", json: { template: "boom" } });
      const e = await errorOf(boom);
      assert.equal(e.status, 502);
      assert.match(e.message, /boot failed/);
      const listed = (await (await h.api("/v1/sandboxes")).json()) as Array<{
        sandbox_id: string;
        status: string;
      }>;
      assert.deepEqual(
        listed.map((s) => s.sandbox_id),
        [id],
        "error rows are not listed",
      );
      const unknownTemplate = await h.api("/v1/sandboxes", {
        method: "POST",
        json: { template: "no-such-template" },
      });
      assert.equal((await errorOf(unknownTemplate)).status, 404);

      // The agent gone while its host still counts as ready: the call fails with 502.
      await agent.close();
      const down = await errorOf(
        await h.api(`/v1/sandboxes/${id}/exec`, { method: "POST", json: { cmd: "echo" } }),
      );
      assert.equal(down.status, 502);
      assert.equal(down.code, "unavailable");
      assert.match(down.message, new RegExp(`host agent at ${agent.address}`));
      for (const action of ["ping", "pause"]) {
        const res = await h.api(`/v1/sandboxes/${id}/${action}`, { method: "POST" });
        assert.equal((await errorOf(res)).status, 502, action);
      }
      // No host with room at all: 503.
      const none = await h.api("/v1/sandboxes", { method: "POST", json: { memory_mb: 262144 } });
      const full = await errorOf(none);
      assert.equal(full.status, 503);
      assert.equal(full.code, "resource_exhausted");
      // Routes that do not exist, and methods a route does not take.
      const noRoute = await errorOf(await h.api("/v1/nothing-here"));
      assert.equal(noRoute.status, 404);
      const wrongMethod = await errorOf(await h.api("/v1/sandboxes", { method: "PATCH" }));
      assert.equal(wrongMethod.status, 404);
    } finally {
      await h.close();
    }
  });
}

test("errors of every kind leave as a status and the error shape", () => {
  const cases: Array<[unknown, number, string]> = [
    [new WrennError("not_found", "x"), 404, "not_found"],
    [new WrennError("invalid_argument", "x"), 400, "invalid_argument"],
    [new WrennError("unauthenticated", "x"), 401, "unauthenticated"],
    [new WrennError("permission_denied", "x"), 403, "permission_denied"],
    [new WrennError("failed_precondition", "x"), 409, "failed_precondition"],
    [new WrennError("already_exists", "x"), 409, "already_exists"],
    [new WrennError("resource_exhausted", "x"), 503, "resource_exhausted"],
    [new WrennError("unavailable", "x"), 502, "unavailable"],
    [new WrennError("deadline_exceeded", "x"), 504, "deadline_exceeded"],
    [new HTTPException(413, { message: "too big" }), 413, "invalid_argument"],
    [new HTTPException(400), 400, "invalid_argument"],
    // PostgreSQL's verdicts on data (as drizzle wraps them): bad input, or a conflict.
    [
      new Error("Failed query", { cause: Object.assign(new Error("bad byte"), { code: "22021" }) }),
      400,
      "invalid_argument",
    ],
    [Object.assign(new Error("duplicate key"), { code: "23505" }), 409, "already_exists"],
    // Anything else is the server's fault, and says where to look, not what broke.
    [new Error("secret internals"), 500, "internal"],
    [Object.assign(new Error("socket"), { code: "EPIPE" }), 500, "internal"],
    ["a string", 500, "internal"],
  ];
  for (const [err, status, code] of cases) {
    const res = toErrorResponse(err);
    assert.equal(res.status, status, String(err));
    assert.equal(res.body.error.code, code, String(err));
    assert.equal(typeof res.body.error.message, "string");
    assert.ok(!res.body.error.message.includes("secret internals"));
  }
});
