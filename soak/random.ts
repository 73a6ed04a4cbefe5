/**
 * A seeded random source for the soaks (mulberry32: small, good enough to
 * pick cases), so a failure replays from its printed seed.
 */
export function seeded(seed: number): {
  random: () => number;
  pick: <T>(xs: readonly T[]) => T;
  int: (n: number) => number;
} {
  let state = seed >>> 0;
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(random() * n);
  return { random, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] as T };
}
