// The upload paths of POST /files for large bodies: a Content-Length body
// read off the socket past Node's parser (raw and multipart), the
// multipart splitter, and BlockWriter's blocks and O_DIRECT writes.
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runCommand } from "@wrenn/shared/command.ts";
import { BLOCK, BlockWriter } from "../src/http/block-writer.ts";
import { boundaryOf, MultipartSplitter, partInfo } from "@wrenn/shared/multipart.ts";
import type { Envd } from "../src/server.ts";
import { startHostEnvd } from "./host-envd.ts";
import { eventually, tempDir } from "./filesystem-fixtures.ts";

const MiB = 1 << 20;

async function setup(t: TestContext): Promise<{ envd: Envd; dir: string; port: number }> {
  const dir = await tempDir(t, "wrenn-upload-");
  const envd = await startHostEnvd(t);
  return { envd, dir, port: Number(new URL(envd.url).port) };
}

interface Answer {
  status: number;
  headers: string;
  body: string;
}

/**
 * A raw HTTP/1.1 POST whose body goes out in pieces of the given sizes
 * (cycled), with a pause now and then, so reads on envd's side end at odd
 * places. `stopAfter` sends only that many body bytes, then resets.
 */
function post(
  port: number,
  path: string,
  headers: Record<string, string | number>,
  body: Buffer,
  pieces: number[],
  stopAfter?: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    const head =
      `POST ${path} HTTP/1.1\r\nHost: envd\r\n` +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("") +
      "\r\n";
    const got: Buffer[] = [];
    sock.on("data", (d: Buffer) => got.push(d));
    sock.on("error", (err) => (stopAfter === undefined ? reject(err) : resolve(answer())));
    const answer = (): Answer => {
      const text = Buffer.concat(got).toString();
      const split = text.indexOf("\r\n\r\n");
      return {
        status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0),
        headers: text.slice(0, split).toLowerCase(),
        body: text.slice(split + 4),
      };
    };
    sock.on("close", () => resolve(answer()));
    sock.once("connect", async () => {
      sock.write(head);
      const end = stopAfter ?? body.length;
      for (let at = 0, i = 0; at < end; i++) {
        const n = Math.min(pieces[i % pieces.length]!, end - at);
        if (!sock.write(body.subarray(at, at + n))) await new Promise((r) => sock.once("drain", r));
        at += n;
        if (i % 50 === 7) await sleep(1);
      }
      if (stopAfter !== undefined) {
        await sleep(50);
        sock.resetAndDestroy();
      }
    });
  });
}

/** Descriptors this process holds open on `path`. */
async function openOn(path: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target === path || target === `${path} (deleted)`) n++;
  }
  return n;
}

function multipart(
  boundary: string,
  parts: { headers: string; data: Buffer }[],
  preamble = "",
  epilogue = "",
): Buffer {
  const out: Buffer[] = [Buffer.from(preamble)];
  for (const [i, p] of parts.entries()) {
    out.push(
      Buffer.from(
        `${i === 0 && preamble === "" ? "" : "\r\n"}--${boundary}\r\n${p.headers}\r\n\r\n`,
      ),
    );
    out.push(p.data);
  }
  out.push(Buffer.from(`\r\n--${boundary}--${epilogue}`));
  return Buffer.concat(out);
}

describe("POST /files: large bodies past the parser", () => {
  test("a raw Content-Length body lands whole, in place, and the connection closes", async (t) => {
    const f = await setup(t);
    const path = join(f.dir, "raw.bin");
    await writeFile(path, "old");
    const inode = (await stat(path)).ino;
    for (const size of [MiB, 3 * MiB + 5, 2 * BLOCK]) {
      const body = randomBytes(size);
      const res = await post(
        f.port,
        `/files?path=${encodeURIComponent(path)}`,
        { "content-type": "application/octet-stream", "content-length": size },
        body,
        [65_536, 1, 300_001, 7, 1_048_576 + 3],
      );
      assert.equal(res.status, 200, res.body);
      assert.match(res.headers, /connection: close/);
      assert.deepEqual(JSON.parse(res.body), [{ name: "raw.bin", type: "file", path }]);
      assert.ok((await readFile(path)).equals(body), `${size} bytes arrive unchanged`);
      assert.equal((await stat(path)).ino, inode, "written in place");
    }
    // curl sends `Expect: 100-continue` for bodies this large and waits for the 100.
    const body = randomBytes(2 * MiB + 1);
    await writeFile(join(f.dir, "src.bin"), body);
    const curl = await runCommand("curl", [
      "-sS",
      "--fail",
      "-X",
      "POST",
      "-T",
      join(f.dir, "src.bin"),
      "-H",
      "content-type: application/octet-stream",
      `${f.envd.url}/files?path=${encodeURIComponent(path)}`,
    ]);
    assert.match(curl.stdout, /raw\.bin/);
    assert.ok((await readFile(path)).equals(body), "curl's upload arrives unchanged");
    // Read back (O_DIRECT in blocks, the last one short) as it was written.
    const down = await fetch(`${f.envd.url}/files?path=${encodeURIComponent(path)}`);
    assert.ok(Buffer.from(await down.arrayBuffer()).equals(body), "the download gives it back");
    // Below a MiB the parser's path answers, and the connection stays.
    const small = randomBytes(MiB - 1);
    const res = await fetch(`${f.envd.url}/files?path=${encodeURIComponent(path)}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: small,
    });
    assert.equal(res.status, 200);
    assert.notEqual(res.headers.get("connection"), "close");
    assert.ok((await readFile(path)).equals(small));
    assert.equal(await openOn(path), 0, "no descriptor left on the file");
  });

  test("downloads read in O_DIRECT blocks of 1 and 4 MiB give every size back, the last block short", async (t) => {
    const f = await setup(t);
    for (const size of [MiB, 4 * MiB - 4095, 4 * MiB, 4 * MiB + 1, 9 * MiB + 4097]) {
      const path = join(f.dir, `down-${size}.bin`);
      const body = randomBytes(size);
      await writeFile(path, body);
      const res = await fetch(`${f.envd.url}/files?path=${encodeURIComponent(path)}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), String(size));
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(body), `${size} bytes come back`);
      assert.equal(await openOn(path), 0, "no descriptor left on the file");
    }
  });

  test("multipart: several parts, fields, preamble and boundaries across reads", async (t) => {
    const f = await setup(t);
    const boundary = "----wrenn-b0undary";
    // Data that nearly holds the delimiter, at the end of one piece and the start of the next.
    const tricky = Buffer.concat([
      randomBytes(MiB + 17),
      Buffer.from(`\r\n--${boundary.slice(0, -1)}X\r\n-`),
      randomBytes(2 * MiB),
    ]);
    const small = Buffer.from("second file");
    const body = multipart(
      boundary,
      [
        { headers: 'Content-Disposition: form-data; name="note"', data: Buffer.from("a field") },
        {
          headers: `Content-Disposition: form-data; name="file"; filename="${join(f.dir, "deep", "big.bin")}"\r\nContent-Type: application/octet-stream`,
          data: tricky,
        },
        {
          headers: `Content-Disposition: form-data; name="file"; filename*=UTF-8''${encodeURIComponent(join(f.dir, "zwei ü.txt"))}`,
          data: small,
        },
        {
          headers: 'Content-Disposition: form-data; name="other"; filename="/nope"',
          data: Buffer.from("skipped"),
        },
      ],
      "a preamble\r\n",
      "\r\nan epilogue",
    );
    for (const pieces of [[1_048_576], [4093, 1, 9, 65_536], [13, 100_003]]) {
      const res = await post(
        f.port,
        "/files",
        {
          "content-type": `multipart/form-data; boundary="${boundary}"`,
          "content-length": body.length,
        },
        body,
        pieces,
      );
      assert.equal(res.status, 200, res.body);
      assert.match(res.headers, /connection: close/);
      assert.deepEqual(
        (JSON.parse(res.body) as { path: string }[]).map((w) => w.path),
        [join(f.dir, "deep", "big.bin"), join(f.dir, "zwei ü.txt")],
      );
      assert.ok((await readFile(join(f.dir, "deep", "big.bin"))).equals(tricky));
      assert.ok((await readFile(join(f.dir, "zwei ü.txt"))).equals(small));
      assert.equal((await readdir(f.dir)).includes("nope"), false);
    }
  });

  test("multipart errors past the parser: 400 with the reason, the body read to its end", async (t) => {
    const f = await setup(t);
    const b = "bnd";
    const big = randomBytes(MiB + 3);
    const cases: [Buffer, RegExp][] = [
      // No closing boundary.
      [
        Buffer.concat([
          Buffer.from(
            `--${b}\r\nContent-Disposition: form-data; name="file"; filename="${join(f.dir, "x")}"\r\n\r\n`,
          ),
          big,
        ]),
        /ended before its closing boundary/,
      ],
      [
        multipart(b, [{ headers: 'Content-Disposition: form-data; name="note"', data: big }]),
        /no 'file' part/,
      ],
      [
        multipart(b, [
          {
            headers:
              'Content-Disposition: form-data; name="file"\r\nContent-Type: application/octet-stream',
            data: big,
          },
        ]),
        /no 'path' query parameter/,
      ],
      [
        multipart(b, [
          {
            headers: `Content-Disposition: form-data; name="file"; filename="${f.dir}"`,
            data: big,
          },
        ]),
        /is a directory/,
      ],
    ];
    for (const [body, why] of cases) {
      const res = await post(
        f.port,
        "/files",
        { "content-type": `multipart/form-data; boundary=${b}`, "content-length": body.length },
        body,
        [65_536],
      );
      assert.equal(res.status, 400, res.body);
      assert.match((JSON.parse(res.body) as { message: string }).message, why);
    }
    assert.equal(await openOn(join(f.dir, "x")), 0);
  });

  test("a client that goes away mid-upload leaves no descriptor open and envd serving", async (t) => {
    const f = await setup(t);
    const raw = join(f.dir, "gone.bin");
    const parted = join(f.dir, "gone-part.bin");
    const body = randomBytes(8 * MiB);
    await post(
      f.port,
      `/files?path=${encodeURIComponent(raw)}`,
      { "content-type": "application/octet-stream", "content-length": body.length },
      body,
      [65_536],
      3 * MiB + 11,
    );
    const form = multipart("b", [
      { headers: `Content-Disposition: form-data; name="file"; filename="${parted}"`, data: body },
    ]);
    await post(
      f.port,
      "/files",
      { "content-type": "multipart/form-data; boundary=b", "content-length": form.length },
      form,
      [65_536],
      2 * MiB + 5,
    );
    await eventually(
      async () => (await openOn(raw)) + (await openOn(parted)) === 0,
      5000,
      "envd to close the files of aborted uploads",
    );
    const res = await fetch(`${f.envd.url}/files?path=${encodeURIComponent(raw)}`, {
      method: "POST",
      body: "after",
    });
    assert.equal(res.status, 200);
    assert.equal(await readFile(raw, "utf8"), "after");
  });
});

describe("MultipartSplitter", () => {
  const boundary = "xyz";
  const parts = [
    {
      headers: 'Content-Disposition: form-data; name="file"; filename="a"',
      data: Buffer.from("\r\n--xy\r\n--xz\r\n-"),
    },
    { headers: 'Content-Disposition: form-data; name="file"; filename="b"', data: Buffer.alloc(0) },
    {
      headers: 'Content-Disposition: form-data; name="file"; filename="c"',
      data: randomBytes(300),
    },
  ];
  const body = multipart(boundary, parts, "", "--\r\n");

  function split(pieces: Buffer[]): Map<string, Buffer> {
    const out = new Map<string, Buffer[]>();
    let ends = 0;
    const s = new MultipartSplitter(boundary, (info) => {
      const got: Buffer[] = [];
      out.set(info.filename ?? "", got);
      return {
        write: (d) => (got.push(Buffer.from(d)), true),
        ready: () => Promise.resolve(),
        end: () => void ends++,
      };
    });
    for (const p of pieces) assert.equal(s.push(p), undefined);
    s.end();
    assert.equal(ends, parts.length);
    return new Map([...out].map(([k, v]) => [k, Buffer.concat(v)]));
  }

  test("every split of a body gives the same parts", () => {
    const want = new Map([
      ["a", parts[0]!.data],
      ["b", parts[1]!.data],
      ["c", parts[2]!.data],
    ]);
    assert.deepEqual(split([body]), want);
    // One byte at a time, and every two-piece split.
    assert.deepEqual(split([...body].map((b) => Buffer.from([b]))), want);
    for (let cut = 0; cut <= body.length; cut++) {
      assert.deepEqual(split([body.subarray(0, cut), body.subarray(cut)]), want, `cut at ${cut}`);
    }
  });

  test("a closing boundary is required; malformed boundary lines are refused", () => {
    const s = new MultipartSplitter(boundary, () => undefined);
    s.push(body.subarray(0, body.length - 8));
    assert.throws(() => s.end(), /closing boundary/);
    const bad = new MultipartSplitter(boundary, () => undefined);
    assert.throws(() => bad.push(Buffer.from("--xyzjunk\r\n")), /bytes after the boundary/);
    const long = new MultipartSplitter(boundary, () => undefined);
    assert.throws(
      () => long.push(Buffer.concat([Buffer.from("--xyz\r\n"), Buffer.alloc(20_000, 65)])),
      /longer than 16 KiB/,
    );
  });

  test("headers: name, filename, filename*, escapes, files without a filename", () => {
    assert.deepEqual(
      partInfo('Content-Disposition: form-data; name="file"; filename="/a \\"b\\".txt"'),
      {
        name: "file",
        filename: '/a "b".txt',
        file: true,
      },
    );
    assert.deepEqual(
      partInfo(
        "content-disposition: form-data; name=file; filename*=UTF-8''%C3%BC.txt; filename=\"u.txt\"",
      ),
      { name: "file", filename: "ü.txt", file: true },
    );
    assert.deepEqual(partInfo('Content-Disposition: form-data; name="note"'), {
      name: "note",
      filename: undefined,
      file: false,
    });
    assert.equal(
      partInfo(
        'Content-Disposition: form-data; name="file"\r\nContent-Type: application/octet-stream',
      ).file,
      true,
    );
    assert.equal(boundaryOf('multipart/form-data; boundary="a b"'), "a b");
    assert.equal(boundaryOf("multipart/form-data; charset=utf-8; boundary=zz"), "zz");
    assert.equal(boundaryOf("multipart/form-data"), undefined);
  });
});

describe("BlockWriter", () => {
  test("sizes around block borders, copied in odd chunks with waits, come out whole", async (t) => {
    const dir = await tempDir(t, "wrenn-blocks-");
    for (const size of [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 6 * BLOCK + 4097]) {
      const data = randomBytes(size);
      const path = join(dir, `f${size}`);
      const w = await BlockWriter.open(path);
      for (let at = 0; at < size;) {
        const n = Math.min(size - at, 70_000 + (at % 3));
        if (!w.copy(data.subarray(at, at + n))) await w.ready(true);
        at += n;
      }
      assert.equal(w.size, size);
      await w.finish();
      assert.ok((await readFile(path)).equals(data), `${size} bytes`);
      assert.equal(await openOn(path), 0);
    }
  });

  test("a file that cannot be opened fails the writer; blocks that waited for it give up", async (t) => {
    const dir = await tempDir(t, "wrenn-blocks-");
    await assert.rejects(BlockWriter.open(join(dir, "no", "such", "dir")), { code: "ENOENT" });
    const w = new BlockWriter();
    // Two blocks full and waiting for a file that never comes.
    w.copy(randomBytes(2 * BLOCK + 1));
    await w.abort();
    const v = new BlockWriter();
    v.copy(randomBytes(BLOCK + 9));
    await assert.rejects(v.attach(join(dir, "missing", "f")), { code: "ENOENT" });
    await assert.rejects(v.finish(), { code: "ENOENT" });
  });
});
