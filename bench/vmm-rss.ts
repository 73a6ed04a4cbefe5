import { readFile } from "node:fs/promises";

/** Resident KiB of the VMM, and of the guest RAM file mapping within it. */
export async function vmmRss(pid: number): Promise<{ total: number; guest: number }> {
  const smaps = await readFile(`/proc/${pid}/smaps`, "utf8");
  let total = 0;
  let guest = 0;
  let inGuest = false;
  for (const line of smaps.split("\n")) {
    // A booted VM's own RAM file, or the boot snapshot's a clone maps privately.
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inGuest = /(\.mem|\/memfile)$/.test(line.trim());
    const m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m) {
      total += Number(m[1]);
      if (inGuest) guest += Number(m[1]);
    }
  }
  return { total, guest };
}
