// Guest entry point: what the VM's init runs (bundled to one file).
import { parseArgs } from "node:util";
import { startEnvd } from "./server.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "49983" },
    host: { type: "string", default: "0.0.0.0" },
    "default-user": { type: "string", default: "user" },
  },
});
// No top-level await: the bundle is CommonJS (see build.ts).
void startEnvd({
  port: Number(values.port),
  host: values.host,
  defaultUser: values["default-user"],
}).then(
  (envd) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => void envd.close().then(() => process.exit(0)));
    }
  },
  (err: unknown) => {
    process.stderr.write(`envd: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
