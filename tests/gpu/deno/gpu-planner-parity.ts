// Run by tests/gpu/gpu-planner.test.ts under Deno (wgpu, naga): kv_rank's paths give every
// head the eviction count the host policy plans, on caches whose slots are out of
// position order (a first eviction shuffled them). Prints one JSON line; exit 1 on a mismatch.
import { createGpu } from "../../../src/gpu/device.ts";
import { KernelContext } from "../../../src/gpu/kernels.ts";
import { KvCache } from "../../../src/cache/kv-cache.ts";
import { Compactor } from "../../../src/cache/compaction.ts";
import { GpuPlanner, type RankSizes } from "../../../src/cache/gpu-planner.ts";
import { DEFAULT_COMPRESSION } from "../../../src/cache/compression.ts";
import { keepBudget } from "../../../src/cache/policies.ts";
import { policyFor } from "../../../src/cache/methods.ts";

const gpu = await createGpu();
const kc = new KernelContext(gpu);
const opts = { layers: 2, kvHeads: 3, headDim: 8, blockSize: 4, numBlocks: 2048, maxSeqLen: 1200, maxSeqs: 3 };
let s = 12345;
const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
const paths: [string, Partial<RankSizes>][] = [["bitmap, workgroup memory", {}], ["bitmap, scratch", { sortPairs: 16 }], ["positions sorted, workgroup memory", { posWords: 8 }]];
const mismatches: string[] = [];
let heads = 0;
for (const [path, sizes] of paths) {
  for (const lens of [[300, 157], [1100]]) {
    const cache = new KvCache(gpu.device, opts);
    const compactor = new Compactor(kc, cache);
    const planner = new GpuPlanner(kc, cache, gpu.limits.maxComputeWorkgroupStorageSize, sizes);
    const seqs = lens.map((len) => {
      const q = cache.open()!;
      if (!cache.reserve(q, len)) throw new Error("pool too small");
      cache.commit(q, len);
      return q;
    });
    const pos = new Uint32Array(opts.numBlocks * opts.blockSize), sc = new Float32Array(opts.numBlocks * opts.blockSize);
    seqs.forEach((q, i) => {
      for (let h = 0; h < cache.heads; h++) {
        for (let j = 0; j < lens[i]; j++) {
          const p = q.blocks[h][Math.floor(j / opts.blockSize)] * opts.blockSize + (j % opts.blockSize);
          pos[p] = j;
          sc[p] = (rnd() % 64) / 64; // multiples of 1/64: exact sums, real ties
        }
      }
    });
    gpu.device.queue.writeBuffer(cache.pool.pos, 0, pos);
    gpu.device.queue.writeBuffer(cache.pool.scores, 0, sc);
    // a random first eviction per head: the compaction leaves slots out of position order
    for (const q of seqs) compactor.apply(q, Array.from({ length: cache.heads }, (_, h) => {
      const gone = new Set<number>();
      while (gone.size < 10 + 7 * h) gone.add(rnd() % (q.lengths[h] - 8));
      return Int32Array.from(gone);
    }));
    const co = { ...DEFAULT_COMPRESSION, method: "kvcompress" as const, rate: 3, protectedWindow: 8 };
    const reqs = seqs.map((q, i) => {
      const ctx = { layers: opts.layers, kvHeads: opts.kvHeads, lastPos: lens[i] - 1, logicalLen: lens[i], opts: co, seed: 1 };
      return { cache: q, ctx, keep: keepBudget(ctx) };
    });
    const counts = GpuPlanner.counts(reqs, await planner.rank(reqs));
    for (const [i, r] of reqs.entries()) {
      const plan = policyFor(co)!.plan(await compactor.gather(r.cache), r.ctx, r.keep);
      for (let h = 0; h < cache.heads; h++, heads++) if (plan[h].length !== counts[i][h]) mismatches.push(`${path} len ${lens[i]} head ${h}: host ${plan[h].length}, GPU ${counts[i][h]}`);
    }
    planner.destroy();
    compactor.destroy();
    cache.destroy();
  }
}
console.log(JSON.stringify({ heads, mismatches }));
gpu.device.destroy();
(globalThis as { Deno?: { exit(code: number): never } }).Deno?.exit(mismatches.length ? 1 : 0);
