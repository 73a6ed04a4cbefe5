import { spawn } from "node:child_process";
import { open, readFile, writeFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { WrennError } from "@wrenn/shared/errors.ts";

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

interface Codec {
  name: string;
  magic: Buffer;
  /** Command that decompresses stdin to stdout (gzip is done in-process). */
  command?: [string, ...string[]];
}

// The kernel build appends the uncompressed size (4 bytes) to every format
// but gzip, whose trailer already carries it; the tools reject those bytes.
const CODECS: readonly Codec[] = [
  { name: "gzip", magic: Buffer.from([0x1f, 0x8b]) },
  { name: "xz", magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), command: ["xz", "-dc"] },
  { name: "zstd", magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), command: ["zstd", "-dcq"] },
  { name: "lz4", magic: Buffer.from([0x02, 0x21, 0x4c, 0x18]), command: ["lz4", "-dcq"] },
  { name: "lzma", magic: Buffer.from([0x5d, 0x00, 0x00]), command: ["xz", "--format=lzma", "-dc"] },
  { name: "bzip2", magic: Buffer.from("BZh"), command: ["bzip2", "-dc"] },
];

/** The compressed kernel inside a bzImage, located through its boot protocol header. */
export function bzImagePayload(image: Buffer): { codec: Codec; data: Buffer } {
  if (image.subarray(0x202, 0x206).toString("latin1") !== "HdrS") {
    throw new WrennError("invalid_argument", "not a bzImage (no HdrS boot header)");
  }
  const setupSects = image[0x1f1] || 4;
  const offset = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  const data = image.subarray(offset, offset + length);
  const codec = CODECS.find((c) => data.subarray(0, c.magic.length).equals(c.magic));
  if (codec === undefined) {
    throw new WrennError(
      "invalid_argument",
      `unknown kernel compression (payload starts ${data.subarray(0, 6).toString("hex")})`,
    );
  }
  return { codec, data: codec.name === "gzip" ? data : data.subarray(0, data.length - 4) };
}

function pipeThrough(command: [string, ...string[]], input: Buffer, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    void open(out, "w").then((fh) => {
      const [cmd, ...args] = command;
      const child = spawn(cmd, args, { stdio: ["pipe", fh.fd, "pipe"] });
      const { stdin, stderr: errStream } = child;
      if (stdin === null || errStream === null) throw new Error("spawn gave no pipes");
      let stderr = "";
      errStream.on("data", (b: Buffer) => (stderr += b.toString()));
      child.on("error", (e) => {
        void fh.close();
        reject(new WrennError("failed_precondition", `${cmd}: ${e.message} (run 'wrenn setup')`));
      });
      child.on("close", (code) => {
        void fh.close();
        if (code === 0) resolve();
        else reject(new WrennError("internal", `${command.join(" ")} failed: ${stderr.trim()}`));
      });
      stdin.on("error", () => {
        // Exit status reports the failure.
      });
      stdin.end(input);
    }, reject);
  });
}

/**
 * Writes the uncompressed ELF kernel of a bzImage (what Firecracker boots,
 * and QEMU through the faster PVH entry). An ELF input is copied as is.
 */
export async function extractVmlinux(bzImage: string, out: string): Promise<void> {
  const image = await readFile(bzImage);
  if (image.subarray(0, 4).equals(ELF_MAGIC)) {
    await writeFile(out, image);
    return;
  }
  const { codec, data } = bzImagePayload(image);
  if (codec.command === undefined) await writeFile(out, gunzipSync(data));
  else await pipeThrough(codec.command, data, out);
  const fh = await open(out);
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (!head.equals(ELF_MAGIC)) {
      throw new WrennError("internal", `decompressed ${codec.name} kernel is not an ELF file`);
    }
  } finally {
    await fh.close();
  }
}

/** True if the ELF file at `path` asks for a dynamic loader (PT_INTERP). */
export async function isDynamicElf(path: string): Promise<boolean> {
  const data = await readFile(path);
  if (!data.subarray(0, 4).equals(ELF_MAGIC) || data[4] !== 2) return false;
  const phoff = Number(data.readBigUInt64LE(0x20));
  const phentsize = data.readUInt16LE(0x36);
  const phnum = data.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (data.readUInt32LE(phoff + i * phentsize) === 3) return true;
  }
  return false;
}

const PT_NOTE = 4;
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point QEMU jumps to for an ELF kernel. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/**
 * True if the ELF kernel at `path` has a PVH entry point (CONFIG_PVH), so
 * QEMU can load it as is: the guest then skips the bzImage's decompressor,
 * ≈0.7 s of QEMU CPU per TCG boot. Reads only the headers and note segments.
 */
export async function hasPvhEntry(path: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path);
  } catch {
    return false;
  }
  try {
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    };
    const head = await read(0, 64);
    // ELF64, little-endian (x86-64).
    if (
      head.length < 64 ||
      !head.subarray(0, 4).equals(ELF_MAGIC) ||
      head[4] !== 2 ||
      head[5] !== 1
    ) {
      return false;
    }
    const phoff = Number(head.readBigUInt64LE(0x20));
    const phentsize = head.readUInt16LE(0x36);
    const phnum = head.readUInt16LE(0x38);
    const phdrs = await read(phoff, phentsize * phnum);
    for (let i = 0; i + 1 <= phnum && (i + 1) * phentsize <= phdrs.length; i++) {
      const ph = phdrs.subarray(i * phentsize);
      if (ph.readUInt32LE(0) !== PT_NOTE) continue;
      const size = Number(ph.readBigUInt64LE(32));
      if (size > 1 << 20) continue;
      const notes = await read(Number(ph.readBigUInt64LE(8)), size);
      for (let off = 0; off + 12 <= notes.length;) {
        const namesz = notes.readUInt32LE(off);
        const descsz = notes.readUInt32LE(off + 4);
        const type = notes.readUInt32LE(off + 8);
        const name = notes.subarray(off + 12, off + 12 + namesz).toString("latin1");
        if (name === "Xen\0" && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
        off += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
      }
    }
    return false;
  } finally {
    await fh.close();
  }
}
