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
// The host agent's boot snapshot builder asks for a full collection before
// it saves the guest: else clones inherit a young generation as full as the
// builder left it, and whichever of their first requests fills it waits for
// a collection (40 ms and more under TCG). Set before anything else: a
// signal with no handler ends the process.
process.on("SIGUSR2", () => (globalThis as { gc?: () => void }).gc?.());
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
