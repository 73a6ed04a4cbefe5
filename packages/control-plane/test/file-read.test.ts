/**
 * REST `files/read` relays envd's `/files` body through the agent's proxy
 * hop (src/proxy/guest-files.ts): the reader's pace holds the agent back
 * (nothing buffers the file), errors come before any byte, and a host that
 * does not answer is `unavailable`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test(
  "a slow reader holds the agent back; errors come before any byte",
  { timeout: 120_000 },
  async () => {
    const h = await startHarness("pglite");
    try {
      const [agent] = h.agents;
      assert.ok(agent);
      const id = String(
        ((await (await h.api("/v1/sandboxes", { method: "POST", json: {} })).json()) as Json)
          .sandbox_id,
      );

      // A 1 GiB file read 1 MiB at a time, then not at all for a while.
      agent.generated.set(`${id}:/gen`, 1 << 30);
      const download = new AbortController();
      const read = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/gen", user: "root" },
        signal: download.signal,
      });
      assert.equal(read.status, 200);
      assert.equal(read.headers.get("content-type"), "application/octet-stream");
      const reader = read.body!.getReader();
      let got = 0;
      while (got < 1 << 20) got += (await reader.read()).value?.length ?? 0;
      await new Promise((r) => setTimeout(r, 1500));
      const held = agent.served;
      await new Promise((r) => setTimeout(r, 500));
      // Socket buffers on three hops and a few stream buffers: tens of MiB at most.
      assert.ok(held < 64 << 20, `the agent sent ${held >> 20} MiB to a reader that took 1`);
      assert.equal(agent.served, held, "the agent stopped sending while nobody read");
      // Reading again, the rest comes.
      while (got < 96 << 20) got += (await reader.read()).value?.length ?? 0;
      assert.ok(agent.served >= 96 << 20);
      download.abort();
      await until("the agent's read to end", () => agent.active.reads === 0);

      // A small file, whole.
      agent.files.set(`${id}:/small`, Buffer.from("small file"));
      const small = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/small" },
      });
      assert.equal(await small.text(), "small file");

      // Missing: a 404 in the API's error shape, not a broken 200.
      const missing = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/nope" },
      });
      assert.equal(missing.status, 404);
      const body = (await missing.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "not_found");
      assert.match(body.error.message, /^\/nope: .*does not exist/);

      // The agent is gone: unavailable, with the host named.
      await agent.close();
      const gone = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/small" },
      });
      assert.equal(gone.status, 502, await gone.clone().text());
      const goneBody = (await gone.json()) as { error: { code: string; message: string } };
      assert.equal(goneBody.error.code, "unavailable");
      assert.match(goneBody.error.message, /host agent at 127\.0\.0\.1:\d+ did not answer/);
      await agent.reopen();

      // The agent does not run the sandbox (its record says it does): unavailable too.
      agent.sandboxes.delete(id);
      const lost = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/small" },
      });
      assert.equal(lost.status, 502, await lost.clone().text());
    } finally {
      await h.close();
    }
  },
);

test("a sandbox stopping or pausing meanwhile answers 409, not the host's 502", async () => {
  const h = await startHarness("pglite");
  try {
    const [agent] = h.agents;
    assert.ok(agent);
    const create = async () =>
      String(
        ((await (await h.api("/v1/sandboxes", { method: "POST", json: {} })).json()) as Json)
          .sandbox_id,
      );
    // The VM is gone at once, the agent answers 500 ms later, the row changes after that.
    agent.stopDelayMs = 500;
    for (const [action, stop] of [
      ["destroy", (id: string) => h.api(`/v1/sandboxes/${id}`, { method: "DELETE" })],
      ["pause", (id: string) => h.api(`/v1/sandboxes/${id}/pause`, { method: "POST" })],
    ] as const) {
      const id = await create();
      agent.files.set(`${id}:/f`, Buffer.from("x"));
      const stopping = stop(id);
      await until("the VM to go", () => !agent.sandboxes.has(id));
      const read = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/f" },
      });
      const write = await h.api(`/v1/sandboxes/${id}/files/write?path=/g`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: "y",
      });
      for (const [what, res] of [
        ["read", read],
        ["write", write],
      ] as const) {
        const text = await res.text();
        assert.equal(res.status, 409, `${action}, ${what}: ${text}`);
        assert.match(text, /failed_precondition.*being stopped or paused/, `${action}, ${what}`);
      }
      assert.ok((await stopping).ok);
      // Once the row says so, the usual answer.
      const after = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/f" },
      });
      assert.equal(after.status, 409);
      assert.match(await after.text(), action === "pause" ? /it is paused/ : /it is stopped/);
    }
  } finally {
    await h.close();
  }
});
