import type { VmmDriver } from "../src/vmm/vmm.ts";

/**
 * A real driver with some methods replaced (fault injection). The driver
 * keeps per-VM state in private fields, so the rest are bound to it.
 */
export function driverWith(real: VmmDriver, overrides: Partial<VmmDriver>): VmmDriver {
  return {
    name: real.name,
    accel: real.accel,
    kernelFile: (k) => real.kernelFile(k),
    boot: (spec) => real.boot(spec),
    restore: (spec) => real.restore(spec),
    adopt: (rec) => real.adopt(rec),
    record: (vm) => real.record(vm),
    saveMemory: (vm, save) => real.saveMemory(vm, save),
    afterResume: (dir, log) => real.afterResume(dir, log),
    copyMemory: (from, to) => real.copyMemory(from, to),
    ...overrides,
  };
}
