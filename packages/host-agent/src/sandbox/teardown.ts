import { rm } from "node:fs/promises";
import { crashPoint } from "../util/crash-point.ts";
import { killIfNamed } from "../util/process.ts";
import type { VmHandle } from "../vmm/vmm.ts";
import type { SandboxHost } from "./host.ts";
import type { SandboxRecord } from "./records.ts";
import { Rollback } from "./rollback.ts";

/**
 * Releases whatever a record says is held — the VM (adopted first if this
 * agent did not start it), disk, network slot, run dir, record — with the
 * same undo that every lifecycle step uses.
 */
export async function teardown(
  host: SandboxHost,
  record: SandboxRecord,
  vm: VmHandle | null,
  /** A user's destroy: the crash-point tests cut it between steps. */
  destroying = false,
): Promise<void> {
  const { vmm, storage, network } = host.opts;
  const undo = new Rollback(host.log.child({ sandbox: record.id }));
  // Pushed in reverse: the VM stops first, the record goes last.
  undo.push("remove record", () => host.records.remove(record));
  undo.push("remove run dir", () => rm(host.runDir(record), { recursive: true, force: true }));
  const slotIndex = record.slotIndex;
  if (slotIndex !== null) {
    undo.push("release network", () => network.release(network.adopt(slotIndex)));
  }
  const disk = record.disk;
  if (destroying) undo.push("crash point", async () => crashPoint("destroy:after-disk"));
  if (disk) undo.push("destroy disk", () => storage.destroy(disk));
  if (destroying) undo.push("crash point", async () => crashPoint("destroy:after-stop"));
  undo.push("stop vm", async () => {
    if (vm) return vm.stop();
    if (!record.vm) return;
    const adopted = await vmm.adopt(record.vm).catch(() => null);
    if (adopted) return adopted.stop();
    // Not re-attachable (control socket busy or gone): it must still not outlive its sandbox.
    await killIfNamed(record.vm.pid, record.vm.vmId);
  });
  await undo.run();
}
