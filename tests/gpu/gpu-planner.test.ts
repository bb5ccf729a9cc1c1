// GPU eviction planning (kv_rank + kv_evict) against the host policies: for the same
// cache contents, every head keeps exactly the positions the host plan keeps, with
// their own K, V and scores (and keys appended between ranking and eviction stay),
// and emptied blocks return to the pool. Scores are
// multiples of 1/64 so chunk sums are exact in f32 and ties (many) are real ties.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { KvCache, type SeqCache } from "../../src/cache/kv-cache.ts";
import { Compactor } from "../../src/cache/compaction.ts";
import { GpuPlanner, type RankSizes } from "../../src/cache/gpu-planner.ts";
import { DEFAULT_COMPRESSION, type CompressionOptions } from "../../src/cache/compression.ts";
import { keepBudget, type PlanContext } from "../../src/cache/policies.ts";
import { policyFor } from "../../src/cache/methods.ts";
import { getGpu, readF32, readU32, variants } from "../fixtures/gpu-helpers.ts";
import { ROOT } from "../fixtures/helpers.ts";

const opts = { layers: 2, kvHeads: 3, headDim: 8, blockSize: 4, numBlocks: 1024, maxSeqLen: 600, maxSeqs: 3 };
const HALF = opts.headDim / 2;

function xorshift(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
}

/**
 * appended: keys each head gains between the ranking and the eviction (a decode round meanwhile);
 * sparseHead: a head whose keys score 0 but every 100th (AdaKV's floor binds there)
 */
interface Case { name: string; lens: number[]; pre: number; o: Partial<CompressionOptions>; appended?: number; sparseHead?: number }

/** A sequence of `len` tokens, thinned by a random first eviction (positions out of slot order). */
async function fill(cache: KvCache, compactor: Compactor, len: number, pre: number, seed: number, sparseHead = -1): Promise<SeqCache> {
  const gpu = await getGpu();
  const seq = cache.open()!;
  expect(cache.reserve(seq, len)).toBe(true);
  cache.commit(seq, len);
  const rnd = xorshift(seed);
  const phys = (h: number, i: number) => seq.blocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize);
  const pos = await readU32(cache.pool.pos, opts.numBlocks * opts.blockSize);
  const scores = await readF32(cache.pool.scores, opts.numBlocks * opts.blockSize);
  const k = await readU32(cache.pool.k, opts.numBlocks * opts.blockSize * HALF);
  const v = await readU32(cache.pool.v, opts.numBlocks * opts.blockSize * HALF);
  for (let h = 0; h < cache.heads; h++) {
    for (let i = 0; i < len; i++) {
      const p = phys(h, i);
      pos[p] = i;
      scores[p] = (rnd() % 64) / 64;
      if (h === sparseHead) scores[p] = i % 100 === 0 ? 1 : 0;
      for (let w = 0; w < HALF; w++) {
        k[p * HALF + w] = rnd();
        v[p * HALF + w] = rnd();
      }
    }
  }
  for (const [b, d] of [[cache.pool.k, k], [cache.pool.v, v], [cache.pool.pos, pos], [cache.pool.scores, scores]] as const) gpu.device.queue.writeBuffer(b, 0, d as Uint32Array<ArrayBuffer>);
  if (pre > 0) {
    // a different number of random keys gone from each head, the newest kept
    const plan = Array.from({ length: cache.heads }, (_, h) => {
      const gone = new Set<number>();
      const want = Math.min(len - 8, Math.floor((pre * (h + 1)) / cache.heads));
      while (gone.size < want) gone.add(rnd() % (len - 8));
      return Int32Array.from(gone);
    });
    compactor.apply(seq, plan);
  }
  return seq;
}

/** Appends n keys at positions from..from+n-1 to every head, random K/V and scores; returns them per head as `contents` does. */
async function append(cache: KvCache, seq: SeqCache, from: number, n: number, seed: number) {
  const gpu = await getGpu();
  const before = seq.lengths.slice();
  expect(cache.reserve(seq, n)).toBe(true);
  cache.commit(seq, n);
  cache.flush();
  const rnd = xorshift(seed);
  const size = opts.numBlocks * opts.blockSize;
  const [pos, scores, k, v] = [await readU32(cache.pool.pos, size), await readF32(cache.pool.scores, size), await readU32(cache.pool.k, size * HALF), await readU32(cache.pool.v, size * HALF)];
  for (let h = 0; h < cache.heads; h++) {
    for (let j = 0; j < n; j++) {
      const i = before[h] + j;
      const p = seq.blocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize);
      pos[p] = from + j;
      scores[p] = (rnd() % 64) / 64;
      for (let w = 0; w < HALF; w++) {
        k[p * HALF + w] = rnd();
        v[p * HALF + w] = rnd();
      }
    }
  }
  for (const [b, d] of [[cache.pool.k, k], [cache.pool.v, v], [cache.pool.pos, pos], [cache.pool.scores, scores]] as const) gpu.device.queue.writeBuffer(b, 0, d as Uint32Array<ArrayBuffer>);
  const all = await contents(cache, seq);
  return all.map((m) => new Map([...m].filter(([p]) => p >= from)));
}

/** Per head: position -> (K words, V words, score) of every kept key. */
async function contents(cache: KvCache, seq: SeqCache) {
  const n = opts.numBlocks * opts.blockSize;
  const [pos, scores, k, v] = [await readU32(cache.pool.pos, n), await readF32(cache.pool.scores, n), await readU32(cache.pool.k, n * HALF), await readU32(cache.pool.v, n * HALF)];
  return Array.from({ length: cache.heads }, (_, h) => {
    const m = new Map<number, string>();
    for (let i = 0; i < seq.lengths[h]; i++) {
      const p = seq.blocks[h][Math.floor(i / opts.blockSize)] * opts.blockSize + (i % opts.blockSize);
      m.set(pos[p], [...k.slice(p * HALF, (p + 1) * HALF), "|", ...v.slice(p * HALF, (p + 1) * HALF), "|", scores[p]].join(","));
    }
    return m;
  });
}

const cases: Case[] = [
  { name: "kvcompress rate 2, fresh prefill", lens: [157, 96], pre: 0, o: { method: "kvcompress", rate: 2, protectedWindow: 8 } },
  { name: "kvcompress rate 4 after earlier evictions", lens: [300, 211], pre: 120, o: { method: "kvcompress", rate: 4, protectedWindow: 16 } },
  { name: "kvcompress rate 8, keys appended between ranking and eviction", lens: [203, 150], pre: 50, o: { method: "kvcompress", rate: 8, protectedWindow: 8 }, appended: 6 },
  { name: "kvcompress rate 16, chunk 4, pool 1, even layers", lens: [260, 77], pre: 40, o: { method: "kvcompress", rate: 16, chunkSize: 4, poolKernel: 1, allocation: "layer" } },
  { name: "kvcompress max_cache_tokens, protected window larger than some heads", lens: [520, 64], pre: 200, o: { method: "kvcompress", maxCacheTokens: 40, protectedWindow: 48 } },
  { name: "snapkv rate 3", lens: [190, 133], pre: 60, o: { method: "snapkv", rate: 3, protectedWindow: 4 }, appended: 3 },
  // the allocations besides the default (ada, above): its floor binding on a sparse head; the others
  { name: "kvcompress ada rate 2, a sparse head", lens: [400, 150], pre: 20, o: { method: "kvcompress", rate: 2, protectedWindow: 8, allocation: "ada" }, sparseHead: 1 },
  { name: "kvcompress global rate 4", lens: [300, 211], pre: 120, o: { method: "kvcompress", rate: 4, protectedWindow: 8, allocation: "global" } },
  { name: "kvcompress global-norm rate 8", lens: [260, 180], pre: 30, o: { method: "kvcompress", rate: 8, protectedWindow: 8, allocation: "global-norm" }, sparseHead: 4 },
  { name: "kvcompress pyramid rate 3", lens: [330, 97], pre: 60, o: { method: "kvcompress", rate: 3, protectedWindow: 8, allocation: "pyramid" }, sparseHead: 2 },
];

// kv_rank's paths: positions ranked by the bitmap or (positions past a bitmap of 8 words)
// by a sort in scratch; scores sorted in workgroup memory or (a limit of 16 keys) in scratch
const paths: [string, Partial<RankSizes>][] = [
  ["bitmap ranks, sort in workgroup memory", {}],
  ["bitmap ranks, sort in scratch", { sortPairs: 16 }],
  ["positions sorted, sort in workgroup memory", { posWords: 8 }],
  ["positions sorted, sort in scratch", { sortPairs: 16, posWords: 8 }],
  // heads past 128 keys go to the second pipeline, the shorter ones sort in workgroup memory
  ["heads split between a workgroup sort of 128 keys and a scratch sort", { sortPairs: 128 }],
];
for (const [path, sizes] of paths) test(`GPU planning (${path}) keeps exactly what the host policy keeps, with its K/V; blocks go back`, async () => {
  const gpu = await getGpu();
  const [{ kc }] = await variants();
  for (const c of cases) {
    const cache = new KvCache(gpu.device, opts);
    const compactor = new Compactor(kc, cache);
    const planner = new GpuPlanner(kc, cache, gpu.limits.maxComputeWorkgroupStorageSize, sizes);
    const seqs: SeqCache[] = [];
    for (let i = 0; i < c.lens.length; i++) seqs.push(await fill(cache, compactor, c.lens[i], c.pre, 17 + 31 * i + c.lens[i], c.sparseHead));
    const co: CompressionOptions = { ...DEFAULT_COMPRESSION, ...c.o };
    const reqs = seqs.map((s, i) => {
      const ctx: PlanContext = { layers: opts.layers, kvHeads: opts.kvHeads, lastPos: c.lens[i] - 1, logicalLen: c.lens[i], opts: co, seed: 1 };
      return { cache: s, ctx, keep: keepBudget(ctx) };
    });
    // the host plan, applied to a copy of the expected contents
    const want = [];
    for (const r of reqs) {
      const keys = await compactor.gather(r.cache);
      const plan = policyFor(co)!.plan(keys, r.ctx, r.keep);
      const before = await contents(cache, r.cache);
      want.push(before.map((m, h) => {
        const gone = new Set(Array.from(plan[h], (i) => keys[h].pos[i]));
        return new Map([...m].filter(([p]) => !gone.has(p)));
      }));
    }
    const held = seqs.map((s) => cache.tokensKept(s) + cache.heads * (c.appended ?? 0));
    const ranked = await planner.rank(reqs);
    if (c.appended) {
      for (const [i, s] of seqs.entries()) {
        const added = await append(cache, s, c.lens[i], c.appended, 99 + i);
        want[i].forEach((m, h) => added[h].forEach((kv, p) => m.set(p, kv)));
      }
    }
    const counts = GpuPlanner.counts(reqs, ranked);
    const evicted = planner.evict(reqs, counts, reqs.map(() => true));
    let blocks = 0;
    for (let i = 0; i < reqs.length; i++) {
      const got = await contents(cache, seqs[i]);
      for (let h = 0; h < cache.heads; h++) {
        expect(seqs[i].lengths[h], `${c.name}: seq ${i} head ${h} length`).toBe(want[i][h].size);
        expect([...got[h].keys()].sort((a, b) => a - b), `${c.name}: seq ${i} head ${h}`).toEqual([...want[i][h].keys()].sort((a, b) => a - b));
        for (const [p, kv] of got[h]) expect(kv, `${c.name}: position ${p}`).toBe(want[i][h].get(p)!);
        expect(seqs[i].blocks[h].length).toBe(Math.ceil(seqs[i].lengths[h] / opts.blockSize));
        blocks += seqs[i].blocks[h].length;
      }
      expect(evicted[i]).toBe(held[i] - cache.tokensKept(seqs[i]));
      expect(cache.tokensKept(seqs[i])).toBeLessThanOrEqual(Math.max(reqs[i].keep, cache.heads * Math.min(c.lens[i], co.protectedWindow)) + cache.heads * (c.appended ?? 0));
    }
    expect(cache.pool.numUsedBlocks, c.name).toBe(blocks);
    expect(evicted.reduce((a, b) => a + b, 0), c.name).toBeGreaterThan(0);
    planner.destroy();
    compactor.destroy();
    cache.destroy();
  }
});

test("a request marked gone is ranked but not evicted", async () => {
  const gpu = await getGpu();
  const [{ kc }] = await variants();
  const cache = new KvCache(gpu.device, opts);
  const compactor = new Compactor(kc, cache);
  const planner = new GpuPlanner(kc, cache, gpu.limits.maxComputeWorkgroupStorageSize);
  const seq = await fill(cache, compactor, 120, 0, 5);
  const co: CompressionOptions = { ...DEFAULT_COMPRESSION, method: "kvcompress", rate: 4 };
  const ctx: PlanContext = { layers: opts.layers, kvHeads: opts.kvHeads, lastPos: 119, logicalLen: 120, opts: co };
  const reqs = [{ cache: seq, ctx, keep: keepBudget(ctx) }];
  const before = await contents(cache, seq);
  const counts = GpuPlanner.counts(reqs, await planner.rank(reqs));
  expect(counts[0].reduce((a, b) => a + b, 0)).toBe(cache.heads * 120 - keepBudget(ctx));
  expect(planner.evict(reqs, counts, [false])).toEqual([0]);
  expect(await contents(cache, seq)).toEqual(before);
  planner.destroy();
  compactor.destroy();
  cache.destroy();
});

test("passes are grouped so each group's scratch fits one binding; a sequence too large alone goes to the host", () => {
  const seq = (lens: number[]) => ({ cache: { slot: 0, blocks: lens.map(() => []), lengths: Int32Array.from(lens) } });
  // 4 words of the next power of two per head: 100 -> 128 -> 2 KiB, 5 -> 8 -> 128 B
  expect(GpuPlanner.scratchBytes(seq([100, 5]).cache)).toBe(4 * 4 * (128 + 8));
  const a = seq([100, 100]), b = seq([100]), c = seq([3000]), d = seq([1]);
  // c alone needs 64 KiB: in no group
  expect(GpuPlanner.groups([a, b, c, d], 4096)).toEqual([[a], [b, d]]);
});

test("under Deno (wgpu) kv_rank's paths plan what the host policy plans", () => {
  const r = spawnSync("deno", ["run", "-A", "tests/gpu/deno/gpu-planner-parity.ts"], { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  expect(r.stderr).not.toContain("error");
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
  expect(out.mismatches).toEqual([]);
  expect(out.heads).toBe(54);
  expect(r.status).toBe(0);
}, 300_000);
