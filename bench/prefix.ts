// Prefix caching: time to first token of a request whose long prefix (a system prompt,
// a document) an earlier request already sent, against the first one's (cold). Each
// repeat takes a fresh random prefix, so the cold request finds nothing cached; the warm
// one asks the same prefix with another suffix. Modes:
//   none          automatic prefix caching: the warm request holds the cold one's blocks
//                 and prefills only the suffix (and the partial block before it)
//   cache_prefix  kv_compression.cache_prefix with `method` at `rate`: the cold request
//                 compresses its prefix once, query-agnostically; the warm one starts
//                 from that compressed state
import type { Engine } from "../src/engine/engine.ts";
import { Sequence } from "../src/engine/sequence.ts";
import type { CompressionOptions } from "../src/cache/compression.ts";
import { configFromShape, shapeByName } from "./shapes.ts";
import { GREEDY, kvBytesFor, randomIds, round, syntheticEngine, type BenchContext } from "./common.ts";
import { warmUp } from "./e2e.ts";
import { median } from "./profile.ts";

export interface PrefixOptions {
  shape: string;
  /** tokens of the shared prefix */
  prefixLen: number;
  /** tokens after it, different in every request */
  suffixLen: number;
  repeats: number;
  /** compressed prefixes (cache_prefix): method and rate; rate 0 skips them */
  method: CompressionOptions["method"];
  rate: number;
}

export const PREFIX_DEFAULTS: PrefixOptions = { shape: "1b", prefixLen: 2000, suffixLen: 32, repeats: 3, method: "kvcompress", rate: 8 };

/** One request alone: its time to first token and what it found cached. */
async function firstToken(e: Engine, prompt: number[], compression: Partial<CompressionOptions>, prefixEnd: number) {
  const t0 = performance.now();
  let t1 = NaN;
  const s = new Sequence(prompt, { maxTokens: 2, sampling: GREEDY, ignoreEos: true, compression, prefixEnd, onToken: () => (t1 = Number.isNaN(t1) ? performance.now() : t1) });
  e.add(s);
  await e.runUntilIdle();
  return { ms: t1 - t0, cached: s.cachedTokens };
}

export async function prefixSuite(ctx: BenchContext, o: PrefixOptions) {
  const { rep } = ctx;
  const shape = shapeByName(o.shape);
  const len = o.prefixLen + o.suffixLen;
  const cfg0 = configFromShape(shape, 1);
  // the cold and warm requests' blocks and the cached ones of every repeat stay
  const e = await syntheticEngine(ctx, shape, { maxContext: len + 64, kvMemory: kvBytesFor(cfg0, o.repeats + 3, len + 16), maxSeqs: 4 });
  try {
    await warmUp(e, ctx);
    const modes: [string, Partial<CompressionOptions>][] = [["none", {}]];
    if (o.rate > 0) modes.push([`cache_prefix ${o.method} ${o.rate}x`, { method: o.method, rate: o.rate, cachePrefix: true, compressOnce: true }]);
    for (const [mode, compression] of modes) {
      const cold: number[] = [], warm: number[] = [];
      let cached = 0;
      // the first pair compiles what this mode runs (compression kernels) and is not counted
      for (let r = -1; r < o.repeats; r++) {
        if (!ctx.deadline.fits(20000)) break;
        const seed = ctx.seed + 1000 * (r + 2) + (compression.method ? 500 : 0);
        const prefix = randomIds(o.prefixLen, seed, e.cfg.vocab);
        const a = await firstToken(e, [...prefix, ...randomIds(o.suffixLen, seed + 1, e.cfg.vocab)], compression, o.prefixLen);
        const b = await firstToken(e, [...prefix, ...randomIds(o.suffixLen, seed + 2, e.cfg.vocab)], compression, o.prefixLen);
        if (r < 0) continue;
        cold.push(a.ms);
        warm.push(b.ms);
        cached = b.cached;
      }
      if (!cold.length) {
        rep.emit({ suite: "prefix", test: "prefix_ttft", shape: shape.name, mode, skipped: "deadline" });
        continue;
      }
      const c = median(cold), w = median(warm);
      rep.emit({
        suite: "prefix", test: "prefix_ttft", shape: shape.name, mode, prefix_len: o.prefixLen, suffix_len: o.suffixLen, repeats: cold.length,
        cold_ttft_ms: round(c, 2), warm_ttft_ms: round(w, 2), speedup: round(c / w, 2), cached_tokens: cached,
        cold_ms: cold.map((x) => round(x, 2)), warm_ms: warm.map((x) => round(x, 2)),
      });
    }
  } finally {
    e.destroy();
  }
}
