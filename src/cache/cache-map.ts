// A read-only map of one sequence's cache for people to look at (the playground):
// per (layer, KV head) the tokens kept and blocks held, and which original positions
// survive, counted into `bins` equal ranges of the context. Positions live only on the
// GPU (each slot of the pool keeps its own, the compaction moves them with the keys),
// so kernels/kv_survival.wgsl bins them there and the host reads back heads x bins
// words: nothing is tracked on the host, and nothing is paid until someone asks.
import { GrowableBuffers, readBuffer } from "../gpu/buffers.ts";
import { cdiv, type KernelContext } from "../gpu/kernels.ts";
import type { KvCache, SeqCache } from "./kv-cache.ts";

/** Most bins a map may ask for (kv_survival's products stay below 2^31 with positions < 2^21). */
export const MAX_MAP_BINS = 1024;

/** One sequence's cache, head by head (index layer * kvHeads + head, as the cache lays them out). */
export interface HeadsMap {
  /** positions the sequence's K/V cover (what an uncompressed head would hold) */
  context: number;
  tokensKept: Int32Array;
  blocks: Int32Array;
  bins: number;
  /**
   * [head][bin]: kept keys whose original position falls in the bin (binWidths says
   * how many positions each bin covers); null where every head keeps every position.
   */
  survival: Promise<Uint32Array> | null;
}

/** Positions bin i covers: those p with floor(p * bins / context) = i. */
export function binWidths(context: number, bins: number): Int32Array {
  const w = new Int32Array(bins);
  const start = (i: number) => Math.ceil((i * context) / bins);
  for (let i = 0; i < bins; i++) w[i] = start(i + 1) - start(i);
  return w;
}

/** CPU reference of kv_survival: each head's positions counted into bins. */
export function survivalReference(positions: ArrayLike<number>[], context: number, bins: number): Uint32Array {
  const out = new Uint32Array(positions.length * bins);
  positions.forEach((ps, h) => {
    for (let i = 0; i < ps.length; i++) if (ps[i] < context) out[h * bins + Math.floor((ps[i] * bins) / context)]++;
  });
  return out;
}

export class CacheMapper {
  private ws: GrowableBuffers;

  constructor(private kc: KernelContext, private cache: KvCache) {
    this.ws = new GrowableBuffers(kc.device, () => kc.forgetBindGroups());
  }

  /**
   * The map of `seq` as the GPU will hold it once the work submitted so far has run:
   * the host figures are read now, the survival dispatch and its readback are queued
   * now (so a later eviction cannot change what it reads). `evicted`: false when no
   * key of the sequence was ever evicted, so every head holds [0, context) and the
   * GPU is not asked.
   */
  map(seq: SeqCache, context: number, bins: number, evicted: boolean): HeadsMap {
    const c = this.cache;
    const n = c.heads;
    bins = Math.max(1, Math.min(MAX_MAP_BINS, bins, context || 1));
    const tokensKept = Int32Array.from(seq.lengths);
    const blocks = Int32Array.from(seq.blocks, (b) => b.length);
    if (!evicted || context === 0) return { context, tokensKept, blocks, bins, survival: null };
    const heads = new Uint32Array(2 * n);
    c.writeHeads(seq, heads, 0);
    const bHeads = this.ws.get("heads", heads.byteLength);
    const out = this.ws.get("survival", n * bins * 4);
    this.kc.device.queue.writeBuffer(bHeads, 0, heads);
    this.kc.device.queue.writeBuffer(out, 0, new Uint32Array(n * bins));
    c.flush();
    const st = this.kc.step();
    const longest = Math.max(1, ...tokensKept);
    st.dispatch(this.kc.kernel("kv_survival"), [bHeads, c.table, c.pool.pos, out], { BS: c.blockSize, nHeads: n, bins, context }, [cdiv(longest, 64), Math.min(n, 65535), cdiv(n, 65535)]);
    st.submit();
    // the copy is queued now, behind the dispatch and before anything reuses `out`
    const survival = readBuffer(this.kc.device, out, 0, n * bins * 4).then((b) => new Uint32Array(b));
    // a map nobody reads (most final ones) must not raise when the device goes first (shutdown)
    survival.catch(() => {});
    return { context, tokensKept, blocks, bins, survival };
  }

  destroy() {
    this.ws.destroy();
  }
}
