/**
 * The agent's proxy hop and an upgraded connection whose VM run ends: both
 * of its sockets are destroyed, the guest's too. Ending the guest's side
 * left it half-closed towards a guest that is gone (FIN-WAIT-1 for many
 * minutes), and its handle kept the agent's process alive. Loopback only:
 * a local server plays the guest and keeps its half open, as a vanished
 * guest does.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer as createHttpServer } from "node:http";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { test } from "node:test";
import { createLogger } from "@wrenn/shared/log.ts";
import { PROXY_PORT_HEADER, PROXY_SANDBOX_HEADER } from "@wrenn/shared/sandbox-proxy.ts";
import { createGuestProxy } from "../src/proxy/proxy.ts";

test(
  "a run that ends destroys both sockets of its upgraded connections",
  { timeout: 20_000 },
  async () => {
    const guestSide: Socket[] = [];
    const guest = createServer({ allowHalfOpen: true }, (s) => {
      guestSide.push(s);
      s.on("error", () => undefined);
      s.once("data", () =>
        s.write(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
      );
    });
    guest.listen(0, "127.0.0.1");
    await once(guest, "listening");
    const guestPort = (guest.address() as AddressInfo).port;

    const run = new AbortController();
    const proxy = createGuestProxy(
      { guestAddress: () => ({ host: "127.0.0.1", gone: run.signal }) },
      { log: createLogger("test", "silent") },
    );
    const agent = createHttpServer((_req, res) => res.end());
    agent.on("upgrade", (req, socket, head) => proxy.ws(req, socket, head));
    agent.listen(0, "127.0.0.1");
    await once(agent, "listening");

    const client = connect((agent.address() as AddressInfo).port, "127.0.0.1");
    client.on("error", () => undefined);
    try {
      client.write(
        `GET /echo HTTP/1.1\r\nHost: x\r\n${PROXY_SANDBOX_HEADER}: sbx1\r\n` +
          `${PROXY_PORT_HEADER}: ${guestPort}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
      );
      const [answer] = (await once(client, "data")) as [Buffer];
      assert.match(answer.toString(), /^HTTP\/1\.1 101/);
      assert.equal(guestSide.length, 1);
      const atGuest = guestSide[0]!;
      // Not events.once: the reset the guest meets is an error event first.
      const guestClosed = new Promise((resolve) => atGuest.once("close", resolve));

      run.abort();
      await once(client, "close");
      // The guest keeps its half open and goes on writing: an agent socket that
      // was only ended still takes the bytes; a destroyed one answers with a
      // reset, and the guest's socket closes.
      const writer = setInterval(() => atGuest.writable && atGuest.write("still here"), 50);
      try {
        await Promise.race([
          guestClosed,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error("the agent kept its socket to the guest")), 5000),
          ),
        ]);
      } finally {
        clearInterval(writer);
      }
    } finally {
      client.destroy();
      for (const s of guestSide) s.destroy();
      proxy.close();
      agent.close();
      guest.close();
    }
  },
);
