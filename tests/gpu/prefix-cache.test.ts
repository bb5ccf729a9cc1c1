// The pool's reference counts and idle cached blocks, and the prefix cache's book:
// chained block hashes, the longest cached run, reclaim least recently released first
// (an entry goes whole), held blocks never reclaimed, and copy on write of shared blocks.
import { expect, test } from "bun:test";
import { BlockPool } from "../../src/cache/block-pool.ts";
import { Compactor } from "../../src/cache/compaction.ts";
import { KvCache } from "../../src/cache/kv-cache.ts";
import { blockHashes, PrefixCache } from "../../src/cache/prefix-cache.ts";
import { KernelContext } from "../../src/gpu/kernels.ts";
import { readBuffer } from "../../src/gpu/buffers.ts";
import { getGpu } from "../fixtures/gpu-helpers.ts";

test("chained block hashes: a block's hash names every token up to its end, and the salt", () => {
  const a = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const h = blockHashes(a, 4, "");
  expect(h).toHaveLength(2); // the partial third block has none
  const other = blockHashes([1, 2, 3, 4, 5, 6, 7, 9], 4, "");
  expect(other[0]).toBe(h[0]);
  expect(other[1]).not.toBe(h[1]);
  expect(blockHashes([0, 2, 3, 4, 5, 6, 7, 8], 4, "")[1]).not.toBe(h[1]); // the chain carries block 0
  expect(blockHashes(a, 4, "group:7")[0]).not.toBe(h[0]);
  expect(blockHashes([...a, 10, 11, 12], 4, "", h)).toEqual(blockHashes([...a, 10, 11, 12], 4, ""));
});

test("reference counts and idle cached blocks: free to allocate, reclaimed oldest first, never while held", async () => {
  const pool = new BlockPool((await getGpu()).device, 6, 4, 8);
  const cache = new PrefixCache(pool);
  const ids = pool.allocate(6)!;
  // three cached prompt blocks of two heads each
  cache.insert("b0", Int32Array.of(ids[0], ids[1]));
  cache.insert("b1", Int32Array.of(ids[2], ids[3]));
  cache.insert("b2", Int32Array.of(ids[4], ids[5]));
  expect(cache.match(["b0", "b1", "b2", "b3"], 9).map((e) => e.hash)).toEqual(["b0", "b1", "b2"]);
  expect(cache.match(["b0", "b1", "b2"], 2)).toHaveLength(2);
  expect(cache.match(["bx", "b1"], 9)).toHaveLength(0);
  // a second holder of b0's blocks; then every first holder lets go, b2 first
  pool.retain(ids[0]);
  pool.retain(ids[1]);
  expect(pool.isShared(ids[0])).toBe(true);
  pool.freeBlocks([ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]);
  expect(pool.numUsedBlocks).toBe(2);
  expect(pool.numIdleCachedBlocks).toBe(4);
  expect(pool.numFreeBlocks).toBe(4);
  // a hit holds b1 again: it is no longer idle
  pool.retain(ids[2]);
  pool.retain(ids[3]);
  expect(pool.numFreeBlocks).toBe(2);
  // pool short: the oldest idle block goes, and its entry (b2) with both its blocks
  const got = pool.allocate(2)!;
  expect(new Set(got)).toEqual(new Set([ids[4], ids[5]]));
  expect(cache.match(["b0", "b1", "b2"], 9)).toHaveLength(2);
  expect(pool.allocate(1)).toBeNull(); // b0 and b1 are held
  pool.freeBlocks([ids[0], ids[1], ids[2], ids[3], ...got]);
  expect(pool.numFreeBlocks).toBe(6);
  expect(pool.refCount(ids[0])).toBe(0);
  expect(() => pool.freeBlocks([ids[0]])).toThrow(/freed more often than held/);
  cache.clear();
  expect(pool.numIdleCachedBlocks).toBe(0);
  expect(pool.numFreeBlocks).toBe(6);
  expect(cache.match(["b0"], 9)).toHaveLength(0);
  pool.destroy();
});

test("copy on write: unshare gives a sequence private copies of shared blocks, their K/V and positions alike", async () => {
  const gpu = await getGpu();
  const kc = new KernelContext(gpu);
  const cache = new KvCache(gpu.device, { layers: 1, kvHeads: 2, headDim: 8, blockSize: 4, numBlocks: 12, maxSeqLen: 16, maxSeqs: 2 });
  const owner = cache.open()!;
  expect(cache.reserve(owner, 6)).toBe(true);
  cache.commit(owner, 6);
  // positions written by hand stand for the K/V the prefill would write
  const pos = new Uint32Array(12 * 4);
  for (let h = 0; h < 2; h++) owner.blocks[h].forEach((b, i) => { for (let j = 0; j < 4; j++) pos[b * 4 + j] = 100 * h + 4 * i + j; });
  gpu.device.queue.writeBuffer(cache.pool.pos, 0, pos);
  const seq = cache.open()!;
  cache.share(seq, owner.blocks, owner.lengths);
  expect(seq.blocks).toEqual(owner.blocks);
  expect(cache.pool.refCount(owner.blocks[0][0])).toBe(2);
  const compactor = new Compactor(kc, cache);
  expect(compactor.unshare(seq)).toBe(true);
  for (let h = 0; h < 2; h++) for (let i = 0; i < 2; i++) expect(seq.blocks[h][i]).not.toBe(owner.blocks[h][i]);
  expect(cache.pool.refCount(owner.blocks[0][0])).toBe(1);
  const after = new Uint32Array(await readBuffer(gpu.device, cache.pool.pos, 0, pos.byteLength));
  for (let h = 0; h < 2; h++) for (let t = 0; t < 6; t++) {
    const at = (l: number[]) => l[Math.floor(t / 4)] * 4 + (t % 4);
    expect(after[at(seq.blocks[h])]).toBe(after[at(owner.blocks[h])]);
    expect(after[at(seq.blocks[h])]).toBe(100 * h + t);
  }
  cache.release(seq);
  cache.release(owner);
  expect(cache.pool.numUsedBlocks).toBe(0);
  compactor.destroy();
  cache.destroy();
});
