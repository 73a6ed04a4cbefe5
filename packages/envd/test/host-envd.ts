import type { TestContext } from "node:test";
import { userInfo } from "node:os";
import { createLogger } from "@wrenn/shared/log.ts";
import { startEnvd, type Envd } from "../src/server.ts";

const log = createLogger("envd-test", "warn");

/** envd in this process on a free loopback port, as this process's user; closed after `t`. */
export async function startHostEnvd(t: TestContext): Promise<Envd> {
  const envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: userInfo().username,
    log,
  });
  t.after(() => envd.close());
  return envd;
}
