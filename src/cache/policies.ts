// Compression policies: scores in, per-head eviction sets out. Pure functions over
// host arrays; the cache applies the result (compaction.ts) without knowing which
// policy chose it.
//
// Every policy works on the sequence's keys as they sit in the cache, per
// (layer, KV head): their accumulated squared-attention scores and original positions.
//
// Long file: the four policies share their scoring, chunking and budget helpers, and
// read best side by side.
import type { CompressionOptions } from "./compression.ts";

export interface HeadKeys {
  scores: Float32Array; // accumulated metric per kept key
  pos: Uint32Array; // original position per kept key
}

export interface PlanContext {
  layers: number;
  kvHeads: number;
  /** position of the newest token in the cache */
  lastPos: number;
  /** tokens of the sequence (logical length), for rate budgets */
  logicalLen: number;
  opts: CompressionOptions;
  /** seeds KVCrush's random anchor */
  seed?: number;
}

/** Logical indices (into each head's key list) to evict, per head. */
export type EvictionPlan = Int32Array[];

export interface CompressionPolicy {
  plan(keys: HeadKeys[], ctx: PlanContext, keepTotal: number): EvictionPlan;
}

const SINKS = 4; // StreamingLLM's attention sinks

/**
 * Total K/V entries the sequence may keep across all (layer, KV head) pairs: total /
 * rate of its logical tokens, or max_cache_tokens per head on average; never below
 * the protected window per head.
 */
export function keepBudget(ctx: PlanContext): number {
  const heads = ctx.layers * ctx.kvHeads;
  const o = ctx.opts;
  const full = heads * ctx.logicalLen;
  let keep = o.maxCacheTokens !== null ? o.maxCacheTokens * heads : o.rate !== null ? Math.floor(full / o.rate) : full;
  keep = Math.max(keep, heads * Math.min(ctx.logicalLen, o.protectedWindow));
  return Math.min(keep, full);
}

// Sorting packs (key, index) into one f64 and uses the native numeric sort: planning
// runs on the host for every compressed sequence, and comparator sorts are the cost.
const LOW = 2 ** 21; // indices below 2^21 (keys per head, chunks per sequence)
const f32Bits = new Uint32Array(1);
const f32View = new Float32Array(f32Bits.buffer);
/** Order-preserving integer of a non-negative f32 (its bit pattern). */
function f32Key(x: number): number {
  f32View[0] = x > 0 ? x : 0;
  return f32Bits[0];
}

/** Slots of one head in position order. */
function positionOrder(k: HeadKeys): Uint32Array {
  const n = k.pos.length;
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = k.pos[i - 1] < k.pos[i];
  if (sorted) {
    const id = new Uint32Array(n);
    for (let i = 0; i < n; i++) id[i] = i;
    return id;
  }
  const packed = new Float64Array(n);
  for (let i = 0; i < n; i++) packed[i] = k.pos[i] * LOW + i;
  packed.sort();
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = packed[i] % LOW;
  return order;
}

/** Max-pool of each key's score over its `kernel` neighbours in position order. */
export function pooledScores(k: HeadKeys, kernel: number, order = positionOrder(k)): Float32Array {
  const n = k.scores.length;
  const r = Math.floor(kernel / 2);
  const out = new Float32Array(n);
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = k.scores[order[i]];
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    const hi = Math.min(n - 1, i + r);
    for (let j = Math.max(0, i - r); j <= hi; j++) if (s[j] > m) m = s[j];
    out[order[i]] = m;
  }
  return out;
}

const isProtected = (pos: number, ctx: PlanContext) => pos > ctx.lastPos - ctx.opts.protectedWindow;

/**
 * Moves the k smallest of `a` to its front, ascending; returns them. With repeated
 * values the k-th is still exact; the planner's packed keys are all distinct.
 */
export function smallestSorted(a: Float64Array, k: number): Float64Array {
  k = Math.min(k, a.length);
  if (k * 4 >= a.length) return a.sort().subarray(0, k);
  // quickselect (Hoare): afterwards a[0..k) hold the k smallest
  let lo = 0, hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
  return a.subarray(0, k).sort();
}

/**
 * One head's evictable keys as packed (pooled score bits, rank in position order):
 * distinct values whose numeric order is lowest score first, older first on ties.
 */
interface HeadCandidates {
  packed: Float64Array;
  order: Uint32Array;
  pooled: Float32Array;
}

function headCandidates(k: HeadKeys, ctx: PlanContext): HeadCandidates {
  const order = positionOrder(k);
  const pooled = pooledScores(k, ctx.opts.poolKernel, order);
  const all = new Float64Array(order.length);
  // scores are sums of squares (>= 0): their f32 bit patterns sort as they do
  const bits = new Uint32Array(pooled.buffer, pooled.byteOffset, pooled.length);
  let n = 0;
  for (let rank = 0; rank < order.length; rank++) {
    const i = order[rank];
    if (!isProtected(k.pos[i], ctx)) all[n++] = bits[i] * LOW + rank;
  }
  return { packed: all.subarray(0, n), order, pooled };
}

/** The `limit` lowest candidates of a head as slot indices, in eviction order. */
function lowest(c: HeadCandidates, limit: number): Uint32Array {
  const sorted = smallestSorted(c.packed, limit);
  const out = new Uint32Array(sorted.length);
  for (let j = 0; j < sorted.length; j++) out[j] = c.order[sorted[j] % LOW];
  return out;
}

/** Evictable keys of one head, lowest pooled score first (older first on ties). */
function candidatesByScore(k: HeadKeys, ctx: PlanContext, limit = Infinity): { cand: Uint32Array; n: number } {
  const c = headCandidates(k, ctx);
  return { cand: lowest(c, limit), n: c.packed.length };
}

/** Per-head quota for uniform policies: keepTotal split evenly, never below a head's protected keys. */
function uniformEvictions(keys: HeadKeys[], ctx: PlanContext, keepTotal: number, order: (h: number, limit: number) => { cand: Uint32Array | number[]; n: number }): EvictionPlan {
  const quotas = uniformQuotas(keepTotal, keys.length);
  return keys.map((k, h) => {
    const len = k.pos.length;
    const { cand, n } = order(h, Math.max(0, len - quotas[h]));
    return Int32Array.from(cand.slice(0, uniformEvictCount(len, n, quotas[h])));
  });
}

function uniformQuotas(keepTotal: number, heads: number): number[] {
  const per = Math.floor(keepTotal / heads);
  const extra = keepTotal - per * heads;
  return Array.from({ length: heads }, (_, h) => per + (h < extra ? 1 : 0));
}

/** Evict down to the quota, but never a protected key (len - evictable of them). */
const uniformEvictCount = (len: number, evictable: number, quota: number) => Math.max(0, len - Math.max(quota, len - evictable));

/** What the GPU ranking (kernels/kv_rank.wgsl) reports of one head. */
export interface HeadChunkSums {
  /** keys the head holds */
  len: number;
  /** keys outside the protected window */
  evictable: number;
  /** pooled-score sums of each chunkSize consecutive evictable keys, lowest first */
  sums: Float32Array;
}

/** SnapKV's per-head eviction counts from the GPU ranking: the lowest keys of each head go. */
export function uniformEvictCounts(heads: HeadChunkSums[], keepTotal: number): Int32Array {
  const quotas = uniformQuotas(keepTotal, heads.length);
  return Int32Array.from(heads, (h, i) => uniformEvictCount(h.len, h.evictable, quotas[i]));
}

/**
 * KV-Compress's per-head eviction counts from the GPU ranking: the same chunk
 * selection as kvCompressPolicy, over chunk means made from the GPU's chunk sums.
 */
export function chunkEvictCounts(heads: HeadChunkSums[], ctx: PlanContext, keepTotal: number): Int32Array {
  const bs = ctx.opts.chunkSize;
  const counts = new Int32Array(heads.length);
  const tally = heads.map((h) => {
    let total = 0;
    for (let c = 0; c < h.sums.length; c++) total += h.sums[c];
    return { len: h.len, evictable: h.evictable, total };
  });
  const a = allocate(tally, ctx, keepTotal);
  a.groups.forEach((group, gi) => {
    const need = group.reduce((s, h) => s + heads[h].len, 0) - a.budgets[gi];
    if (need <= 0) return;
    const chunkHead: number[] = [], chunkSize: number[] = [], packed: number[] = [];
    for (const h of group) {
      const { sums } = heads[h];
      for (let i = 0, c = 0; i < a.limit[h]; i += bs, c++) {
        const size = Math.min(bs, a.limit[h] - i);
        packed.push(f32Key((sums[c] / size) * a.weight[h]) * LOW + chunkHead.length);
        chunkHead.push(h);
        chunkSize.push(size);
      }
    }
    for (const [h, n] of takeChunks(packed, chunkHead, chunkSize, need, bs, group.length)) counts[h] = n;
  });
  return counts;
}

/** What an allocation needs of one head: keys held, keys outside the protected window, their total pooled score. */
export interface HeadTally {
  len: number;
  evictable: number;
  total: number;
}

/** Heads planned together, each group's budget (K/V entries kept), and per head the weight of its chunk means and how many of its lowest keys may go. */
export interface AllocationPlan {
  groups: number[][];
  budgets: number[];
  weight: Float64Array;
  limit: Int32Array;
}

/** AdaKV's safeguard: each head keeps at least this share of its even share of the layer's budget (alpha = 0.2 in the paper and kvpress). */
export const ADA_FLOOR = 0.2;
/** PyramidKV: the top layer gets 1/beta of the average layer budget, the bottom layer the rest of twice the average (beta = 20 in the paper). */
export const PYRAMID_BETA = 20;

/**
 * How kvcompress's budget is split (CompressionOptions.allocation). Normalized modes
 * divide each head's chunk means by the total pooled score of its evictable keys, so
 * heads compare by the share of their own attention a chunk holds, not by a scale that
 * differs with how concentrated each head is. AdaKV's floor is counted in whole chunks
 * (a head's limit is rounded up to one), since only whole chunk sums are known on the GPU.
 */
export function allocate(heads: HeadTally[], ctx: PlanContext, keepTotal: number): AllocationPlan {
  const mode = ctx.opts.allocation;
  const bs = ctx.opts.chunkSize;
  const perLayer = mode !== "global" && mode !== "global-norm";
  const groups = perLayer
    ? Array.from({ length: ctx.layers }, (_, l) => Array.from({ length: ctx.kvHeads }, (_, h) => l * ctx.kvHeads + h))
    : [heads.map((_, h) => h)];
  let budgets: number[];
  if (mode === "pyramid") {
    // budgets beyond the protected keys, in an arithmetic sequence from the bottom layer down to avg / beta at the top
    const prot = groups.map((g) => g.reduce((a, h) => a + heads[h].len - heads[h].evictable, 0));
    const L = groups.length, top = 1 / PYRAMID_BETA, bottom = 2 - top;
    const shares = shareProportionally(Math.max(0, keepTotal - prot.reduce((a, b) => a + b, 0)), groups.map((_, l) => (L > 1 ? bottom - ((bottom - top) * l) / (L - 1) : 1)));
    budgets = prot.map((p, l) => p + shares[l]);
  } else {
    budgets = shareProportionally(keepTotal, groups.map((g) => g.length));
  }
  const normalized = mode === "global-norm" || mode === "ada" || mode === "pyramid";
  const weight = Float64Array.from(heads, (h) => (normalized && h.total > 0 ? 1 / h.total : 1));
  const limit = Int32Array.from(heads, (h) => h.evictable);
  if (mode === "ada" || mode === "pyramid") {
    groups.forEach((g, gi) => {
      const floor = Math.floor((ADA_FLOOR * budgets[gi]) / g.length);
      for (const h of g) {
        const extra = floor - (heads[h].len - heads[h].evictable); // keys the floor keeps beyond the protected ones
        if (extra > 0) limit[h] = Math.min(heads[h].evictable, bs * Math.ceil(Math.max(0, heads[h].evictable - extra) / bs));
      }
    });
  }
  return { groups, budgets, weight, limit };
}

/** Lowest-mean chunks first until `need` keys are taken: keys taken per head. */
function takeChunks(packed: number[], chunkHead: number[], chunkSize: number[], need: number, bs: number, heads: number): Map<number, number> {
  const taken = new Map<number, number>();
  // only full chunks and at most one short chunk per head come before need is met
  const order = smallestSorted(Float64Array.from(packed), Math.ceil(need / bs) + heads);
  for (let j = 0; j < order.length && need > 0; j++) {
    const c = order[j] % LOW;
    const take = Math.min(chunkSize[c], need);
    taken.set(chunkHead[c], (taken.get(chunkHead[c]) ?? 0) + take);
    need -= take;
  }
  return taken;
}

/**
 * KV-Compress: inside each head, keys sorted by pooled score and cut into
 * block-sized chunks; the chunks of each group of heads (all of them, or each
 * layer's; see allocate) sorted together by mean score and evicted lowest first until
 * the group's budget is met, so rates differ per head (and per layer).
 */
export const kvCompressPolicy: CompressionPolicy = {
  plan(keys, ctx, keepTotal) {
    const bs = ctx.opts.chunkSize;
    const heads = keys.map((k) => headCandidates(k, ctx));
    const a = allocate(heads.map((c, h) => ({ len: keys[h].pos.length, evictable: c.packed.length, total: evictableTotal(c) })), ctx, keepTotal);
    const key = (h: number, score: number) => f32Key(score * a.weight[h]);
    const plan: EvictionPlan = keys.map(() => new Int32Array(0));
    a.groups.forEach((group, gi) => {
      const held = group.reduce((s, h) => s + keys[h].pos.length, 0);
      const need = held - a.budgets[gi];
      if (need <= 0) return;
      // Only chunks that start at or below U can go, where U is the k-th lowest
      // (weighted) score with k = need + bs per head: the full chunks below U alone hold
      // >= need keys, all with means <= U, so the last chunk evicted has a mean <= U. A
      // few compressed tokens per pass (continual mode) thus sort a few keys, not all.
      // A head's limit (AdaKV's floor) must not cut into those k keys, else all its candidates count.
      const total = group.reduce((s, h) => s + a.limit[h], 0);
      const k = need + bs * group.length;
      const starts = new Map<number, number>(); // head -> candidates at or below U (chunk starts)
      if (k * 4 < total) {
        const vals = new Float64Array(group.reduce((s, h) => s + heads[h].packed.length, 0));
        let o = 0;
        for (const h of group) {
          const { packed, order, pooled } = heads[h];
          for (let i = 0; i < packed.length; i++) vals[o++] = key(h, pooled[order[packed[i] % LOW]]);
        }
        const bound = smallestSorted(vals, k)[k - 1];
        for (const h of group) {
          const { packed, order, pooled } = heads[h];
          let c = 0;
          for (let i = 0; i < packed.length; i++) if (key(h, pooled[order[packed[i] % LOW]]) <= bound) c++;
          starts.set(h, c);
        }
        if (group.some((h) => starts.get(h)! > a.limit[h])) starts.clear();
      }
      // chunks in (head, chunk) order; the packed low part keeps that order on ties
      const cands = new Map<number, Uint32Array>();
      const chunkHead: number[] = [], chunkSize: number[] = [], packed: number[] = [];
      for (const h of group) {
        const { pooled } = heads[h];
        const s = starts.get(h) ?? a.limit[h];
        const cand = lowest(heads[h], Math.min(a.limit[h], s + bs - 1));
        cands.set(h, cand);
        for (let i = 0; i < s; i += bs) {
          const end = Math.min(cand.length, i + bs);
          let sum = 0;
          for (let j = i; j < end; j++) sum += pooled[cand[j]];
          packed.push(key(h, sum / (end - i)) * LOW + chunkHead.length);
          chunkHead.push(h);
          chunkSize.push(end - i);
        }
      }
      for (const [h, n] of takeChunks(packed, chunkHead, chunkSize, need, bs, group.length)) plan[h] = Int32Array.from(cands.get(h)!.subarray(0, n));
    });
    return plan;
  },
};

/** Total pooled score of a head's evictable keys (allocate's normalizer). */
function evictableTotal(c: HeadCandidates): number {
  let total = 0;
  for (let i = 0; i < c.packed.length; i++) total += c.pooled[c.order[c.packed[i] % LOW]];
  return total;
}

/** SnapKV: the same scores, the same budget in every head. */
export const snapKvPolicy: CompressionPolicy = {
  plan(keys, ctx, keepTotal) {
    return uniformEvictions(keys, ctx, keepTotal, (h, limit) => candidatesByScore(keys[h], ctx, limit));
  },
};

/** StreamingLLM: attention sinks plus the most recent tokens; scores unused. */
export const streamingPolicy: CompressionPolicy = {
  plan(keys, ctx, keepTotal) {
    return uniformEvictions(keys, ctx, keepTotal, (h) => {
      const k = keys[h];
      const c: number[] = [];
      for (let i = 0; i < k.pos.length; i++) if (!isProtected(k.pos[i], ctx)) c.push(i);
      // oldest first, the sinks last: they go only when the budget cannot hold them
      const rank = (i: number) => (k.pos[i] < SINKS ? ctx.lastPos + 1 + k.pos[i] : k.pos[i]);
      c.sort((a, b) => rank(a) - rank(b));
      return { cand: c, n: c.length };
    });
  },
};

/**
 * KVCrush on top of a base policy: the base keeps (1 - crush_ratio) of the budget;
 * the rest goes to representatives of the tokens it would evict. Each token gets a
 * binary signature with one bit per KV head of its layer (1 = the head scores it at
 * or above that head's median); candidates are sorted by Hamming distance to an
 * anchor signature and evenly spaced ones are kept.
 */
export function kvCrushPolicy(base: CompressionPolicy): CompressionPolicy {
  return {
    plan(keys, ctx, keepTotal) {
      // representatives come out of the budget above the protected floor
      const protectedKeys = keys.reduce((a, k) => a + k.pos.filter((p) => isProtected(p, ctx)).length, 0);
      const crush = Math.max(0, Math.min(Math.floor(ctx.opts.crushRatio * keepTotal), keepTotal - protectedKeys));
      const evict = base.plan(keys, ctx, keepTotal - crush);
      const total = evict.reduce((a, e) => a + e.length, 0);
      if (crush <= 0 || total === 0) return evict;
      const pooled = keys.map((k) => pooledScores(k, ctx.opts.poolKernel));
      const median = pooled.map((p) => {
        const s = Float32Array.from(p).sort();
        return s.length ? s[Math.floor(s.length / 2)] : 0;
      });
      // per head: position -> pooled score, to read a token's bit in every head of its layer
      const byPos = keys.map((k, h) => new Map(Array.from(k.pos, (p, i) => [p, pooled[h][i]] as const)));
      const quotas = shareProportionally(crush, evict.map((e) => e.length));
      const rng = mulberry32(ctx.seed ?? 1);
      const out: EvictionPlan = [];
      for (let l = 0; l < ctx.layers; l++) {
        const heads = Array.from({ length: ctx.kvHeads }, (_, i) => l * ctx.kvHeads + i);
        const sig = (p: number): number[] => heads.map((h) => ((byPos[h].get(p) ?? -Infinity) >= median[h] ? 1 : 0));
        const anchor = crushAnchor(ctx.opts.crushAnchor, heads.length, rng, () => heads.flatMap((h) => Array.from(evict[h], (i) => sig(keys[h].pos[i]))));
        for (const h of heads) {
          const cand = Array.from(evict[h]);
          const dist = new Map(cand.map((i) => [i, sig(keys[h].pos[i]).reduce((a, b, k) => a + (b !== anchor[k] ? 1 : 0), 0)]));
          cand.sort((a, b) => dist.get(a)! - dist.get(b)! || keys[h].pos[a] - keys[h].pos[b]);
          const r = Math.min(quotas[h], cand.length);
          const keep = new Set<number>();
          for (let i = 0; i < r; i++) keep.add(cand[Math.floor(((i + 0.5) * cand.length) / r)]);
          out[h] = Int32Array.from(cand.filter((i) => !keep.has(i)));
        }
      }
      return out;
    },
  };
}

function crushAnchor(mode: CompressionOptions["crushAnchor"], bits: number, rng: () => number, signatures: () => number[][]): number[] {
  if (mode === "alternate") return Array.from({ length: bits }, (_, k) => (k % 2 === 0 ? 1 : 0));
  if (mode === "random") return Array.from({ length: bits }, () => (rng() < 0.5 ? 1 : 0));
  const s = signatures();
  return Array.from({ length: bits }, (_, k) => (s.reduce((a, v) => a + v[k], 0) * 2 >= s.length ? 1 : 0));
}

/** Splits `total` over parts in proportion to `weights` (largest remainders). */
export function shareProportionally(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  const exact = weights.map((w) => (total * w) / sum);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left-- <= 0) break;
    out[i]++;
  }
  return out;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
