import { timed } from "@wrenn/shared/log.ts";
import type { SandboxHost } from "./host.ts";
import { teardown } from "./teardown.ts";

/** Frees everything the sandbox holds, its saved memory and disk included. */
export async function destroy(host: SandboxHost, id: string): Promise<void> {
  const live = host.registry.get(id);
  await host.registry.withLock(id, async () => {
    live.stopping = true;
    live.envd?.close();
    await live.releasing;
    await timed(host.log, "destroy", () => teardown(host, live.record, live.vm, true), {
      sandbox: id,
    });
    host.registry.delete(id);
  });
}
