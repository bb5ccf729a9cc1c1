// BlockPool and KvCache bookkeeping: per-head block lists, all-or-nothing reserve,
// rollback, release, and table uploads that match the host mirror.
import { expect, test } from "bun:test";
import { BlockPool } from "../../src/cache/block-pool.ts";
import { KvCache, parseBytes } from "../../src/cache/kv-cache.ts";
import { getGpu, readU32 } from "../fixtures/gpu-helpers.ts";

const opts = { layers: 2, kvHeads: 2, headDim: 8, blockSize: 4, numBlocks: 20, maxSeqLen: 32, maxSeqs: 3 };

test("pool allocates and frees in O(blocks), refusing what it can't give", async () => {
  const pool = new BlockPool((await getGpu()).device, 8, 4, 8);
  const a = pool.allocate(5)!;
  expect(new Set(a).size).toBe(5);
  expect(pool.allocate(4)).toBeNull();
  expect(pool.numFreeBlocks).toBe(3);
  pool.freeBlocks(a);
  expect(pool.numFreeBlocks).toBe(8);
  pool.destroy();
});

test("each (layer, kv head) gets its own blocks; reserve is all or nothing", async () => {
  const c = new KvCache((await getGpu()).device, opts);
  const s = c.open()!;
  expect(c.reserve(s, 5)).toBe(true); // 2 blocks x 4 heads
  expect(c.pool.numUsedBlocks).toBe(8);
  c.commit(s, 5);
  expect(c.blocksNeeded(s, 3)).toBe(0);
  expect(c.reserve(s, 4)).toBe(true); // 9 tokens -> 3 blocks per head
  c.commit(s, 4);
  expect(c.pool.numUsedBlocks).toBe(12);
  const t = c.open()!;
  expect(c.reserve(t, 9)).toBe(false); // would need 12, 8 free
  expect(c.pool.numUsedBlocks).toBe(12);
  expect(c.reserve(s, 100)).toBe(false); // past maxSeqLen
  const all = s.blocks.flat();
  expect(new Set(all).size).toBe(all.length);
  expect(c.tokensKept(s)).toBe(9 * 4);
  c.rollback(s, 2); // 7 tokens -> 2 blocks per head
  expect(c.pool.numUsedBlocks).toBe(8);
  c.release(s);
  c.release(t);
  expect(c.pool.numUsedBlocks).toBe(0);
  c.destroy();
});

test("block table on the GPU mirrors the host after flush", async () => {
  const c = new KvCache((await getGpu()).device, opts);
  c.open();
  const s = c.open()!; // slot 1
  c.reserve(s, 6);
  c.flush();
  const stride = Math.ceil(opts.maxSeqLen / opts.blockSize);
  const table = await readU32(c.table, 3 * 4 * stride);
  const heads = new Uint32Array(8);
  c.writeHeads(s, heads, 0);
  for (let h = 0; h < 4; h++) {
    const off = heads[2 * h];
    expect(off).toBe((s.slot * 4 + h) * stride);
    expect([...table.slice(off, off + 2)]).toEqual(s.blocks[h]);
  }
  c.destroy();
});

test("sizes parse with binary units", () => {
  expect(parseBytes("2GiB")).toBe(2 * 2 ** 30);
  expect(parseBytes("512MiB")).toBe(512 * 2 ** 20);
  expect(parseBytes("1.5G")).toBe(1.5 * 2 ** 30);
  expect(parseBytes("4096")).toBe(4096);
  expect(() => parseBytes("lots")).toThrow(/size/);
});
