import { readFileSync } from "node:fs";

let tscKhz: number | undefined;

/**
 * The host's TSC rate in kHz. Passing it as `tsc_early_khz` skips the guest's
 * TSC calibration, which under TCG sometimes hangs the boot (1 in 15 without it).
 */
export function hostTscKhz(): number {
  if (tscKhz !== undefined) return tscKhz;
  let khz = 0;
  try {
    khz = Number(readFileSync("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "utf8").trim());
  } catch {
    // Most kernels do not expose it; cpuinfo's first "cpu MHz" is the TSC rate on VMs.
  }
  if (!(khz > 0)) {
    try {
      const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
      if (m?.[1]) khz = Math.round(Number(m[1]) * 1000);
    } catch {
      // Fall through to the default.
    }
  }
  tscKhz = khz > 0 ? khz : 2_300_000;
  return tscKhz;
}
