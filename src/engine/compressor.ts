// Compressor: scores -> plan -> compaction for the sequences due, each per its own
// options. The method registry says which policy plans a sequence and whether the
// GPU planner can; the GPU ranks those in as few passes as its binding allows, the
// rest are gathered (one readback for all) and planned on the host.
import type { KernelContext } from "../gpu/kernels.ts";
import type { KvCache, SeqCache } from "../cache/kv-cache.ts";
import { Compactor } from "../cache/compaction.ts";
import { GpuPlanner } from "../cache/gpu-planner.ts";
import { policyFor } from "../cache/methods.ts";
import { keepBudget, type CompressionPolicy, type PlanContext } from "../cache/policies.ts";
import type { ModelConfig } from "../model/config.ts";
import type { Sequence } from "./sequence.ts";
import type { EngineStats } from "./stats.ts";

export interface CompressorOptions {
  /** plan kvcompress / snapkv on the GPU; false plans every policy on the host */
  gpuPlanner: boolean;
  maxWorkgroupBytes: number;
  maxBindingBytes: number;
}

export class Compressor {
  private compactor: Compactor;
  private planner: GpuPlanner;

  constructor(
    kc: KernelContext,
    private cache: KvCache,
    private cfg: ModelConfig,
    private opts: CompressorOptions,
    private stats: EngineStats,
  ) {
    this.compactor = new Compactor(kc, cache);
    this.planner = new GpuPlanner(kc, cache, opts.maxWorkgroupBytes);
  }

  /**
   * Gives `fork` a copy of `parent`'s cache and progress, then compresses it by its own
   * options (forks one at a time, so uncompressed copies never pile up in the pool).
   */
  async fork(parent: Sequence, fork: Sequence) {
    const cache = this.cache.fork(parent.cache!);
    if (!cache) throw new Error(`KV cache too small to fork a ${parent.numComputedTokens}-token sequence; raise --kv-memory or --batch`);
    this.compactor.copy(parent.cache!, cache);
    fork.cache = cache;
    fork.numComputedTokens = parent.numComputedTokens;
    fork.numWrittenTokens = parent.numWrittenTokens;
    await this.compress(fork.compressing ? [fork] : []);
  }

  /**
   * Compresses each sequence of `seqs` whose cache is over its budget. The scores
   * and positions of all of them come back in one readback (Deno pays ~10 ms per
   * map). `queueBehind`: called once the GPU ranking is submitted, when one GPU pass
   * is all there is, to put the next decode round in behind it; returns whether it did.
   * `beforeEvict` (idempotent): awaited before anything is evicted, so the engine can take
   * the tokens of the round the ranking ran behind first: a sequence that ended inside
   * that round (EOS) holds lookahead keys past its end, which the ranking counted as the
   * newest, so it must be released (and skipped) rather than compressed.
   */
  async compress(seqs: Sequence[], queueBehind: (() => boolean) | null = null, beforeEvict: (() => Promise<void>) | null = null) {
    const t0 = performance.now();
    const due: { seq: Sequence; cache: SeqCache; policy: CompressionPolicy; ctx: PlanContext; keep: number }[] = [];
    for (const seq of seqs) {
      seq.stepsSinceCompress = 0;
      const policy = policyFor(seq.compression);
      if (!policy || !seq.cache) continue;
      seq.compressions++;
      this.stats.compressions++;
      const ctx: PlanContext = {
        layers: this.cfg.layers,
        kvHeads: this.cfg.kvHeads,
        lastPos: seq.numWrittenTokens - 1,
        logicalLen: seq.numWrittenTokens,
        opts: seq.compression,
        seed: seq.id,
      };
      const keep = keepBudget(ctx);
      if (this.cache.tokensKept(seq.cache) > keep) due.push({ seq, cache: seq.cache, policy, ctx, keep });
    }
    // the GPU planner's scratch of one pass lives in one storage binding: passes that
    // would outgrow it run in several groups, and a sequence too large alone plans on the host
    const groups = GpuPlanner.groups(due.filter((d) => this.opts.gpuPlanner && GpuPlanner.handles(d.ctx.opts)), this.opts.maxBindingBytes);
    const onGpu = new Set(groups.flat());
    const onHost = due.filter((d) => !onGpu.has(d));
    // one GPU pass and nothing planned on the host: the next round can go in behind it
    const behind = queueBehind !== null && groups.length === 1 && !onHost.length;
    let roundMs = 0;
    for (const group of groups) {
      const tr = performance.now();
      const reqs = group.map((d) => ({ cache: d.cache, ctx: d.ctx, keep: d.keep }));
      const ranking = this.planner.rank(reqs);
      if (behind) {
        // the next round decodes on the GPU behind the ranking while the host plans;
        // its keys land past the ranked ones, and the eviction keeps and moves them
        const tb = performance.now();
        const queued = queueBehind!();
        roundMs = performance.now() - tb;
        if (queued) this.stats.compressOverlapped++;
      }
      const ranked = await ranking;
      const t1 = performance.now();
      const counts = GpuPlanner.counts(reqs, ranked);
      const t2 = performance.now();
      this.stats.gatherMs += t1 - tr - roundMs;
      this.stats.planMs += t2 - t1;
      await beforeEvict?.();
      const evicted = this.planner.evict(reqs, counts, group.map((d) => d.seq.cache === d.cache)); // cancelled or ended while ranking: skipped
      group.forEach((d, i) => {
        d.seq.evictedTokens += evicted[i];
        this.stats.evictedTokens += evicted[i];
      });
      this.stats.applyMs += performance.now() - t2;
    }
    if (onHost.length) {
      const tg = performance.now();
      const keys = await this.compactor.gatherMany(onHost.map((d) => d.cache));
      this.stats.gatherMs += performance.now() - tg;
      await beforeEvict?.();
      onHost.forEach((d, i) => {
        if (d.seq.cache !== d.cache) return; // cancelled while the scores were read
        const t1 = performance.now();
        const plan = d.policy.plan(keys[i], d.ctx, d.keep);
        const t2 = performance.now();
        const evicted = this.compactor.apply(d.cache, plan);
        d.seq.evictedTokens += evicted;
        this.stats.evictedTokens += evicted;
        this.stats.planMs += t2 - t1;
        this.stats.applyMs += performance.now() - t2;
      });
    }
    this.stats.compressMs += performance.now() - t0 - roundMs;
  }

  destroy() {
    this.compactor.destroy();
    this.planner.destroy();
  }
}
