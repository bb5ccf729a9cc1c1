// kv_rank figures: GPU time of one ranking pass (every (layer, KV head) of `batch`
// sequences of `len` keys, one workgroup a head) along each of its paths side by side:
// positions ranked by the bitmap or by a sort in scratch, scores sorted in workgroup
// memory or in scratch (kernels/kv_rank.wgsl). The cache is the shape's (layers, KV
// heads) with a 4-wide head: kv_rank reads only positions and scores. Positions are a
// random 80% of 1.25 len, out of slot order as compaction leaves them; random scores.
import { KvCache } from "../src/cache/kv-cache.ts";
import { GpuPlanner, type GpuPlanRequest, type RankSizes } from "../src/cache/gpu-planner.ts";
import { DEFAULT_COMPRESSION } from "../src/cache/compression.ts";
import { keepBudget, type PlanContext } from "../src/cache/policies.ts";
import { capture, type GpuTimer, type TimeOptions } from "./profile.ts";
import type { Engine } from "../src/engine/engine.ts";
import { round, type BenchContext } from "./common.ts";
import { swapSlots, uniform } from "./random.ts";

const BLOCK = 16;
const PATHS: [string, Partial<RankSizes>][] = [
  // the planner's own sizes: heads past its workgroup sort go to the scratch-sort pipeline
  ["bitmap ranks, sort in workgroup memory", {}],
  ["positions sorted in scratch, sort in workgroup memory", { posWords: 8 }],
  ["bitmap ranks, sort in scratch", { sortPairs: 16 }],
];

export async function rankFigures(ctx: BenchContext, e: Engine, timer: GpuTimer, topt: TimeOptions, common: Record<string, unknown>, batch: number, lens: number[]) {
  const dev = e.gpu.device;
  for (const len of lens) {
    if (!ctx.deadline.fits(10000)) break;
    const perHead = Math.ceil(len / BLOCK);
    const opts = { layers: e.cfg.layers, kvHeads: e.cfg.kvHeads, headDim: 4, blockSize: BLOCK, numBlocks: batch * e.cfg.layers * e.cfg.kvHeads * perHead, maxSeqLen: len, maxSeqs: batch };
    const cache = new KvCache(dev, opts);
    try {
      const span = Math.ceil(1.25 * len);
      const pos = new Uint32Array(opts.numBlocks * BLOCK);
      const scores = new Float32Array(opts.numBlocks * BLOCK);
      const rnd = uniform(ctx.seed);
      const reqs: GpuPlanRequest[] = [];
      for (let b = 0; b < batch; b++) {
        const seq = cache.open()!;
        if (!cache.reserve(seq, len)) throw new Error("rank figures: the cache cannot hold the batch");
        cache.commit(seq, len);
        for (let h = 0; h < cache.heads; h++) {
          // len distinct positions of [0, span): a partial Fisher-Yates draw, then slots swapped
          const all = Uint32Array.from({ length: span }, (_, i) => i);
          for (let i = 0; i < len; i++) {
            const j = i + Math.floor(rnd() * (span - i));
            [all[i], all[j]] = [all[j], all[i]];
          }
          const mine = all.subarray(0, len).sort();
          swapSlots(mine, rnd);
          for (let i = 0; i < len; i++) {
            const p = seq.blocks[h][Math.floor(i / BLOCK)] * BLOCK + (i % BLOCK);
            pos[p] = mine[i];
            scores[p] = rnd() ** 4;
          }
        }
        const pctx: PlanContext = { layers: e.cfg.layers, kvHeads: e.cfg.kvHeads, lastPos: span - 1, logicalLen: span, opts: { ...DEFAULT_COMPRESSION, method: "kvcompress", rate: 1.02 }, seed: 1 };
        reqs.push({ cache: seq, ctx: pctx, keep: keepBudget(pctx) });
      }
      dev.queue.writeBuffer(cache.pool.pos, 0, pos);
      dev.queue.writeBuffer(cache.pool.scores, 0, scores);
      for (const [path, sizes] of PATHS) {
        const planner = new GpuPlanner(e.kc, cache, e.gpu.limits.maxComputeWorkgroupStorageSize, sizes);
        try {
          const list = capture(e.kc, () => planner.encodeRank(reqs));
          const t = await timer.time(list, { ...topt, passes: Math.min(3, topt.passes ?? 3) });
          const heads = batch * cache.heads;
          ctx.rep.emit({ ...common, suite: "kernels", test: "kv_rank", path, batch, keys_per_head: len, heads, sort_pairs: planner.sizes.sortPairs, pos_words: planner.sizes.posWords, ms: round(t.ms, 4), us_per_head: round((1000 * t.ms) / heads, 3), reps: t.reps });
        } finally {
          planner.destroy();
        }
      }
    } finally {
      cache.destroy();
    }
  }
}
