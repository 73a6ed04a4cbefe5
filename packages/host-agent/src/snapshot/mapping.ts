/**
 * Building and overlaying mapping entries. Kept apart from the file IO so
 * the interval arithmetic can be read (and tested) on its own.
 */
import { NIL_BUILD_ID, type MappingEntry } from "./header.ts";

/** Appends entries in offset order, merging each with the previous one when they continue it. */
export class MappingBuilder {
  readonly entries: MappingEntry[] = [];

  push(e: MappingEntry): void {
    if (e.length === 0) return;
    const last = this.entries.at(-1);
    if (
      last !== undefined &&
      last.buildId === e.buildId &&
      last.offset + last.length === e.offset &&
      (e.buildId === NIL_BUILD_ID || last.storageOffset + last.length === e.storageOffset)
    ) {
      last.length += e.length;
      return;
    }
    this.entries.push(e.buildId === NIL_BUILD_ID ? { ...e, storageOffset: 0 } : { ...e });
  }
}

/**
 * Lays `over` (sorted, non-overlapping, not necessarily covering) over
 * `base` (sorted, covering): where `over` has an entry it wins, elsewhere
 * the base shows through, its storage offsets shifted with any split.
 */
export function overlayMapping(
  base: readonly MappingEntry[],
  over: readonly MappingEntry[],
): MappingEntry[] {
  const out = new MappingBuilder();
  let oi = 0;
  for (const b of base) {
    let pos = b.offset;
    const end = b.offset + b.length;
    while (pos < end) {
      // Skip overlay entries that end before pos (already emitted).
      while (
        oi < over.length &&
        (over[oi] as MappingEntry).offset + (over[oi] as MappingEntry).length <= pos
      ) {
        oi++;
      }
      const o = over[oi];
      if (o === undefined || o.offset >= end) {
        out.push(slice(b, pos, end));
        pos = end;
      } else if (o.offset > pos) {
        out.push(slice(b, pos, o.offset));
        pos = o.offset;
      } else {
        // The overlay entry covers pos; emit the part of it that lies within this base entry.
        const oEnd = Math.min(o.offset + o.length, end);
        out.push(slice(o, pos, oEnd));
        pos = oEnd;
      }
    }
  }
  return out.entries;
}

function slice(e: MappingEntry, from: number, to: number): MappingEntry {
  return {
    offset: from,
    length: to - from,
    buildId: e.buildId,
    storageOffset: e.buildId === NIL_BUILD_ID ? 0 : e.storageOffset + (from - e.offset),
  };
}
