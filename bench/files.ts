/**
 * File throughput into and out of one real sandbox (as root, after
 * `./wrenn image build`), every path against its baseline in one run:
 * - the guest's own disk: `dd bs=1M conv=fsync` inside the guest;
 * - raw TCP into and out of the guest: a python3 socket server in the guest
 *   that discards or sends bytes, the host on the other end (no HTTP, no
 *   files: the network path alone); and out of the file a download reads:
 *   the same server reading it as envd does (O_DIRECT, 4 MiB blocks), what
 *   any program serving the file pays for the guest's disk on top;
 * - envd `/files` upload (application/octet-stream, and multipart as the
 *   e2b SDK sends it) and download direct to the guest's address;
 * - REST `/v1/sandboxes/{id}/files/write` (the raw body, and a multipart
 *   one, forwarded to envd through the agent's proxy hop) and `files/read`
 *   (envd's body back through that hop);
 * - envd `/files` through the control plane's traffic proxy.
 * Targets (issue 15): envd upload ≥ 0.7× the guest disk, envd download
 * ≥ 0.8× raw TCP out of the guest, REST and the proxy ≥ 0.8× envd direct.
 * An upload counts once its bytes are on the guest's disk (a `sync` in the
 * guest after the 200, as dd's conv=fsync does; the exec's own round trip,
 * an empty exec timed just before, is taken off); the time to the 200 alone
 * is printed beside it. Uploads send a Content-Length, as the e2b SDKs,
 * curl and browsers do. Every download is read by the same lean client (a
 * plain socket that counts the body), as the raw TCP baseline is: fetch's
 * own CPU on this 2-core host held the HTTP legs back. Also prints the CPU
 * seconds QEMU (the guest) and this process (client, control plane and
 * agent) spent per leg.
 *
 *   node_modules/.bin/node bench/files.ts [MiB] [rounds]
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startBenchPlatform } from "./lib/platform.ts";

const mib = Math.max(8, Number(process.argv[2] ?? 100));
const rounds = Math.max(1, Number(process.argv[3] ?? 3));
const size = mib << 20;
const GUEST_FILE = "/root/wrenn-bench.bin";
const SINK_PORT = 5001;
const SOURCE_PORT = 5002;
const FILE_PORT = 5003;

/**
 * The guest's end of the raw TCP baselines: port 5001 discards, 5002 sends
 * the size asked for out of memory, 5003 sends the file read in page-aligned
 * 4 MiB blocks with O_DIRECT, as envd reads a file that large.
 */
const TCP_SERVER = `
import mmap, os, socket, struct, threading
def serve(port, handle):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(4)
    while True:
        c, _ = s.accept()
        try: handle(c)
        finally: c.close()
def sink(c):
    buf = bytearray(1 << 20); n = 0
    while True:
        r = c.recv_into(buf)
        if r == 0: break
        n += r
    c.sendall(struct.pack("<Q", n))
def source(c):
    want = struct.unpack("<Q", c.recv(8))[0]
    buf = bytes(1 << 20)
    while want > 0:
        c.sendall(buf[: min(want, len(buf))]); want -= min(want, len(buf))
def from_file(c):
    c.recv(8)
    fd = os.open("${GUEST_FILE}", os.O_RDONLY | os.O_DIRECT); buf = mmap.mmap(-1, 4 << 20)
    try:
        while True:
            n = os.readv(fd, [buf])
            if n <= 0: break
            c.sendall(memoryview(buf)[:n])
    finally: os.close(fd)
threading.Thread(target=serve, args=(${SINK_PORT}, sink), daemon=True).start()
threading.Thread(target=serve, args=(${FILE_PORT}, from_file), daemon=True).start()
serve(${SOURCE_PORT}, source)
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const platform = await startBenchPlatform("files", "wbf");
const { root, secret, agent, cp, key, post: json } = platform;
try {
  const auth = { "x-api-key": String(key) };
  const created = await json(
    "/v1/sandboxes",
    { template: "minimal", vcpus: 1, memory_mb: 1024, timeout_sec: 3600 },
    auth,
  );
  const id = String(created.sandbox_id);
  const detail = (await (
    await fetch(`${cp.url}/sandboxes/${id}`, { headers: auth })
  ).json()) as Record<string, unknown>;
  const envdToken = String(detail.envdAccessToken ?? "");
  const rpc = createClient(
    HostAgentService,
    createConnectTransport({
      baseUrl: agent.url,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${secret}`);
          return next(req);
        },
      ],
    }),
  );
  const listed = (await rpc.listSandboxes({})).sandboxes.find((s) => s.sandboxId === id);
  const envdAddress = listed?.envdAddress ?? "";
  const guestHost = envdAddress.replace(/:\d+$/, "");
  const record = JSON.parse(
    await readFile(join(root, "data", "sandboxes", id, "record.json"), "utf8"),
  ) as { vm: { pid: number } };
  const qemuPid = record.vm.pid;

  const sh = async (script: string) => {
    const r = await rpc.exec({ sandboxId: id, cmd: "/bin/sh", args: ["-c", script], user: "root" });
    const out = Buffer.from(r.stdout).toString() + Buffer.from(r.stderr).toString();
    if (r.exitCode !== 0) throw new Error(`guest: ${script}: exit ${r.exitCode}: ${out}`);
    return out;
  };

  const envdHeaders: Record<string, string> = envdToken ? { "x-access-token": envdToken } : {};
  const block = randomBytes(1 << 20);
  function* bodyChunks(): Generator<Buffer> {
    for (let sent = 0; sent < size; sent += block.length)
      yield block.subarray(0, Math.min(block.length, size - sent));
  }
  /** POSTs `head`, `size` bytes and `tail` with a Content-Length, streamed with backpressure. */
  function post(
    url: string,
    headers: Record<string, string>,
    what: string,
    head = Buffer.alloc(0),
    tail = Buffer.alloc(0),
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          headers: { ...headers, "content-length": head.length + size + tail.length },
        },
        (res) => {
          const got: Buffer[] = [];
          res.on("data", (c: Buffer) => got.push(c));
          res.on("end", () =>
            res.statusCode === 200
              ? resolve()
              : reject(new Error(`${what}: ${res.statusCode} ${Buffer.concat(got).toString()}`)),
          );
        },
      );
      req.on("error", reject);
      const chunks = bodyChunks();
      const pump = (): void => {
        for (let next = chunks.next(); !next.done; next = chunks.next()) {
          if (!req.write(next.value)) {
            req.once("drain", pump);
            return;
          }
        }
        req.end(tail);
      };
      req.write(head);
      pump();
    });
  }
  /**
   * One HTTP/1.1 request on a plain socket, the response body counted and
   * dropped: the client costs next to nothing, as the raw TCP baseline's.
   */
  function fetchLean(
    url: string,
    what: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<void> {
    const u = new URL(url);
    const body = init.body ?? "";
    const head =
      `${init.method ?? "GET"} ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n` +
      Object.entries({ ...init.headers, "content-length": String(Buffer.byteLength(body)) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("") +
      "connection: close\r\n\r\n";
    return new Promise((resolve, reject) => {
      const sock = connect(Number(u.port), u.hostname, () => sock.write(head + body));
      let header = Buffer.alloc(0);
      let length = -1;
      let got = 0;
      let status = 0;
      sock.on("data", (c: Buffer) => {
        if (length >= 0) {
          got += c.length;
          return;
        }
        header = Buffer.concat([header, c]);
        const end = header.indexOf("\r\n\r\n");
        if (end < 0) return;
        const text = header.subarray(0, end).toString();
        status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
        length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? -1);
        got = header.length - end - 4;
        if (length < 0) {
          sock.destroy();
          reject(new Error(`${what}: ${status} without a Content-Length: ${text}`));
        }
      });
      sock.on("error", reject);
      sock.on("close", () => {
        if (status !== 200 || got !== size)
          reject(new Error(`${what}: ${status}, ${got} of ${size} bytes`));
        else resolve();
      });
    });
  }
  const filesQuery = `path=${encodeURIComponent(GUEST_FILE)}&username=root`;

  const boundary = "wrenn-bench-boundary";
  // The e2b SDK's shape: the target path in the file part's filename.
  const sdkHead = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${GUEST_FILE}"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\n`,
  );
  const restHead = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n${GUEST_FILE}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const multipartType = { "content-type": `multipart/form-data; boundary=${boundary}` };
  const uploads = {
    "envd direct": () =>
      post(
        `http://${envdAddress}/files?${filesQuery}`,
        { ...envdHeaders, "content-type": "application/octet-stream" },
        "envd upload",
      ),
    "envd direct multipart": () =>
      post(
        `http://${envdAddress}/files?username=root`,
        { ...envdHeaders, ...multipartType },
        "envd multipart upload",
        sdkHead,
        tail,
      ),
    "traffic proxy": () =>
      post(
        `${cp.url}/files?${filesQuery}`,
        {
          ...envdHeaders,
          "e2b-sandbox-id": id,
          "e2b-sandbox-port": "49983",
          "content-type": "application/octet-stream",
        },
        "proxy upload",
      ),
    REST: () =>
      post(
        `${cp.url}/v1/sandboxes/${id}/files/write?path=${encodeURIComponent(GUEST_FILE)}&user=root`,
        { ...auth, "content-type": "application/octet-stream" },
        "REST write",
      ),
    "REST multipart": () =>
      post(
        `${cp.url}/v1/sandboxes/${id}/files/write?user=root`,
        { ...auth, ...multipartType },
        "REST multipart write",
        restHead,
        tail,
      ),
  };
  const downloads = {
    "envd direct": () =>
      fetchLean(`http://${envdAddress}/files?${filesQuery}`, "envd download", {
        headers: envdHeaders,
      }),
    "traffic proxy": () =>
      fetchLean(`${cp.url}/files?${filesQuery}`, "proxy download", {
        headers: { ...envdHeaders, "e2b-sandbox-id": id, "e2b-sandbox-port": "49983" },
      }),
    REST: () =>
      fetchLean(`${cp.url}/v1/sandboxes/${id}/files/read`, "REST read", {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ path: GUEST_FILE, user: "root" }),
      }),
  };

  /** Seconds to push `size` bytes into the guest's sink, until it says it has them all. */
  async function tcpIn(): Promise<void> {
    const sock = connect(SINK_PORT, guestHost);
    await once(sock, "connect");
    const reply = once(sock, "data");
    for (let sent = 0; sent < size; sent += block.length) {
      if (!sock.write(block.subarray(0, Math.min(block.length, size - sent))))
        await once(sock, "drain");
    }
    sock.end();
    const [answer] = (await reply) as [Buffer];
    sock.destroy();
    if (Number(answer.readBigUInt64LE(0)) !== size) throw new Error("raw TCP in: short");
  }
  async function tcpOut(port = SOURCE_PORT): Promise<void> {
    const sock = connect(port, guestHost);
    await once(sock, "connect");
    const ask = Buffer.alloc(8);
    ask.writeBigUInt64LE(BigInt(size));
    sock.write(ask);
    let got = 0;
    for await (const c of sock) got += (c as Buffer).length;
    if (got !== size) throw new Error(`raw TCP out: ${got} of ${size} bytes`);
  }

  const cpu = async () => {
    const f = (await readFile(`/proc/${qemuPid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
    const own = process.cpuUsage();
    return { guest: (Number(f[11]) + Number(f[12])) / 100, host: (own.user + own.system) / 1e6 };
  };
  interface Sample {
    s: number;
    guestCpu: number;
    hostCpu: number;
  }
  async function timed(fn: () => Promise<unknown>): Promise<Sample> {
    const c0 = await cpu();
    const t0 = performance.now();
    await fn();
    const s = (performance.now() - t0) / 1000;
    const c1 = await cpu();
    return { s, guestCpu: c1.guest - c0.guest, hostCpu: c1.host - c0.host };
  }

  // The guest's TCP server and a warm-up of every path (JIT, guest page cache, TCG's code).
  await rpc.writeFile({
    sandboxId: id,
    path: "/root/tcp.py",
    content: Buffer.from(TCP_SERVER),
    user: "root",
  });
  await sh("setsid python3 /root/tcp.py </dev/null >/root/tcp.log 2>&1 &");
  // python3 starts in seconds on a TCG guest: wait for its ports.
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(SOURCE_PORT, guestHost);
      s.once("connect", () => resolve(true)).once("error", () => resolve(false));
      s.on("close", () => s.destroy());
      s.once("connect", () => s.end(Buffer.alloc(8)));
    });
    if (up) break;
    if (i > 100)
      throw new Error(`the guest's TCP server did not start: ${await sh("cat /root/tcp.log")}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await tcpIn();
  await tcpOut();
  for (const name of Object.keys(uploads) as (keyof typeof uploads)[]) {
    await uploads[name]();
    if (name in downloads) await downloads[name as keyof typeof downloads]();
  }
  await tcpOut(FILE_PORT);

  const samples: Record<string, Sample[]> = {};
  const add = (name: string, x: Sample) => (samples[name] ??= []).push(x);
  const ddRates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await sh(`rm -f ${GUEST_FILE} /root/dd.bin; sync`);
    // dd reports its own rate; the exec's round trip is not in it.
    const dd = await sh(
      `dd if=/dev/zero of=/root/dd.bin bs=1M count=${mib} conv=fsync 2>&1; rm -f /root/dd.bin; sync`,
    );
    const m = /copied, ([\d.]+) s/.exec(dd);
    if (!m) throw new Error(`dd said: ${dd}`);
    ddRates.push(size / Number(m[1]));
    add("raw TCP in", await timed(tcpIn));
    add("raw TCP out", await timed(tcpOut));
    for (const name of Object.keys(uploads) as (keyof typeof uploads)[]) {
      await sh(`rm -f ${GUEST_FILE}; sync`);
      // The round trip of an exec, taken off the `sync` below: dd's own fsync has none.
      const e0 = performance.now();
      await sh("true");
      const execTrip = (performance.now() - e0) / 1000;
      let to200 = 0;
      const up = await timed(async () => {
        const t0 = performance.now();
        await uploads[name]();
        to200 = (performance.now() - t0) / 1000;
        await sh("sync");
      });
      add(`upload ${name}`, { ...up, s: up.s - execTrip });
      add(`upload ${name} (to the 200)`, { s: to200, guestCpu: NaN, hostCpu: NaN });
      if (name in downloads) {
        add(`download ${name}`, await timed(downloads[name as keyof typeof downloads]));
      }
      if (name === "envd direct")
        add("raw TCP out of the file", await timed(() => tcpOut(FILE_PORT)));
    }
  }
  await sh(`rm -f ${GUEST_FILE} /root/tcp.py; pkill -f "python3 /root/tc[p]" || true`);

  const MB = (s: number) => size / 1e6 / s;
  const rateOf = (name: string) => MB(median((samples[name] ?? []).map((x) => x.s)));
  const disk = median(ddRates) / 1e6;
  console.log(`file throughput, one sandbox (1 vCPU, 1 GiB), ${mib} MiB, median of ${rounds}`);
  console.log(`  guest disk (dd bs=1M conv=fsync)           ${disk.toFixed(1).padStart(7)} MB/s`);
  const row = (name: string, base: number, baseName: string, target: number, label = name) => {
    const r = rateOf(name);
    const xs = samples[name] ?? [];
    const g = median(xs.map((x) => x.guestCpu));
    const h = median(xs.map((x) => x.hostCpu));
    const cpuText = Number.isNaN(g) ? "" : `   guest CPU ${g.toFixed(2)} s, host ${h.toFixed(2)} s`;
    const ratio = Number.isNaN(base) ? "" : `   ${(r / base).toFixed(2)}× ${baseName}`;
    const goal = target > 0 ? ` (target ≥ ${target})` : "";
    console.log(`  ${label.padEnd(42)} ${r.toFixed(1).padStart(7)} MB/s${ratio}${goal}${cpuText}`);
  };
  row("raw TCP in", NaN, "", 0);
  row("raw TCP out", NaN, "", 0);
  row("raw TCP out of the file", rateOf("raw TCP out"), "raw TCP out", 0);
  const envdUp = rateOf("upload envd direct");
  const envdDown = rateOf("download envd direct");
  row("upload envd direct", disk, "guest disk", 0.7);
  row("upload envd direct (to the 200)", disk, "guest disk", 0);
  row("upload envd direct multipart", disk, "guest disk", 0.7);
  row("upload envd direct multipart (to the 200)", disk, "guest disk", 0);
  row("download envd direct", rateOf("raw TCP out"), "raw TCP out", 0.8);
  row(
    "download envd direct",
    rateOf("raw TCP out of the file"),
    "raw TCP out of the file",
    0,
    "download envd direct (the file's floor)",
  );
  for (const via of ["REST", "traffic proxy"]) {
    row(`upload ${via}`, envdUp, "envd direct", 0.8);
    // A multipart body is split again in the guest: envd direct with the same body is its baseline.
    if (via === "REST") {
      const multipart = rateOf("upload envd direct multipart");
      row("upload REST multipart", multipart, "envd direct multipart", 0.8);
    }
    row(`upload ${via} (to the 200)`, rateOf("upload envd direct (to the 200)"), "envd direct", 0);
    row(`download ${via}`, envdDown, "envd direct", 0.8);
  }
} finally {
  await platform.close();
}
