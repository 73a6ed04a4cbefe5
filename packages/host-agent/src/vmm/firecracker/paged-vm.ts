/**
 * A restored Firecracker and the page server that serves its memory: one
 * VM to the rest of the agent. The VM hangs at its next page fault without
 * its server, so a server that dies under it stops the VM, and the VM's
 * `exited` reports it.
 */
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { PageServer } from "../../snapshot/page-server.ts";
import type { ExitStatus } from "../../util/process.ts";
import type { VmHandle } from "../vmm.ts";
import type { FirecrackerVm } from "./vm.ts";

export class PagedVm implements VmHandle {
  readonly vm: FirecrackerVm;
  readonly server: PageServer;
  readonly exited: Promise<ExitStatus>;
  #stopping: Promise<void> | null = null;

  constructor(vm: FirecrackerVm, server: PageServer, log: Logger) {
    this.vm = vm;
    this.server = server;
    this.exited = vm.exited;
    void server.exited.then(async (exit) => {
      if (!exit.unexpected || this.#stopping) return;
      log.error({ reason: exit.reason }, "the VM's page server died; stopping the VM");
      await vm.stop().catch((err: unknown) => {
        log.error({ err: messageOf(err) }, "could not stop the VM after its page server died");
      });
    });
  }

  get vmId(): string {
    return this.vm.vmId;
  }

  get pid(): number {
    return this.vm.pid;
  }

  pause(): Promise<void> {
    return this.vm.pause();
  }

  resume(): Promise<void> {
    return this.vm.resume();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      try {
        await this.vm.stop();
      } finally {
        await this.server.stop();
      }
    })();
    return this.#stopping;
  }

  release(): void {
    this.vm.release();
  }
}
