/**
 * The dashboard's side of the control plane: the static build served at `/`,
 * `/dashboard/*`, `/test` and `/assets/*` without shadowing E2B's root API
 * or /v1; and the /v1 routes the dashboard added (terminal WebSocket,
 * directory listing, mkdir, delete, metrics) against a real agent and VM.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { startPlatform } from "./dashboard-platform.ts";
import { realAgentSkipReason, startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

test(
  "dashboard routes answer HTML; E2B's and /v1 paths still answer JSON",
  { timeout: 60_000 },
  async () => {
    const dist = await mkdtemp(join(tmpdir(), "wrenn-web-dist-"));
    await mkdir(join(dist, "assets"));
    await writeFile(join(dist, "index.html"), "<!doctype html><title>Wrenn</title><div id=root>");
    await writeFile(join(dist, "assets", "app-1234.js"), "console.log('x')");
    await writeFile(join(dist, "secret.txt"), "not an asset");
    process.env.WRENN_WEB_DIST = dist;
    const h = await startHarness("pglite", { agents: 0 });
    try {
      for (const path of [
        "/",
        "/dashboard",
        "/dashboard/sandboxes",
        "/dashboard/sandboxes/abc",
        "/test",
      ]) {
        const res = await fetch(`${h.cp.url}${path}`);
        assert.equal(res.status, 200, path);
        assert.match(res.headers.get("content-type") ?? "", /^text\/html/, path);
        assert.match(await res.text(), /<title>Wrenn<\/title>/, path);
      }
      const asset = await fetch(`${h.cp.url}/assets/app-1234.js`, {
        headers: { "accept-encoding": "gzip" },
      });
      assert.equal(asset.status, 200);
      assert.match(asset.headers.get("content-type") ?? "", /javascript/);
      assert.match(asset.headers.get("cache-control") ?? "", /immutable/);
      assert.equal(await asset.text(), "console.log('x')");
      for (const path of [
        "/assets/missing.js",
        "/assets/%2e%2e/secret.txt",
        "/assets/..%2fsecret.txt",
      ]) {
        const res = await fetch(`${h.cp.url}${path}`);
        assert.equal(res.status, 404, path);
        assert.doesNotMatch(await res.text(), /not an asset/, path);
      }
      // E2B's root paths and /v1 are the API's, never the dashboard's HTML.
      for (const path of [
        "/sandboxes",
        "/v2/sandboxes",
        "/templates",
        "/snapshots",
        "/teams",
        "/health",
        "/v1/sandboxes",
        "/v1/nope",
        "/nope",
      ]) {
        const res = await fetch(`${h.cp.url}${path}`);
        assert.match(
          res.headers.get("content-type") ?? "",
          /application\/json/,
          `${path} → ${res.status}`,
        );
      }
      const doc = (await (await fetch(`${h.cp.url}/openapi.json`)).json()) as { paths: Json };
      for (const p of [
        "/v1/sandboxes/{id}/terminal",
        "/v1/sandboxes/{id}/files/list",
        "/v1/sandboxes/{id}/files/mkdir",
        "/v1/sandboxes/{id}/files/remove",
        "/v1/sandboxes/{id}/metrics",
      ]) {
        assert.ok(p in doc.paths, `${p} is in the OpenAPI document`);
      }
      // Bad input at the new routes is a 400 in the API's shape, before any sandbox lookup.
      const bad = await h.api("/v1/sandboxes/abc/files/list");
      assert.equal(bad.status, 400);
      assert.equal(
        ((await bad.json()) as { error: { code: string } }).error.code,
        "invalid_argument",
      );
    } finally {
      await h.close();
      delete process.env.WRENN_WEB_DIST;
      await rm(dist, { recursive: true, force: true });
    }
  },
);

test("without a build, / explains how to build the dashboard", { timeout: 60_000 }, async () => {
  const dist = await mkdtemp(join(tmpdir(), "wrenn-web-none-"));
  process.env.WRENN_WEB_DIST = dist;
  const h = await startHarness("pglite", { agents: 0 });
  try {
    const res = await fetch(`${h.cp.url}/`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /npm run build -w @wrenn\/web/);
  } finally {
    await h.close();
    delete process.env.WRENN_WEB_DIST;
    await rm(dist, { recursive: true, force: true });
  }
});

/** A terminal client: collects the output and the JSON events. */
function openTerminal(url: string) {
  const ws = new WebSocket(url);
  let text = "";
  const events: Json[] = [];
  ws.on("message", (data, isBinary) => {
    if (isBinary) text += Buffer.from(data as Buffer).toString("utf8");
    else events.push(JSON.parse(String(data)) as Json);
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => reject(new Error(`${res.statusCode} ${body}`)));
    });
  });
  async function until(what: string, fn: () => boolean, ms = 30_000) {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end)
        throw new Error(
          `timed out waiting for ${what}; output: ${JSON.stringify(text.slice(-500))}; events: ${JSON.stringify(events)}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    ws,
    opened,
    events,
    output: () => text,
    until,
    type: (s: string) => ws.send(Buffer.from(s), { binary: true }),
    close: () =>
      new Promise<void>((r) => {
        ws.once("close", () => r());
        ws.close();
      }),
  };
}

test(
  "terminal, file listing, mkdir, delete and metrics through a real agent and VM",
  { skip: realAgentSkipReason("dashboard API test"), timeout: 900_000 },
  async () => {
    const p = await startPlatform("wdt");
    const { h } = p;
    try {
      const created = await h.api("/v1/sandboxes", { method: "POST", json: { timeout_sec: 600 } });
      assert.equal(created.status, 201, await created.clone().text());
      const id = String(((await created.json()) as Json).sandbox_id);
      const ws = (pid: number) =>
        `${h.cp.url.replace(/^http/, "ws")}/v1/sandboxes/${id}/terminal?token=${h.token}&pid=${pid}&cols=100&rows=30`;

      // A wrong session is refused before the upgrade, in the API's shape.
      const refused = openTerminal(
        `${h.cp.url.replace(/^http/, "ws")}/v1/sandboxes/${id}/terminal?token=nope`,
      );
      await assert.rejects(refused.opened, /401/);

      const t = openTerminal(ws(0));
      await t.opened;
      await t.until("the start event", () => t.events.some((e) => e.type === "start"));
      const pid = Number(t.events.find((e) => e.type === "start")?.pid);
      assert.ok(pid > 0);
      t.type("echo hi-$((40+2))\r");
      await t.until("hi-42", () => t.output().includes("hi-42"));
      t.type("export MARK=kept\r");
      t.ws.send(JSON.stringify({ type: "resize", cols: 120, rows: 40 }));
      t.type("stty size\r");
      await t.until("the new size", () => t.output().includes("40 120"));
      await t.close();

      // The shell outlives the socket: reattach by pid and find its variable.
      const again = openTerminal(ws(pid));
      await again.opened;
      await again.until("the start event", () => again.events.some((e) => e.type === "start"));
      assert.equal(again.events.find((e) => e.type === "start")?.pid, pid);
      again.type("echo mark=$MARK\r");
      await again.until("mark=kept", () => again.output().includes("mark=kept"));
      // Ctrl-C interrupts a running command and the shell answers again.
      again.type("sleep 100\r");
      await new Promise((r) => setTimeout(r, 500));
      again.type("\x03");
      again.type("echo after-$((1+1))\r");
      await again.until("after-2", () => again.output().includes("after-2"));
      // Pause ends the stream; after a resume the same shell is still there.
      assert.equal((await h.api(`/v1/sandboxes/${id}/pause`, { method: "POST" })).status, 200);
      await again.until(
        "the socket to close",
        () => again.ws.readyState === WebSocket.CLOSED,
        60_000,
      );
      assert.equal((await h.api(`/v1/sandboxes/${id}/resume`, { method: "POST" })).status, 200);
      const resumed = openTerminal(ws(pid));
      await resumed.opened;
      resumed.type("echo resumed=$MARK\r");
      await resumed.until("resumed=kept", () => resumed.output().includes("resumed=kept"), 60_000);
      resumed.type("exit\r");
      await resumed.until("the end event", () => resumed.events.some((e) => e.type === "end"));
      // The shell is gone now: reattaching says so (its end again, or not_found once envd forgot it).
      const gone = openTerminal(ws(pid));
      await gone.opened;
      await gone.until("an end or error", () =>
        gone.events.some((e) => e.type === "end" || e.type === "error"),
      );
      const last = gone.events.at(-1);
      assert.ok(last?.type === "end" || last?.code === "not_found", JSON.stringify(gone.events));

      // Files: mkdir, list, delete.
      const mk = await h.api(`/v1/sandboxes/${id}/files/mkdir`, {
        method: "POST",
        json: { path: "/tmp/dash/sub dir" },
      });
      assert.equal(mk.status, 204, await mk.clone().text());
      const form = new FormData();
      form.set("path", "/tmp/dash/a\tb.txt");
      form.set("file", new Blob(["12345"]));
      assert.equal(
        (await h.api(`/v1/sandboxes/${id}/files/write`, { method: "POST", body: form })).status,
        200,
      );
      const list = await h.api(`/v1/sandboxes/${id}/files/list?path=/tmp/dash`);
      assert.equal(list.status, 200, await list.clone().text());
      const entries = (await list.json()) as Json[];
      assert.deepEqual(
        entries.map((e) => [e.name, e.type, e.type === "file" ? e.size : null, e.path]),
        [
          ["sub dir", "dir", null, "/tmp/dash/sub dir"],
          ["a\tb.txt", "file", 5, "/tmp/dash/a\tb.txt"],
        ],
      );
      const missing = await h.api(`/v1/sandboxes/${id}/files/list?path=/nope`);
      assert.equal(missing.status, 404);
      const notDir = await h.api(
        `/v1/sandboxes/${id}/files/list?path=${encodeURIComponent("/tmp/dash/a\tb.txt")}`,
      );
      assert.equal(notDir.status, 400);
      const rmRoot = await h.api(`/v1/sandboxes/${id}/files/remove`, {
        method: "POST",
        json: { path: "//" },
      });
      assert.equal(rmRoot.status, 400);
      const del = await h.api(`/v1/sandboxes/${id}/files/remove`, {
        method: "POST",
        json: { path: "/tmp/dash" },
      });
      assert.equal(del.status, 204);
      assert.equal((await h.api(`/v1/sandboxes/${id}/files/list?path=/tmp/dash`)).status, 404);
      const delMissing = await h.api(`/v1/sandboxes/${id}/files/remove`, {
        method: "POST",
        json: { path: "/tmp/dash" },
      });
      assert.equal(delMissing.status, 404);

      // Metrics: samples once the agent has taken some (it samples every few seconds).
      const metrics = await h.api(`/v1/sandboxes/${id}/metrics`);
      assert.equal(metrics.status, 200, await metrics.clone().text());
      assert.ok(Array.isArray(await metrics.json()));
    } finally {
      await p.close();
    }
  },
);
