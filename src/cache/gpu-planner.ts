// Eviction planning on the GPU for the score-ranked policies (kvcompress, snapkv):
// kernels/kv_rank.wgsl sorts every head's keys and sums them in chunks, the host reads
// back one count and a few chunk sums per head (not every score) and picks how many
// keys each head loses, then kernels/kv_evict.wgsl evicts that prefix of each head's
// order and compacts it in place. Many sequences share each dispatch and the readback.
import { GrowableBuffers, readBuffer } from "../gpu/buffers.ts";
import { kernelSource, nextPow2, type KernelContext } from "../gpu/kernels.ts";
import { StructArray, structLayout, type ParamLayout } from "../gpu/params.ts";
import type { CompressionOptions } from "./compression.ts";
import { METHODS } from "./methods.ts";
import type { KvCache, SeqCache } from "./kv-cache.ts";
import { chunkEvictCounts, uniformEvictCounts, type HeadChunkSums, type PlanContext } from "./policies.ts";

export interface GpuPlanRequest {
  cache: SeqCache;
  ctx: PlanContext;
  /** K/V entries to keep over all heads (keepBudget) */
  keep: number;
}

/** struct Head of kv_rank.wgsl / kv_evict.wgsl (kv_plan_head.wgsl): one per (request, KV head) */
let headLayout: ParamLayout | null = null;
const heads = (n: number) => new StructArray((headLayout ??= structLayout(kernelSource("kv_plan_head"), "Head")), n, "kv_plan_head Head");
const MAX_GROUPS_X = 65535;
/** kv_rank's smallest workgroup sort (and the sort length of the shortest head) */
const MIN_SORT_PAIRS = 16;
const ALL = 0xffffffff;

export class GpuPlanner {
  private ws: GrowableBuffers;
  private info = heads(0);
  private scratchBytes = 0;

  /** kv_rank's workgroup arrays: keys a head may have to sort there, and bitmap words of positions it can rank */
  readonly sizes: RankSizes;

  constructor(private kc: KernelContext, private cache: KvCache, maxWorkgroupBytes: number, sizes: Partial<RankSizes> = {}) {
    this.ws = new GrowableBuffers(kc.device, () => kc.forgetBindGroups());
    this.sizes = { ...rankSizes(maxWorkgroupBytes), ...sizes };
  }

  /** The policies this planner runs; the others plan on the host from gathered keys. */
  static handles(o: CompressionOptions): boolean {
    return METHODS[o.method].gpuPlanned;
  }

  /** Scratch bytes a request takes in one rank() (its sort arrays; one storage binding holds them all). */
  static scratchBytes(seq: SeqCache): number {
    let words = 0;
    for (const len of seq.lengths) words += 4 * nextPow2(len);
    return 4 * words;
  }

  /**
   * The requests cut into groups whose scratch fits one binding of `maxBytes`, in
   * order; a request too large alone is in no group (the host plans it).
   */
  static groups<T extends { cache: SeqCache }>(reqs: T[], maxBytes: number): T[][] {
    const groups: T[][] = [];
    let cur: T[] = [];
    let bytes = 0;
    for (const r of reqs) {
      const b = GpuPlanner.scratchBytes(r.cache);
      if (b > maxBytes) continue;
      if (bytes + b > maxBytes && cur.length) {
        groups.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(r);
      bytes += b;
    }
    if (cur.length) groups.push(cur);
    return groups;
  }

  /** Ranks every head of every request on the GPU; returns what each head reports. */
  async rank(reqs: GpuPlanRequest[]): Promise<HeadChunkSums[][]> {
    const c = this.cache;
    const { info, outBase, out } = this.encodeRank(reqs);
    const words = new Uint32Array(await readBuffer(this.kc.device, out, 0, outBase * 4));
    const sums = new Float32Array(words.buffer);
    return reqs.map((r, i) => {
      const ranked: HeadChunkSums[] = [];
      for (let h = 0; h < c.heads; h++) {
        const at = i * c.heads + h;
        const evictable = words[at];
        const from = info.get(at, "outBase");
        ranked.push({ len: info.get(at, "len"), evictable, sums: sums.subarray(from, from + Math.ceil(evictable / r.ctx.opts.chunkSize)) });
      }
      return ranked;
    });
  }

  /**
   * Writes the heads of `reqs` and submits kv_rank over them (one workgroup a head);
   * `out` receives the evictable counts and, from word `nHeads`, the chunk sums.
   */
  encodeRank(reqs: GpuPlanRequest[]): { info: StructArray; outBase: number; out: GPUBuffer } {
    const c = this.cache;
    const n = reqs.length * c.heads;
    const info = heads(n);
    const table = new Uint32Array(2 * c.heads);
    let base = 0;
    let outBase = n;
    let longestHead = 0;
    reqs.forEach((r, i) => {
      c.writeHeads(r.cache, table, 0);
      const o = r.ctx.opts;
      const protectFrom = Math.max(0, r.ctx.lastPos - o.protectedWindow + 1);
      for (let h = 0; h < c.heads; h++) {
        const len = table[2 * h + 1];
        info.set(i * c.heads + h, {
          tableOffset: table[2 * h], len, protectFrom, radius: Math.floor(o.poolKernel / 2), chunk: o.chunkSize, base, outBase, evict: 0, lenNow: len,
        });
        base += 4 * nextPow2(len);
        longestHead = Math.max(longestHead, nextPow2(len));
        outBase += Math.ceil(len / o.chunkSize);
      }
    });
    this.info = info;
    this.scratchBytes = base * 4;
    const bInfo = this.ws.get("info", info.words.byteLength);
    const scratch = this.ws.get("scratch", base * 4);
    const out = this.ws.get("ranked", outBase * 4);
    this.kc.device.queue.writeBuffer(bInfo, 0, info.words);
    c.flush();
    const st = this.kc.step();
    const { sortPairs, posWords } = this.sizes;
    const rank = (pairs: number, minNS: number, maxNS: number) =>
      st.dispatch(this.kc.kernel("kv_rank", { SORT_PAIRS: pairs, POS_WORDS: posWords, KPT: Math.max(1, pairs / 256) }),
        [bInfo, c.table, c.pool.scores, c.pool.pos, scratch, out], { BS: c.blockSize, nHeads: n, minNS, maxNS }, grid(n));
    // heads past the workgroup sort go through scratch; with the large arrays reserved
    // anyway they ran 2.7x slower (H200, 6000 keys a head: 12.45 against 4.65 ms for 2048 heads)
    if (longestHead > sortPairs && sortPairs > MIN_SORT_PAIRS) {
      rank(sortPairs, 0, sortPairs);
      rank(MIN_SORT_PAIRS, sortPairs, ALL);
    } else {
      rank(sortPairs, 0, ALL);
    }
    st.submit();
    return { info, outBase, out };
  }

  /** Per-head eviction counts of each request, from its ranking (host, cheap). */
  static counts(reqs: GpuPlanRequest[], ranked: HeadChunkSums[][]): Int32Array[] {
    return reqs.map((r, i) => (r.ctx.opts.method === "snapkv" ? uniformEvictCounts(ranked[i], r.keep) : chunkEvictCounts(ranked[i], r.ctx, r.keep)));
  }

  /**
   * Evicts `counts[i][h]` keys from each head of the requests last ranked and
   * compacts them; `live[i]` false skips a request (its sequence went away meanwhile).
   * Keys appended since the ranking (a decode round that ran in between) are kept.
   * Returns the K/V entries evicted per request.
   */
  evict(reqs: GpuPlanRequest[], counts: Int32Array[], live: boolean[]): number[] {
    const c = this.cache;
    const n = reqs.length * c.heads;
    const info = this.info;
    if (info.length !== n) throw new Error("evict() must follow rank() of the same requests");
    let any = false;
    reqs.forEach((r, i) => {
      for (let h = 0; h < c.heads; h++) {
        const e = live[i] ? counts[i][h] : 0;
        const at = i * c.heads + h;
        info.put(at, "evict", e);
        // keys appended since the ranking stay; the compaction moves them too
        if (live[i]) info.put(at, "lenNow", r.cache.lengths[h]);
        any ||= e > 0;
      }
    });
    if (any) {
      const bInfo = this.ws.get("info", info.words.byteLength);
      const scratch = this.ws.get("scratch", this.scratchBytes);
      this.kc.device.queue.writeBuffer(bInfo, 0, info.words);
      const st = this.kc.step();
      st.dispatch(this.kc.kernel("kv_evict"), [bInfo, c.table, scratch, c.pool.k, c.pool.v, c.pool.pos, c.pool.scores],
        { BS: c.blockSize, nHeads: n, half: c.opts.headDim / 2 }, grid(n));
      st.submit();
    }
    return reqs.map((r, i) => {
      if (!live[i]) return 0;
      let evicted = 0;
      for (let h = 0; h < c.heads; h++) {
        const e = Math.min(counts[i][h], r.cache.lengths[h]);
        r.cache.lengths[h] -= e;
        evicted += e;
      }
      c.trim(r.cache);
      return evicted;
    });
  }

  destroy() {
    this.ws.destroy();
  }
}

export interface RankSizes {
  /** keys a head may have to sort in workgroup memory (a power of two, 16..4096) */
  sortPairs: number;
  /** u32 words of kv_rank's position bitmap: it ranks heads whose positions are all below 32 posWords */
  posWords: number;
}

const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(Math.max(1, x)));

/**
 * kv_rank's workgroup arrays within `maxWorkgroupBytes`: the sort takes 8.5 bytes a key
 * (pairs and their padding) with 4 KiB left for the bitmap, which takes the rest (up to
 * 2048 words, positions below 65536); 1 KiB of prefix counts and a few words besides.
 */
export function rankSizes(maxWorkgroupBytes: number): RankSizes {
  const budget = maxWorkgroupBytes - 1024 - 64;
  const sortPairs = Math.min(4096, Math.max(MIN_SORT_PAIRS, floorPow2((budget - 4096) / 8.5)));
  const posWords = Math.min(2048, Math.max(8, floorPow2((budget - 8.5 * sortPairs) / 4)));
  return { sortPairs, posWords };
}

/** One workgroup per listed head, in a 2D grid past 65535. */
function grid(n: number): [number, number] {
  const x = Math.min(n, MAX_GROUPS_X);
  return [x, Math.ceil(n / x)];
}
