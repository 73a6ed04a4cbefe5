import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import WebSocket from "ws";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

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

for (const kind of DATABASES)
  test(`files stream end to end; WebSocket exec streams events (${kind})`, async () => {
    const h = await startHarness(kind);
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
      // The file's bytes as the body, its path in the query: sent on to envd as they are.
      const rawWrite = (query: string, body: string, type = "application/octet-stream") =>
        h.api(`/v1/sandboxes/${id}/files/write${query}`, {
          method: "POST",
          headers: { "content-type": type },
          body,
        });
      const rw = await rawWrite("?path=/home/user/raw.bin", "raw bytes");
      assert.deepEqual(await rw.json(), { path: "/home/user/raw.bin", size: 9 });
      const rr = await h.api(`/v1/sandboxes/${id}/files/read`, {
        method: "POST",
        json: { path: "/home/user/raw.bin" },
      });
      assert.equal(await rr.text(), "raw bytes");
      // An encoded body would be written as sent: refused.
      for (const [type, encoding, why] of [
        ["application/octet-stream", "gzip", /Content-Encoding 'gzip' is not supported/],
        ["multipart/form-data; boundary=b", "br", /Content-Encoding 'br' is not supported/],
      ] as const) {
        const res = await h.api(`/v1/sandboxes/${id}/files/write?path=/enc`, {
          method: "POST",
          headers: { "content-type": type, "content-encoding": encoding },
          body: "x",
        });
        const { error } = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(res.status, 400, JSON.stringify(error));
        assert.match(error.message, why);
      }
      assert.equal(agent.written.has(`${id}:/enc`), false, "a refused body is not a file");
      for (const [query, type, why] of [
        ["", "application/octet-stream", /pass \?path=/],
        ["?path=/t.txt", "text/plain", /application\/octet-stream with \?path=/],
        ["?path=a%00b", "application/octet-stream", /bad path/],
      ] as const) {
        const res = await rawWrite(query, "x", type);
        const { error } = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(res.status, 400, JSON.stringify(error));
        assert.equal(error.code, "invalid_argument");
        assert.match(error.message, why);
      }
      assert.equal(agent.written.has(`${id}:/t.txt`), false, "a refused body is not a file");
      const noPath = await h.api(`/v1/sandboxes/${id}/files/write`, {
        method: "POST",
        headers: { "content-type": "multipart/form-data; boundary=b" },
        body: multipart("b", null, 10),
        duplex: "half",
      } as RequestInit);
      assert.equal(noPath.status, 400);
      // Bodies the control plane refuses while it forwards them, each with a message.
      const raw = (fields: string) => fields.replaceAll("|", "\r\n").replaceAll("{B}", "--q");
      const refusedUpload = async (body: string, query = "", why: RegExp) => {
        const res = await h.api(`/v1/sandboxes/${id}/files/write${query}`, {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=q" },
          body,
        });
        const { error: answer } = (await res.json()) as {
          error: { code: string; message: string };
        };
        assert.equal(res.status, 400, JSON.stringify(answer));
        assert.equal(answer.code, "invalid_argument");
        assert.match(answer.message, why);
      };
      const filePart = 'Content-Disposition: form-data; name="file"; filename="f"||';
      await refusedUpload(
        raw(`{B}|${filePart}one|{B}|${filePart}two|{B}--|`),
        "?path=/two-parts",
        /one `file` part/,
      );
      assert.equal(agent.written.has(`${id}:/two-parts`), false, "a refused body is not a file");
      await refusedUpload(
        raw(
          `{B}|Content-Disposition: form-data; name="path"||${"x".repeat(9000)}|{B}|${filePart}x|{B}--|`,
        ),
        "",
        /`path` field is over 8192 bytes/,
      );
      await refusedUpload(
        raw(
          `{B}|Content-Disposition: form-data; name="note"||${"x".repeat(300_000)}|{B}|${filePart}x|{B}--|`,
        ),
        "?path=/late",
        /first 64 KiB/,
      );
      await refusedUpload(
        raw(`{B}|Content-Disposition: form-data; name="path"||/p|{B}--|`),
        "",
        /no `file` part/,
      );
      await refusedUpload(raw(`{B}|${filePart}cut short`), "?path=/cut-short", /closing boundary/);
      await refusedUpload(
        raw(
          `{B}|Content-Disposition: form-data; name="user"||${"u".repeat(65)}|{B}|${filePart}x|{B}--|`,
        ),
        "?path=/u",
        /bad user/,
      );

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

      // The agent gets the upload in chunks as it arrives (1 GiB in bounded memory: large-files.test.ts).
      assert.ok(agent.maxChunk > 0 && agent.maxChunk <= 1 << 20, `largest chunk ${agent.maxChunk}`);

      // WebSocket exec stream.
      const events = await new Promise<Json[]>((resolve, reject) => {
        const ws = new WebSocket(
          `${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream`,
          {
            headers: { "x-api-key": h.key },
          },
        );
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
        const ws = new WebSocket(
          `${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream`,
        );
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

async function until(what: string, probe: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function newSandbox(h: Harness): Promise<string> {
  const res = await h.api("/v1/sandboxes", { method: "POST", json: {} });
  assert.equal(res.status, 201);
  return String(((await res.json()) as Json).sandbox_id);
}

const wsUrl = (h: Harness, id: string, query = "") =>
  `${h.cp.url.replace("http", "ws")}/v1/sandboxes/${id}/exec/stream${query}`;

test("a client that goes away ends the agent's side: upload, download, exec stream", async () => {
  const h = await startHarness("pglite");
  try {
    const id = await newSandbox(h);
    const agent = h.agents[0]!;

    // An upload cut off mid-way, multipart or raw: the agent's hop sees its
    // body end short, nothing is written.
    const block = new Uint8Array(1 << 20).fill(0x61);
    const raw = (blocks: number) =>
      new ReadableStream<Uint8Array>({
        pull: (ctrl) => (blocks-- > 0 ? ctrl.enqueue(block) : ctrl.close()),
      });
    for (const [query, type, body] of [
      ["", "multipart/form-data; boundary=cut", multipart("cut", "/cut", 1 << 30)],
      ["?path=/cut", "application/octet-stream", raw(1024)],
    ] as const) {
      const upload = new AbortController();
      const res = h
        .api(`/v1/sandboxes/${id}/files/write${query}`, {
          method: "POST",
          headers: { "content-type": type },
          body,
          duplex: "half",
          signal: upload.signal,
        } as RequestInit)
        .catch((err: unknown) => err);
      await until("the upload to reach the agent", () => agent.active.writes === 1, 10_000);
      upload.abort();
      assert.ok((await res) instanceof Error, "the aborted upload has no response");
      await until("the agent's write stream to end", () => agent.active.writes === 0);
      assert.equal(
        agent.written.has(`${id}:/cut`),
        false,
        `a cut-off ${type} upload is not a file`,
      );
    }

    // A download the client stops reading: the agent's hop read is ended.
    agent.generated.set(`${id}:/gen`, 1 << 30);
    const download = new AbortController();
    const read = await h.api(`/v1/sandboxes/${id}/files/read`, {
      method: "POST",
      json: { path: "/gen" },
      signal: download.signal,
    });
    assert.equal(read.status, 200);
    const reader = read.body!.getReader();
    let got = 0;
    while (got < 4 << 20) got += (await reader.read()).value?.length ?? 0;
    assert.equal(agent.active.reads, 1);
    download.abort();
    await until("the agent's read stream to end", () => agent.active.reads === 0);

    // An exec stream whose socket closes: the command is cancelled on the agent.
    const ws = new WebSocket(wsUrl(h, id), { headers: { "x-api-key": h.key } });
    const started = new Promise<void>((resolve, reject) => {
      ws.on("message", (m) => {
        if ((JSON.parse(String(m)) as Json).type === "start") resolve();
      });
      ws.on("error", reject);
    });
    ws.on("open", () => ws.send(JSON.stringify({ cmd: "hang" })));
    await started;
    await until("the command to run", () => agent.active.execs === 1);
    ws.close();
    await until("the agent's exec stream to end", () => agent.active.execs === 0);

    // And the sandbox still answers.
    const exec = await h.api(`/v1/sandboxes/${id}/exec`, { method: "POST", json: { cmd: "true" } });
    assert.equal(exec.status, 200);
  } finally {
    await h.close();
  }
});

interface Refusal {
  status: number;
  body: { error?: { code?: string; message?: string } };
}

/** A handshake the server refuses: its status and JSON body. */
function refusal(url: string, headers: Record<string, string> = {}): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    ws.on("open", () => {
      ws.close();
      reject(new Error(`${url} opened`));
    });
    ws.on("error", () => {});
  });
}

/** Opens a stream, sends one message, collects the events and the close code. */
function conversation(
  url: string,
  message: string | Buffer,
  headers: Record<string, string>,
  binary = Buffer.isBuffer(message),
): Promise<{ events: Json[]; code: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const events: Json[] = [];
    ws.on("open", () => ws.send(message, { binary }));
    ws.on("message", (m) => events.push(JSON.parse(String(m)) as Json));
    ws.on("close", (code) => resolve({ events, code }));
    ws.on("error", reject);
  });
}

function rawUpgrade(url: string, headers: Record<string, string>): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers });
    req.on("upgrade", () => reject(new Error("upgraded")));
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("the exec WebSocket answers malformed handshakes and messages in the error shape", async () => {
  const h = await startHarness("pglite");
  try {
    const id = await newSandbox(h);
    const paused = await newSandbox(h);
    await h.api(`/v1/sandboxes/${paused}/pause`, { method: "POST" });
    const other = await h.api("/v1/auth/signup", {
      method: "POST",
      key: null,
      json: { email: "ws-other@example.com", password: "a long password" },
    });
    const otherToken = ((await other.json()) as { token: string }).token;
    const key = { "x-api-key": h.key };
    const base = h.cp.url.replace("http", "ws");

    const refusals: Array<[string, Promise<Refusal>, number, string]> = [
      ["no credentials", refusal(wsUrl(h, id)), 401, "unauthenticated"],
      ["a malformed key", refusal(wsUrl(h, id), { "x-api-key": "wrn_x" }), 401, "unauthenticated"],
      ["a forged session", refusal(wsUrl(h, id, "?token=eyJ.x.y")), 401, "unauthenticated"],
      ["an id in capitals", refusal(wsUrl(h, "ABC"), key), 404, "not_found"],
      ["an unknown sandbox", refusal(wsUrl(h, "nosuchsandbox"), key), 404, "not_found"],
      ["another team's sandbox", refusal(wsUrl(h, id, `?token=${otherToken}`)), 404, "not_found"],
      ["a paused sandbox", refusal(wsUrl(h, paused), key), 409, "failed_precondition"],
      ["another path", refusal(`${base}/v1/sandboxes`, key), 404, "not_found"],
      [
        "an upgrade that is not a WebSocket",
        rawUpgrade(wsUrl(h, id).replace("ws", "http"), {
          ...key,
          connection: "upgrade",
          upgrade: "websocket",
        }),
        400,
        "invalid_argument",
      ],
    ];
    for (const [what, pending, status, code] of refusals) {
      const r = await pending;
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code, code, what);
      assert.equal(typeof r.body.error?.message, "string", what);
    }
    // A plain GET (no upgrade) is no route.
    const plain = await h.api(`/v1/sandboxes/${id}/exec/stream`);
    assert.equal(plain.status, 404);
    assert.equal(((await plain.json()) as Refusal["body"]).error?.code, "not_found");

    const messages: Array<[string, string | Buffer]> = [
      ["not JSON", "{nope"],
      ["a binary frame", Buffer.from(JSON.stringify({ cmd: "echo" }))],
      ["JSON null", "null"],
      ["a JSON array", "[]"],
      ["no cmd", "{}"],
      ["a number for cmd", JSON.stringify({ cmd: 1 })],
      ["NUL in cmd", JSON.stringify({ cmd: "ec\u0000ho" })],
      ["a negative timeout", JSON.stringify({ cmd: "echo", timeout_sec: -1 })],
      ["1.5 MiB", JSON.stringify({ cmd: "echo", args: ["x".repeat(3 << 19)] })],
    ];
    for (const [what, message] of messages) {
      const { events, code } = await conversation(wsUrl(h, id), message, key);
      assert.equal(events.length, 1, `${what}: ${JSON.stringify(events)}`);
      assert.equal(events[0]?.type, "error", what);
      assert.equal(events[0]?.code, "invalid_argument", what);
      assert.equal(events[0]?.status, 400, what);
      assert.equal(typeof events[0]?.message, "string", what);
      assert.equal(code, 1011, what);
    }
    // Past 4 MiB the WebSocket layer itself closes with 1009 (message too big).
    const huge = await conversation(wsUrl(h, id), "x".repeat(5 << 20), key);
    assert.equal(huge.code, 1009);
    // A text frame that is not UTF-8: 1007; either way the server lives on.
    const latin = await conversation(wsUrl(h, id), Buffer.from([0x7b, 0xff, 0x7d]), key, false);
    assert.equal(latin.code, 1007);

    // The agent's own failures come as error events with their status.
    const failed = await conversation(
      wsUrl(h, id),
      JSON.stringify({ cmd: "echo", args: ["a"] }),
      key,
    );
    assert.equal(failed.events.at(-1)?.type, "end");
    h.agents[0]!.sandboxes.delete(id);
    const gone = await conversation(wsUrl(h, id), JSON.stringify({ cmd: "echo" }), key);
    assert.deepEqual(
      gone.events.map((e) => [e.type, e.code, e.status]),
      [["error", "not_found", 404]],
    );
  } finally {
    await h.close();
  }
});
