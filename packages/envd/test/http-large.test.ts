// 1 GiB through /files in both directions with envd in its own process, so
// its memory can be read from /proc: uploads and downloads must stream.
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { request } from "node:http";
import { join, resolve } from "node:path";
import { streamUpload } from "@wrenn/shared/testing/streams.ts";
import { tempDir } from "./filesystem-fixtures.ts";
import { spawnEnvd } from "./spawn-envd.ts";

const GiB = 1 << 30;
const MAX_GROWTH = 64 << 20;
const repo = resolve(import.meta.dirname, "../../..");

/** envd from source in its own process (SIGKILLed when the test ends). */
async function startEnvdProcess(t: TestContext): Promise<{ pid: number; url: string }> {
  const { child, url } = await spawnEnvd(t, join(repo, "packages/envd/src/main.ts"), undefined, {
    env: { ...process.env, WRENN_LOG_LEVEL: "info" },
  });
  return { pid: child.pid ?? 0, url };
}

async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

function download(url: string): Promise<{ sha: string; bytes: number }> {
  return new Promise((resolvePromise, reject) => {
    request(url, (res) => {
      if (res.statusCode !== 200) reject(new Error(`download answered ${res.statusCode}`));
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.on("end", () => resolvePromise({ sha: hash.digest("hex"), bytes }));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

describe("/files with 1 GiB", () => {
  test("octet-stream upload and download stream: envd grows by less than 64 MiB", async (t) => {
    const dir = await tempDir(t, "wrenn-large-");
    const envd = await startEnvdProcess(t);
    const path = join(dir, "big.bin");
    const url = `${envd.url}/files?path=${encodeURIComponent(path)}`;
    // Warm up so lazily loaded code is not counted as growth.
    await streamUpload(url, { "content-type": "application/octet-stream" }, 4 << 20);
    await download(url);
    const before = await memory(envd.pid);

    const up = await streamUpload(url, { "content-type": "application/octet-stream" }, GiB);
    assert.equal(up.status, 200, up.body);
    assert.equal((await stat(path)).size, GiB);
    const down = await download(url);
    assert.equal(down.bytes, GiB);
    assert.equal(down.sha, up.sha, "downloaded bytes equal uploaded bytes");

    const after = await memory(envd.pid);
    const growth = after.hwm - before.rss;
    console.log(
      `envd RSS before ${before.rss >> 20} MiB, peak after 1 GiB up+down ${after.hwm >> 20} MiB`,
    );
    assert.ok(growth < MAX_GROWTH, `envd grew by ${growth >> 20} MiB moving 1 GiB (limit 64)`);
  });

  test("multipart upload streams too", async (t) => {
    const dir = await tempDir(t, "wrenn-large-");
    const envd = await startEnvdProcess(t);
    const path = join(dir, "multi.bin");
    const boundary = "wrenn-large-boundary";
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${path}"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const headers = { "content-type": `multipart/form-data; boundary=${boundary}` };
    await streamUpload(`${envd.url}/files`, headers, 4 << 20, head, tail);
    const before = await memory(envd.pid);
    const up = await streamUpload(`${envd.url}/files`, headers, GiB, head, tail);
    assert.equal(up.status, 200, up.body);
    assert.equal((await stat(path)).size, GiB);
    const after = await memory(envd.pid);
    const growth = after.hwm - before.rss;
    console.log(
      `envd RSS before ${before.rss >> 20} MiB, peak after 1 GiB multipart ${after.hwm >> 20} MiB`,
    );
    assert.ok(
      growth < MAX_GROWTH,
      `envd grew by ${growth >> 20} MiB on a 1 GiB multipart upload (limit 64)`,
    );
  });
});
