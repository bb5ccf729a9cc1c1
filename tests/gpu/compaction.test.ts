// Compaction on the GPU: after an eviction plan, each head holds exactly its
// surviving K/V rows, positions and scores (no more, no fewer, none altered), the
// gather kernel reads them back, and emptied trailing blocks return to the pool.
import { expect, test } from "bun:test";
import { KvCache } from "../../src/cache/kv-cache.ts";
import { Compactor, compactionMoves } from "../../src/cache/compaction.ts";
import { getGpu, rand, readF32, readU32, variants } from "../fixtures/gpu-helpers.ts";

const opts = { layers: 2, kvHeads: 3, headDim: 8, blockSize: 4, numBlocks: 64, maxSeqLen: 64, maxSeqs: 2 };
const HALF = opts.headDim / 2;

test("compactionMoves fills holes below the new length from survivors above it", () => {
  const seq = { slot: 0, blocks: [[7, 2, 5]], lengths: Int32Array.from([10]) };
  const { moves, lengths } = compactionMoves(seq, [Int32Array.from([1, 4, 8])], 4);
  expect(lengths[0]).toBe(7);
  // holes 1 and 4 (< 7) take survivors 7 and 9 (8 is evicted); phys = block * 4 + offset
  expect(Array.from(moves)).toEqual([2 * 4 + 3, 7 * 4 + 1, 5 * 4 + 1, 2 * 4 + 0]);
  expect(() => compactionMoves(seq, [Int32Array.from([3, 3])], 4)).toThrow(/twice/);
  expect(() => compactionMoves(seq, [Int32Array.from([10])], 4)).toThrow(/range/);
});

test("kv_compact keeps exactly the surviving K/V, positions and scores; blocks go back", async () => {
  const gpu = await getGpu();
  const [{ kc }] = await variants();
  const cache = new KvCache(gpu.device, opts);
  const other = cache.open()!; // a neighbour whose data must not change
  const seq = cache.open()!;
  const lens = [23, 23, 23, 23, 23, 23];
  expect(cache.reserve(other, 9)).toBe(true);
  cache.commit(other, 9);
  expect(cache.reserve(seq, 23)).toBe(true);
  cache.commit(seq, 23);
  // random K/V words, position = 100 * head + index, random scores, in every slot of the pool
  const slots = opts.numBlocks * opts.blockSize;
  const k = new Uint32Array(rand(slots * HALF, 3).map((x) => Math.floor((x + 1) * 2 ** 31)));
  const v = new Uint32Array(rand(slots * HALF, 4).map((x) => Math.floor((x + 1) * 2 ** 31)));
  const pos = new Uint32Array(slots).fill(0xdead);
  const scores = rand(slots, 5);
  const phys = (s: typeof seq, h: number, i: number) => s.blocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize);
  for (let h = 0; h < cache.heads; h++) for (let i = 0; i < lens[h]; i++) pos[phys(seq, h, i)] = 100 * h + i;
  for (const [b, d] of [[cache.pool.k, k], [cache.pool.v, v], [cache.pool.pos, pos], [cache.pool.scores, scores]] as const) gpu.device.queue.writeBuffer(b, 0, d as Uint32Array<ArrayBuffer>);
  const origBlocks = seq.blocks.map((b) => [...b]);
  const origPhys = (h: number, i: number) => origBlocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize);

  // head 0 evicts nothing, head 1 everything but one, the others scattered sets
  const plan = [
    [],
    Array.from({ length: 22 }, (_, i) => i + 1),
    [0, 5, 6, 7, 22],
    [3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    [1, 2, 4, 8, 16],
    [21],
  ].map((e) => Int32Array.from(e));
  const compactor = new Compactor(kc, cache);
  const evicted = compactor.apply(seq, plan);
  expect(evicted).toBe(plan.reduce((a, e) => a + e.length, 0));

  const got = { k: await readU32(cache.pool.k, slots * HALF), v: await readU32(cache.pool.v, slots * HALF), pos: await readU32(cache.pool.pos, slots), scores: await readF32(cache.pool.scores, slots) };
  let blocks = 0;
  for (let h = 0; h < cache.heads; h++) {
    const gone = new Set(plan[h]);
    const want = new Map<number, number>(); // position -> original physical slot
    for (let i = 0; i < lens[h]; i++) if (!gone.has(i)) want.set(100 * h + i, i);
    expect(seq.lengths[h]).toBe(want.size);
    expect(seq.blocks[h].length).toBe(Math.ceil(want.size / opts.blockSize));
    blocks += seq.blocks[h].length;
    const seen = new Set<number>();
    for (let i = 0; i < seq.lengths[h]; i++) {
      const p = phys(seq, h, i);
      const orig = want.get(got.pos[p]);
      expect(orig).toBeDefined();
      seen.add(got.pos[p]);
      const o = origPhys(h, orig!);
      expect(Array.from(got.k.slice(p * HALF, (p + 1) * HALF))).toEqual(Array.from(k.slice(o * HALF, (o + 1) * HALF)));
      expect(Array.from(got.v.slice(p * HALF, (p + 1) * HALF))).toEqual(Array.from(v.slice(o * HALF, (o + 1) * HALF)));
      expect(got.scores[p]).toBe(scores[o]);
    }
    expect(seen.size).toBe(want.size);
  }
  expect(cache.pool.numUsedBlocks).toBe(cache.blocksUsed(other) + blocks);
  // the neighbour's slots are untouched
  for (let h = 0; h < cache.heads; h++) for (let i = 0; i < 9; i++) {
    const p = phys(other, h, i);
    expect(got.k[p * HALF]).toBe(k[p * HALF]);
    expect(got.pos[p]).toBe(pos[p]);
  }
  // gather reads back what the planner sees
  const keys = await compactor.gather(seq);
  for (let h = 0; h < cache.heads; h++) {
    expect(keys[h].pos.length).toBe(seq.lengths[h]);
    for (let i = 0; i < seq.lengths[h]; i++) {
      const p = phys(seq, h, i);
      expect(keys[h].pos[i]).toBe(got.pos[p]);
      expect(keys[h].scores[i]).toBe(got.scores[p]);
    }
  }
  // several sequences at once read back the same as each alone
  const both = await compactor.gatherMany([other, seq]);
  expect(both[1]).toEqual(keys);
  expect(both[0]).toEqual(await compactor.gather(other));
  expect(both[0][0].pos.length).toBe(9);
  cache.release(seq);
  cache.release(other);
  expect(cache.pool.numUsedBlocks).toBe(0);
  compactor.destroy();
  cache.destroy();
}, 120_000);
