/** Single-quotes a path for /bin/sh (QEMU runs `exec:` migration URIs through it). */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** QEMU option values separate keys with commas; a literal comma is doubled. */
export function qemuOpt(s: string): string {
  return s.replaceAll(",", ",,");
}
