import { parseArgs } from "node:util";
import { userInfo } from "node:os";
import { startEnvd } from "@wrenn/envd/server.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/** `wrenn envd --port 49983`: the guest daemon, run on this host for testing. */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: "49983" },
      host: { type: "string", default: "127.0.0.1" },
      "default-user": { type: "string", default: userInfo().username },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new WrennError("invalid_argument", `--port must be 0..65535, got '${values.port}'`);
  }
  const envd = await startEnvd({ port, host: values.host, defaultUser: values["default-user"] });
  process.stdout.write(`envd listening on ${envd.url}\n`);
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => void envd.close().then(resolve));
    }
  });
}
