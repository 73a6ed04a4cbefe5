import { readFile } from "node:fs/promises";

/**
 * Resident KiB of the VMM, and of the guest RAM file mapping within it.
 * Beyond guest RAM: `anon` (heap, TCG's translation cache, thread stacks)
 * and `files` (QEMU's binary and libraries: shared by every VMM on the
 * host, which `pss` divides among them).
 */
export interface VmmRss {
  total: number;
  guest: number;
  anon: number;
  files: number;
  /** Proportional set size beyond the guest mapping: shared pages split among their users. */
  pssBeyondGuest: number;
}

export async function vmmRss(pid: number): Promise<VmmRss> {
  const smaps = await readFile(`/proc/${pid}/smaps`, "utf8");
  const out: VmmRss = { total: 0, guest: 0, anon: 0, files: 0, pssBeyondGuest: 0 };
  let inGuest = false;
  let inFile = false;
  for (const line of smaps.split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head) {
      const name = head[2]?.trim() ?? "";
      // A booted VM's own RAM file, or the boot snapshot's a clone maps privately.
      inGuest = /(\.mem|\/memfile)$/.test(name);
      inFile = head[1] !== "0";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) {
      const kib = Number(rss[1]);
      out.total += kib;
      if (inGuest) out.guest += kib;
      else if (inFile) out.files += kib;
      else out.anon += kib;
    }
    const pss = /^Pss:\s+(\d+) kB/.exec(line);
    if (pss && !inGuest) out.pssBeyondGuest += Number(pss[1]);
  }
  return out;
}
