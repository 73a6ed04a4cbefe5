import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startHarness } from "./harness.ts";

type Json = Record<string, unknown>;

function multipart(
  boundary: string,
  path: string | null,
  size: number,
  chunk = 1 << 20,
): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let sent = 0;
  let stage = 0;
  const block = new Uint8Array(chunk).fill(0x61);
  return new ReadableStream({
    pull(ctrl) {
      if (stage === 0) {
        const field =
          path === null
            ? ""
            : `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n${path}\r\n`;
        ctrl.enqueue(
          enc.encode(
            `${field}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\nContent-Type: application/octet-stream\r\n\r\n`,
          ),
        );
        stage = 1;
      } else if (sent < size) {
        const n = Math.min(chunk, size - sent);
        ctrl.enqueue(n === chunk ? block : block.subarray(0, n));
        sent += n;
      } else {
        ctrl.enqueue(enc.encode(`\r\n--${boundary}--\r\n`));
        ctrl.close();
      }
    },
  });
}

test("files stream end to end; WebSocket exec streams events", async () => {
  const h = await startHarness("pglite");
  try {
    const id = String(
      ((await (await h.api("/v1/sandboxes", { method: "POST", json: {} })).json()) as Json)
        .sandbox_id,
    );
    const agent = h.agents[0]!;

    // Small file: write with FormData, read back the bytes.
    const form = new FormData();
    form.set("path", "/home/user/hello.txt");
    form.set("file", new Blob(["hello wrenn"]), "hello.txt");
    const w = await h.api(`/v1/sandboxes/${id}/files/write`, { method: "POST", body: form });
    assert.equal(w.status, 200, await w.clone().text());
    assert.deepEqual(await w.json(), { path: "/home/user/hello.txt", size: 11 });
    const r = await h.api(`/v1/sandboxes/${id}/files/read`, {
      method: "POST",
      json: { path: "/home/user/hello.txt" },
    });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "hello wrenn");
    const missing = await h.api(`/v1/sandboxes/${id}/files/read`, {
      method: "POST",
      json: { path: "/nope" },
    });
    assert.equal(missing.status, 404);
    const noPath = await h.api(`/v1/sandboxes/${id}/files/write`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=b" },
      body: multipart("b", null, 10),
      duplex: "half",
    } as RequestInit);
    assert.equal(noPath.status, 400);

    // 8 MiB round trip, read in chunks.
    const eight = 8 << 20;
    const w8 = await h.api(`/v1/sandboxes/${id}/files/write?path=/big`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=b" },
      body: multipart("b", null, eight),
      duplex: "half",
    } as RequestInit);
    assert.deepEqual(await w8.json(), { path: "/big", size: eight });
    const r8 = await h.api(`/v1/sandboxes/${id}/files/read`, {
      method: "POST",
      json: { path: "/big" },
    });
    let got = 0;
    for await (const c of r8.body as unknown as AsyncIterable<Uint8Array>) got += c.length;
    assert.equal(got, eight);

    // 256 MiB upload: memory stays flat because nothing buffers the file.
    const size = 256 << 20;
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const big = await h.api(`/v1/sandboxes/${id}/files/write`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=zz" },
      body: multipart("zz", "/huge", size),
      duplex: "half",
    } as RequestInit);
    clearInterval(sampler);
    assert.deepEqual(await big.json(), { path: "/huge", size });
    const grew = (peak - before) / (1 << 20);
    console.log(
      `256 MiB upload: RSS grew ${grew.toFixed(0)} MiB, largest chunk to the agent ${agent.maxChunk} bytes`,
    );
    assert.ok(grew < 128, `RSS grew ${grew.toFixed(0)} MiB during a 256 MiB upload`);

    // WebSocket exec stream.
    const events = await new Promise<Json[]>((resolve, reject) => {
      const ws = new WebSocket(`${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream`, {
        headers: { "x-api-key": h.key },
      });
      const got: Json[] = [];
      ws.on("open", () => ws.send(JSON.stringify({ cmd: "echo", args: ["a", "b"] })));
      ws.on("message", (m) => got.push(JSON.parse(String(m)) as Json));
      ws.on("close", () => resolve(got));
      ws.on("error", reject);
    });
    assert.deepEqual(events, [
      { type: "start", pid: 42 },
      { type: "stdout", data: Buffer.from("a").toString("base64") },
      { type: "stdout", data: Buffer.from("b").toString("base64") },
      { type: "end", exit_code: 0, error: "" },
    ]);
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream`);
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("error", () => {});
    });
    assert.equal(refused, 401);
    const badFirst = await new Promise<Json[]>((resolve) => {
      const ws = new WebSocket(
        `${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream?token=${h.token}`,
      );
      const got: Json[] = [];
      ws.on("open", () => ws.send("{nope"));
      ws.on("message", (m) => got.push(JSON.parse(String(m)) as Json));
      ws.on("close", () => resolve(got));
    });
    assert.equal(badFirst[0]?.type, "error");
    assert.equal(badFirst[0]?.code, "invalid_argument");
  } finally {
    await h.close();
  }
});
