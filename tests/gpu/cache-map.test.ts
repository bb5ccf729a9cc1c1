// The cache map (src/cache/cache-map.ts): kv_survival counts each head's kept positions
// into bins exactly as the CPU reference does, whatever order the slots hold them in;
// and on kvc-nano a compressed sequence's map, taken as it ends, matches its cache:
// per-head counts sum to what each head keeps, and the protected window survives everywhere.
import { expect, test } from "bun:test";
import { KvCache } from "../../src/cache/kv-cache.ts";
import { CacheMapper, binWidths, survivalReference } from "../../src/cache/cache-map.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { getGpu, variants } from "../fixtures/gpu-helpers.ts";
import { engineFor, GREEDY, ROOT } from "../fixtures/helpers.ts";

test("binWidths cover the context once", () => {
  for (const [c, b] of [[10, 4], [7, 7], [100000, 256], [5, 1], [1000, 999]]) {
    const w = binWidths(c, b);
    expect(w.reduce((a, x) => a + x, 0)).toBe(c);
    expect(Math.max(...w) - Math.min(...w)).toBeLessThanOrEqual(1);
    // bin i is where floor(p * b / c) puts p
    let p = 0;
    w.forEach((n, i) => {
      for (let k = 0; k < n; k++, p++) expect(Math.floor((p * b) / c)).toBe(i);
    });
  }
});

test("kv_survival bins every head's kept positions as the reference does", async () => {
  const gpu = await getGpu();
  const [{ kc }] = await variants();
  const opts = { layers: 2, kvHeads: 3, headDim: 8, blockSize: 4, numBlocks: 128, maxSeqLen: 64, maxSeqs: 2 };
  const cache = new KvCache(gpu.device, opts);
  const other = cache.open()!;
  expect(cache.reserve(other, 5)).toBe(true);
  cache.commit(other, 5);
  const seq = cache.open()!;
  expect(cache.reserve(seq, 40)).toBe(true);
  cache.commit(seq, 40);
  const context = 37;
  // each head keeps a different shuffled subset of [0, context), plus one stale slot past it
  const positions: number[][] = [];
  const pos = new Uint32Array(opts.numBlocks * opts.blockSize).fill(0xdead);
  for (let h = 0; h < cache.heads; h++) {
    const kept = Array.from({ length: context }, (_, p) => p).filter((p) => (p * (h + 3)) % (h + 2) !== 1);
    kept.reverse();
    if (h % 2) kept.push(context + h);
    positions.push(kept);
    seq.lengths[h] = kept.length;
    kept.forEach((p, i) => (pos[seq.blocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize)] = p));
  }
  cache.trim(seq);
  gpu.device.queue.writeBuffer(cache.pool.pos, 0, pos);
  const mapper = new CacheMapper(kc, cache);
  for (const bins of [1, 5, 37, 256]) {
    const m = mapper.map(seq, context, bins, true);
    expect(m.bins).toBe(Math.min(bins, context));
    expect(Array.from(m.tokensKept)).toEqual(positions.map((p) => p.length));
    expect(Array.from(m.blocks)).toEqual(positions.map((p) => Math.ceil(p.length / opts.blockSize)));
    expect(Array.from(await m.survival!)).toEqual(Array.from(survivalReference(positions, context, m.bins)));
  }
  expect(mapper.map(seq, context, 8, false).survival).toBeNull();
  mapper.destroy();
  cache.destroy();
});

test("a compressed sequence's map as it ends: counts sum to each head's keys, the protected window survives", async () => {
  const engine = await engineFor(`${ROOT}/models/kvc-nano`);
  const prompt = engine.tokenizer.encode("The President said that the Union is strong, and that the people of the United States ".repeat(6));
  const protectedWindow = 8;
  const seq = new Sequence(prompt, {
    maxTokens: 20,
    sampling: GREEDY,
    ignoreEos: true,
    compression: { method: "kvcompress", rate: 4, protectedWindow, interval: 8 },
    mapAtRelease: 64,
  });
  engine.add(seq);
  await engine.runUntilIdle();
  const m = seq.finalMap!;
  expect(m).not.toBeNull();
  expect(seq.evictedTokens).toBeGreaterThan(0);
  expect(m.context).toBe(seq.kv.contextTokens);
  expect(m.tokensKept.reduce((a, b) => a + b, 0)).toBe(seq.kv.tokensKept);
  expect(m.blocks.reduce((a, b) => a + b, 0)).toBe(seq.kv.blocksUsed);
  const surv = await m.survival!;
  const widths = binWidths(m.context, m.bins);
  const heads = engine.cache.heads;
  let varied = false;
  for (let h = 0; h < heads; h++) {
    const row = surv.subarray(h * m.bins, (h + 1) * m.bins);
    expect(row.reduce((a, b) => a + b, 0)).toBe(m.tokensKept[h]);
    row.forEach((n, i) => expect(n).toBeLessThanOrEqual(widths[i]));
    // the last bin lies inside the protected window (64 bins over ~150 positions: 2-3 each)
    expect(row[m.bins - 1]).toBe(widths[m.bins - 1]);
    varied ||= m.tokensKept[h] !== m.tokensKept[0];
  }
  // kvcompress keeps different numbers of keys in different heads
  expect(varied).toBe(true);
});
