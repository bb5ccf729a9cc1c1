// Seeded inputs the planning benchmarks share (bench/planner.ts on the host,
// bench/rank.ts on the GPU).

/** A stream of uniform numbers in [0, 1) (a 32-bit LCG). */
export function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Swaps every 64th slot with a random one: positions out of slot order, as compaction leaves them. */
export function swapSlots(pos: Uint32Array, rnd: () => number) {
  for (let i = 0; i < pos.length; i += 64) {
    const j = Math.floor(rnd() * pos.length);
    [pos[i], pos[j]] = [pos[j], pos[i]];
  }
}
