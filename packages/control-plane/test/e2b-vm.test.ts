/**
 * The official `e2b` SDK (the root's pinned 2.x) against Wrenn on real VMs:
 * the control plane's E2B API, the traffic proxy and a real host agent.
 * Code written for E2B runs unchanged given the API URL, a key and the
 * sandbox URL (header routing) — what `wrenn up` prints. Needs root, QEMU
 * and the image; skips loudly without them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AuthenticationError,
  CommandExitError,
  FilesystemEventType,
  SandboxError,
  Sandbox,
  SandboxNotFoundError,
} from "e2b";
import { until } from "@wrenn/shared/testing/until.ts";
import { realAgentSkipReason, startHarness, type Harness } from "./harness.ts";
import { startRealAgent, type RealAgent } from "./real-agent.ts";
import { otherTeamKey } from "./e2b-helpers.ts";
import { rawRequest } from "./raw-http.ts";
import { StandInInternet } from "../../host-agent/test/stand-in-internet.ts";

const DOMAIN = "wrenn.test";

/** A request through the control plane as a browser sends it to `https://<host>` (host routing). */
const viaHost = (
  cpUrl: string,
  host: string,
  path: string,
  init: { method?: string; body?: Buffer; headers?: Record<string, string> } = {},
) => rawRequest(cpUrl, path, { host, ...init });

test(
  "the e2b SDK runs unchanged against Wrenn on real VMs",
  { skip: realAgentSkipReason("e2b SDK end-to-end test"), timeout: 1_200_000 },
  async (t) => {
    let agent: RealAgent | undefined;
    let h: Harness | undefined;
    const made: string[] = [];
    // Where sandboxes' traffic goes: two stand-in hosts in a namespace of this test's own.
    const internet = new StandInInternet(`ei${(process.pid % 1296).toString(36)}`, 30);
    try {
      await internet.start();
      [agent, h] = await Promise.all([
        startRealAgent("eb", { metricsIntervalMs: 1000, egressInterface: internet.hostEnd }),
        startHarness("pglite", {
          agents: 0,
          agentTimeoutMs: 600_000,
          domain: DOMAIN,
          expiryIntervalMs: 250,
        }),
      ]);
      const cp = h;
      await cp.cp.addHost(agent.address, { secret: agent.secret });
      const opts = {
        apiUrl: cp.cp.url,
        apiKey: cp.key,
        sandboxUrl: cp.cp.url,
        domain: DOMAIN,
        requestTimeoutMs: 120_000,
      };
      assert.match(cp.key, /^e2b_[0-9a-f]+$/, "keys are shaped as the SDK requires");

      const t0 = performance.now();
      const sbx = await Sandbox.create("base", {
        ...opts,
        metadata: { suite: "e2b-vm" },
        envs: { GREETING: "hello from wrenn" },
        timeoutMs: 900_000,
      });
      made.push(sbx.sandboxId);
      console.log(`Sandbox.create: ${Math.round(performance.now() - t0)} ms`);

      await t.test(
        "commands: foreground, exit codes, envs, stdin, background, connect, kill",
        async () => {
          const echo = await sbx.commands.run("echo $GREETING; echo err >&2");
          assert.equal(echo.stdout, "hello from wrenn\n");
          assert.equal(echo.stderr, "err\n");
          assert.equal(echo.exitCode, 0);
          await assert.rejects(sbx.commands.run("exit 3"), (err: unknown) => {
            assert.ok(err instanceof CommandExitError, String(err));
            assert.equal(err.exitCode, 3);
            return true;
          });
          // A login bash's PATH, from the image's /etc/profile, for a user and for root.
          assert.equal(
            (await sbx.commands.run("echo $PATH")).stdout,
            "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games\n",
          );
          assert.equal(
            (await sbx.commands.run("echo $PATH", { user: "root" })).stdout,
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
          );
          // Every process sees the create's envs, not only commands.run's shell.
          const env = await sbx.commands.run(
            "cat /proc/self/environ | tr '\\0' '\\n' | grep GREETING",
          );
          assert.equal(env.stdout.trim(), "GREETING=hello from wrenn");

          const cat = await sbx.commands.run("cat", { background: true, stdin: true });
          await sbx.commands.sendStdin(cat.pid, "typed input\n");
          await sbx.commands.closeStdin(cat.pid);
          const catDone = await cat.wait();
          assert.equal(catDone.stdout, "typed input\n");

          const counter = await sbx.commands.run(
            "for i in 1 2 3; do echo tick $i; sleep 0.5; done",
            { background: true },
          );
          const again = await sbx.commands.connect(counter.pid);
          const counted = await again.wait();
          assert.match(counted.stdout, /tick 3/);

          const sleeper = await sbx.commands.run("sleep 600", { background: true });
          const listed = await sbx.commands.list();
          assert.ok(
            listed.some((p) => p.pid === sleeper.pid),
            JSON.stringify(listed),
          );
          assert.equal(await sbx.commands.kill(sleeper.pid), true);
          await assert.rejects(sleeper.wait());
        },
      );

      await t.test("pty: create, input, resize", async () => {
        let output = "";
        const decoder = new TextDecoder();
        const pty = await sbx.pty.create({
          cols: 80,
          rows: 24,
          onData: (d) => {
            output += decoder.decode(d);
          },
        });
        await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
        await sbx.pty.sendInput(
          pty.pid,
          new TextEncoder().encode("stty size; echo pty-$((6*7))\n"),
        );
        await until("the PTY's output", 30_000, async () =>
          output.includes("pty-42") ? true : undefined,
        );
        assert.match(output, /30 100/);
        await sbx.pty.kill(pty.pid);
      });

      await t.test("files: write, read, list, exists, info, rename, remove, watch", async () => {
        const events: string[] = [];
        await sbx.files.makeDir("/tmp/watched");
        const watcher = await sbx.files.watchDir("/tmp/watched", (e) => {
          if (e.type === FilesystemEventType.WRITE || e.type === FilesystemEventType.CREATE) {
            events.push(e.name);
          }
        });
        await sbx.files.write("/tmp/watched/a.txt", "alpha");
        assert.equal(await sbx.files.read("/tmp/watched/a.txt"), "alpha");
        assert.equal(await sbx.files.exists("/tmp/watched/a.txt"), true);
        const info = await sbx.files.getInfo("/tmp/watched/a.txt");
        assert.equal(info.size, 5);
        await sbx.files.rename("/tmp/watched/a.txt", "/tmp/watched/b.txt");
        const names = (await sbx.files.list("/tmp/watched")).map((e) => e.name);
        assert.deepEqual(names, ["b.txt"]);
        await sbx.files.remove("/tmp/watched/b.txt");
        assert.equal(await sbx.files.exists("/tmp/watched/b.txt"), false);
        await until("a watch event", 15_000, async () =>
          events.includes("a.txt") ? true : undefined,
        );
        await watcher.stop();
      });

      await t.test("signed upload and download URLs reach envd by host routing", async () => {
        const host = `49983-${sbx.sandboxId}.${DOMAIN}`;
        const upload = new URL(await sbx.uploadUrl("/tmp/signed.txt", { user: "user" }));
        assert.ok(upload.searchParams.get("signature"), upload.toString());
        const form = new FormData();
        form.set("file", new Blob(["signed upload"]), "signed.txt");
        const encoded = new Request("http://x/", { method: "POST", body: form });
        const up = await viaHost(cp.cp.url, host, upload.pathname + upload.search, {
          method: "POST",
          body: Buffer.from(await encoded.arrayBuffer()),
          headers: { "content-type": encoded.headers.get("content-type") ?? "" },
        });
        assert.equal(up.status, 200, up.body);
        const download = new URL(await sbx.downloadUrl("/tmp/signed.txt", { user: "user" }));
        const down = await viaHost(cp.cp.url, host, download.pathname + download.search);
        assert.deepEqual(down, { status: 200, body: "signed upload" });
        // Without the signature (and no token header) envd refuses.
        const bare = await viaHost(cp.cp.url, host, "/files?path=/tmp/signed.txt&username=user");
        assert.equal(bare.status, 401, bare.body);
      });

      await t.test("getHost(port) reaches a server started inside", async () => {
        await sbx.files.write("/tmp/www/index.html", "served from inside");
        await sbx.commands.run("python3 -m http.server 8000 --directory /tmp/www", {
          background: true,
        });
        const host = sbx.getHost(8000);
        assert.equal(host, `8000-${sbx.sandboxId}.${DOMAIN}`);
        const page = await until("the guest's server", 60_000, async () => {
          const res = await viaHost(cp.cp.url, host, "/index.html").catch(() => undefined);
          return res?.status === 200 ? res : undefined;
        });
        assert.equal(page.body, "served from inside");
      });

      await t.test("a private sandbox's ports need its traffic access token", async () => {
        const closed = await Sandbox.create("base", {
          ...opts,
          secure: true,
          network: { allowPublicTraffic: false },
        });
        made.push(closed.sandboxId);
        assert.ok(closed.trafficAccessToken, "the create answered a traffic access token");
        await closed.commands.run("python3 -m http.server 8000 --directory /tmp", {
          background: true,
        });
        const host = closed.getHost(8000);
        const open = await until("the private sandbox's server", 60_000, async () => {
          const res = await viaHost(cp.cp.url, host, "/", {
            headers: { "e2b-traffic-access-token": closed.trafficAccessToken ?? "" },
          }).catch(() => undefined);
          return res?.status === 200 ? res : undefined;
        });
        assert.equal(open.status, 200);
        const refused = await viaHost(cp.cp.url, host, "/");
        assert.equal(refused.status, 403, refused.body);
        const wrong = await viaHost(cp.cp.url, host, "/", {
          headers: { "e2b-traffic-access-token": "not-the-token" },
        });
        assert.equal(wrong.status, 403, wrong.body);
        // envd's own port is guarded by envd's token, not the traffic token.
        assert.equal(await closed.files.exists("/tmp"), true);
        await closed.kill();
      });

      await t.test("metrics come from the guest", async () => {
        const metrics = await until("metrics samples", 30_000, async () => {
          const m = await sbx.getMetrics();
          return m.length > 0 ? m : undefined;
        });
        const last = metrics.at(-1);
        assert.ok(last && last.memTotal > 100 << 20 && last.diskTotal > 0, JSON.stringify(last));
        assert.ok(last.cpuCount >= 1);
      });

      await t.test("pause, then connect: memory and files kept", async () => {
        const sleeper = await sbx.commands.run("sleep 900", { background: true });
        await sbx.files.write("/tmp/kept.txt", "still here");
        assert.equal(await sbx.pause(), true);
        assert.equal(await sbx.isRunning(), false);
        assert.equal((await sbx.getInfo()).state, "paused");
        const back = await Sandbox.connect(sbx.sandboxId, opts);
        assert.equal(await back.files.read("/tmp/kept.txt"), "still here");
        const procs = await back.commands.list();
        assert.ok(
          procs.some((p) => p.pid === sleeper.pid),
          "the paused process lives on",
        );
        assert.equal(await back.isRunning(), true);
      });

      await t.test("list: filters and paging", async () => {
        const other = await Sandbox.create("base", {
          ...opts,
          metadata: { suite: "e2b-vm", role: "second" },
        });
        made.push(other.sandboxId);
        const pages = Sandbox.list({ ...opts, query: { metadata: { suite: "e2b-vm" } }, limit: 1 });
        const seen: string[] = [];
        while (pages.hasNext) seen.push(...(await pages.nextItems()).map((s) => s.sandboxId));
        assert.deepEqual(new Set(seen), new Set([sbx.sandboxId, other.sandboxId]));
        const second = await Sandbox.list({
          ...opts,
          query: { metadata: { role: "second" } },
        }).nextItems();
        assert.deepEqual(
          second.map((s) => s.sandboxId),
          [other.sandboxId],
        );
        await other.kill();
      });

      await t.test("snapshot, then a sandbox from it; fork", async () => {
        await sbx.files.write("/tmp/snap.txt", "from the snapshot");
        const snap = await sbx.createSnapshot();
        const child = await Sandbox.create(snap.snapshotId, opts);
        made.push(child.sandboxId);
        assert.equal(await child.files.read("/tmp/snap.txt"), "from the snapshot");
        await child.kill();
        const forks = await sbx.fork();
        const fork = forks[0];
        assert.ok(fork instanceof Sandbox, String(fork));
        made.push(fork.sandboxId);
        assert.equal(await fork.files.read("/tmp/snap.txt"), "from the snapshot");
        assert.equal(await sbx.isRunning(), true, "the forked sandbox keeps running");
        await fork.kill();
      });

      await t.test("timeouts: killed, or paused and resumed by traffic", async () => {
        const shortLived = await Sandbox.create("base", { ...opts, timeoutMs: 3_000 });
        made.push(shortLived.sandboxId);
        await until("the sandbox to be killed at its timeout", 60_000, async () =>
          (await shortLived.isRunning()) ? undefined : true,
        );
        // The proxy answers 502 once the VM is gone; the row follows when the kill returns.
        await until("the killed sandbox to be gone from the API", 30_000, async () =>
          Sandbox.getInfo(shortLived.sandboxId, opts).then(
            () => undefined,
            (err: unknown) => {
              assert.ok(err instanceof SandboxNotFoundError, String(err));
              return true;
            },
          ),
        );

        const napper = await Sandbox.create("base", {
          ...opts,
          lifecycle: { onTimeout: "pause", autoResume: true },
        });
        made.push(napper.sandboxId);
        await napper.files.write("/tmp/nap.txt", "before the nap");
        // Its end brought near only now, so a busy host cannot pause it mid-write.
        await napper.setTimeout(2_000);
        await until("the sandbox to pause at its timeout", 60_000, async () =>
          (await Sandbox.getInfo(napper.sandboxId, opts)).state === "paused" ? true : undefined,
        );
        // The first request through the proxy resumes it.
        assert.equal(await napper.files.read("/tmp/nap.txt"), "before the nap");
        assert.equal((await napper.getInfo()).state, "running");
        await napper.kill();
      });

      await t.test(
        "egress rules: denyOut, allowOut over denyOut, updateNetwork, no internet",
        async () => {
          const reach = async (s: Sandbox) =>
            StandInInternet.verdict((await s.commands.run(internet.probeScript())).stdout);
          assert.equal(await reach(sbx), "A B", "no rules: both stand-in hosts");
          const ruled = await Sandbox.create("base", {
            ...opts,
            network: { denyOut: [internet.a] },
          });
          made.push(ruled.sandboxId);
          assert.equal(await reach(ruled), "- B", "denyOut [A]");
          await ruled.updateNetwork({ allowOut: [internet.a], denyOut: ["0.0.0.0/0"] });
          assert.equal(await reach(ruled), "A -", "updated at once: only A");
          await ruled.kill();
          const offline = await Sandbox.create("base", { ...opts, allowInternetAccess: false });
          made.push(offline.sandboxId);
          assert.equal(await reach(offline), "- -", "allowInternetAccess: false");
          await offline.kill();
        },
      );

      await t.test("bad input answers as E2B does", async () => {
        // E2B's SDK maps a create's 404 to a SandboxError carrying the status.
        await assert.rejects(Sandbox.create("no-such-template", opts), (err: unknown) => {
          assert.ok(err instanceof SandboxError, String(err));
          assert.match(err.message, /^404: template 'no-such-template' not found/);
          return true;
        });
        await assert.rejects(
          Sandbox.create("base", { ...opts, apiKey: `e2b_${"0".repeat(40)}` }),
          AuthenticationError,
        );
        const stranger = await otherTeamKey(cp);
        await assert.rejects(
          Sandbox.connect(sbx.sandboxId, { ...opts, apiKey: stranger }),
          SandboxNotFoundError,
        );
        const malformed = await fetch(`${cp.cp.url}/sandboxes`, {
          method: "POST",
          headers: { "x-api-key": cp.key, "content-type": "application/json" },
          body: "{not json",
        });
        assert.equal(malformed.status, 400);
        assert.equal(((await malformed.json()) as { code: number }).code, 400);
      });

      await sbx.kill();
      assert.equal(await sbx.isRunning(), false);
      await assert.rejects(Sandbox.getInfo(sbx.sandboxId, opts), SandboxNotFoundError);
    } finally {
      for (const id of made) {
        await h?.api(`/sandboxes/${id}`, { method: "DELETE" }).catch(() => undefined);
      }
      await h?.close();
      await agent?.stop();
      await internet.stop();
    }
  },
);
