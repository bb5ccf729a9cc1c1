// The attention kernels from the host: kernels/attention.wgsl's layout per GQA group
// and head dim and how far a decode step splits its keys; the prefill kernels' tiles
// (attention_prefill.wgsl, and attention_prefill_mma.wgsl on tensor cores), the tile
// table of a step and its split.
import type { Gpu } from "../gpu/device.ts";
import { cdiv, nextPow2 } from "../gpu/kernels.ts";

/** Shape of kernels/attention.wgsl (its defines, less SPLIT and SCORES). */
export interface DecodeAttentionShape {
  WG: number;
  /** query heads per workgroup (a divisor of the GQA group) */
  G: number;
  /** workgroups per GQA group */
  NG: number;
  D: number;
  /** dims per lane: 8 (16-byte K/V loads) or 4 */
  CW: number;
  WIDE: boolean;
  /** lanes per key: a power of two >= D / CW */
  LANES: number;
  /** keys per thread in a tile */
  NK: number;
  /** keys per tile */
  BK: number;
  /** heads per pass of the final sum over key slots */
  PG: number;
  SCRATCH: number;
}


/** Choices a benchmark may force on decodeAttentionShape (each must fit, or it throws). */
export interface DecodeAttentionChoice {
  G?: number;
  WG?: number;
  NK?: number;
}

/**
 * The decode attention layout for GQA group GQ and head dim D (a multiple of 4) within
 * `maxBytes` of workgroup memory. By default one query head per workgroup, 128
 * threads, 2 keys per thread and tile: on an H200 (bench/results, 8B and 1B shapes,
 * contexts 64 to 8192) that ran 1.9-2.3x faster than the former default of 4 heads
 * sharing each K/V read, and no grouped layout (G = 2, 4) beat it at any context: more
 * workgroups and fewer registers outweigh re-reading K/V, which mostly comes from L2.
 * Groups of G heads (at most 8) stay available as a choice.
 */
export function decodeAttentionShape(GQ: number, D: number, maxBytes = 16384, choice: DecodeAttentionChoice = {}): DecodeAttentionShape {
  if (D % 4 !== 0) throw new Error(`head dim ${D} is not a multiple of 4`);
  const G = choice.G ?? 1;
  if (G < 1 || G > 8 || GQ % G) throw new Error(`${G} query heads per workgroup do not divide a GQA group of ${GQ} (at most 8)`);
  const CW = D % 8 === 0 ? 8 : 4;
  const LANES = nextPow2(D / CW);
  const WG = Math.max(choice.WG ?? (G * CW <= 32 ? 128 : 64), LANES);
  const KPP = WG / LANES;
  const nk0 = choice.NK ?? Math.min(2, Math.max(1, 128 / KPP));
  for (let NK = nk0; NK >= 1; NK /= 2) {
    const BK = KPP * NK;
    // dot partials of a tile (without subgroups), or PG heads of every slot's output
    const SCRATCH = Math.max(BK * G * (LANES + 1), WG * CW);
    let PG = G;
    while (G % PG || WG * PG * CW > SCRATCH) PG--;
    const fits = 4 * (2 * G * BK + SCRATCH + KPP * G) + 16 <= maxBytes;
    if (choice.NK !== undefined && !fits) throw new Error(`decode attention G ${G} WG ${WG} NK ${NK} needs more than ${maxBytes} bytes of workgroup memory`);
    if (fits || NK === 1) return { WG, G, NG: GQ / G, D, CW, WIDE: CW === 8, LANES, NK, BK, PG, SCRATCH };
  }
  throw new Error("unreachable");
}

/**
 * Decode attention splits until about this many workgroups run: on an H200 (132 SMs)
 * one sequence's attention at 1k-8k context ran 1.1-1.3x faster at 2048 than at 512.
 */
export const ATTN_WORKGROUPS = 2048;

/**
 * Split-K of kernels/attention.wgsl: splits of at least one tile (BK keys) until about
 * `target` workgroups run; a batch that fills the GPU alone runs unsplit.
 */
export function decodeAttentionPlan(groups: number, maxLen: number, BK: number, target = ATTN_WORKGROUPS): { nsplit: number; splitLen: number } {
  let nsplit = Math.min(cdiv(target, groups), Math.floor(maxLen / BK));
  if (nsplit <= 1) return { nsplit: 1, splitLen: Math.max(maxLen, 1) };
  const splitLen = cdiv(cdiv(maxLen, nsplit), 16) * 16;
  nsplit = cdiv(maxLen, splitLen);
  return { nsplit, splitLen };
}

/** Keys a split holds in the fixed plan: about the plan's split at 4k-16k context on an H200. */
export const ATTN_FIXED_SPLIT_KEYS = 256;

/**
 * Split-K at fixed key offsets, [z * 256, (z + 1) * 256), whatever the batch: each
 * head's partials, and attn_merge's sum of them, are then the same beside any other
 * sequences (a longer neighbour adds empty splits, which merge to exact zeros, and one
 * split merges to the unsplit kernel's o / l bit for bit).
 */
export function decodeAttentionFixedPlan(maxLen: number, splitKeys = ATTN_FIXED_SPLIT_KEYS): { nsplit: number; splitLen: number } {
  const nsplit = Math.max(1, cdiv(maxLen, splitKeys));
  return { nsplit, splitLen: nsplit === 1 ? Math.max(maxLen, 1) : splitKeys };
}

/** Tile shape of kernels/attention_prefill.wgsl (its defines, less SPLIT and SCORES). */
export interface PrefillTiling {
  WG: number;
  G: number;
  D: number;
  /** query rows per tile */
  BQ: number;
  /** keys per tile */
  BK: number;
  /** threads per query group (they split the keys of a tile and the output dims) */
  KG: number;
  /** query vectors per thread */
  QPT: number;
}

/**
 * The tensor-core prefill attention's tile (kernels/attention_prefill_mma.wgsl): NSG
 * subgroups of 32 lanes, 16 query vectors each, BQ = 16 NSG / G rows, keys 64 a tile.
 */
export interface PrefillMmaTiling {
  NSG: number;
  /** queries in workgroup memory, loaded for each product (else held in registers across the key loops) */
  QSMEM: boolean;
  WG: number;
  G: number;
  D: number;
  BQ: number;
}

export function prefillMmaBytes(t: PrefillMmaTiling): number {
  return 64 * (t.D + 8) * 2 + t.NSG * 16 * 64 * 4 + t.NSG * 16 * (64 + 8) * 2 + (t.QSMEM ? t.NSG * 16 * (t.D + 8) * 2 : 0);
}

/**
 * The tensor-core tile for a GQA group of G heads of D dims, or null: it needs f16
 * 16x16x16 subgroup matrices, 32-lane subgroups (two lanes a query row), D a multiple of
 * 16, G <= 64 and the workgroup storage. KVC_MMA_ATTN=1 turns it on.
 */
export function prefillMmaTiling(gpu: Gpu, G: number, D: number): PrefillMmaTiling | null {
  const sm = gpu.features.subgroupMatrix;
  const env = (globalThis as any).process?.env?.KVC_MMA_ATTN ?? (globalThis as any).Deno?.env?.get("KVC_MMA_ATTN");
  // off unless asked for (KVC_MMA_ATTN=1): slower than the f32 tiled kernel at D 128 when last measured
  if (env !== "1" || !sm || sm.M !== 16 || sm.N !== 16 || sm.K !== 16 || gpu.features.subgroupMaxSize !== 32) return null;
  if (D % 16 !== 0 || G > 64) return null;
  // the queries stay in registers (their workgroup copy would halve the subgroups at D 128);
  // KVC_MMA_ATTN_Q=smem reloads them from workgroup memory for every product instead
  const qenv = (globalThis as any).process?.env?.KVC_MMA_ATTN_Q ?? (globalThis as any).Deno?.env?.get("KVC_MMA_ATTN_Q");
  const QSMEM = qenv === "smem";
  for (const NSG of [4, 2]) {
    const t = { NSG, QSMEM, WG: NSG * 32, G, D, BQ: Math.floor((NSG * 16) / G) };
    if (t.BQ >= 1 && prefillMmaBytes(t) <= gpu.limits.maxComputeWorkgroupStorageSize) return t;
  }
  return null;
}

/** e.g. "64t/2q/16k": threads, query vectors a thread, keys a tile */
export const prefillTileName = (t: PrefillTiling) => `${t.WG}t/${t.QPT}q/${t.BK}k`;

/** Workgroup bytes of a prefill tiling: queries (f32), one K/V tile (f16), probabilities, partial maxima. */
export function prefillTilingBytes(t: PrefillTiling): number {
  const NQP = (t.WG / t.KG) * t.QPT;
  return 16 * NQP * (t.D / 4 + 1) + 16 * t.BK * (t.D / 8 + 1) + 4 * t.BK * NQP + 4 * NQP * t.KG + 4;
}

/** Keys a tile: about `keys`, a multiple of the KG threads that split them. */
const keysPerTile = (KG: number, keys: number) => KG * Math.max(1, Math.round(keys / KG));

/**
 * Every prefill tiling for GQA group G and head dim D within `maxBytes` of workgroup
 * memory, largest first: KG threads share a query group (they split a tile's keys and
 * the output dims: 16 dims each, 8 where D / 8 is odd), each owns QPT query vectors;
 * BK keys a tile; 64 to 256 threads. Empty where the kernel cannot serve the shape.
 */
export function prefillTilings(G: number, D: number, maxBytes: number): PrefillTiling[] {
  if (D % 8 !== 0) return [];
  const D8 = D / 8;
  const KG = D8 % 2 === 0 ? D8 / 2 : D8;
  const out: PrefillTiling[] = [];
  for (const QPT of [2, 4]) {
    for (const bk of [16, 32]) {
      const BK = keysPerTile(KG, bk);
      for (let groups = Math.max(1, Math.floor(256 / KG)); groups >= 1; groups = Math.floor(groups / 2)) {
        const BQ = Math.floor((groups * QPT) / G);
        const t = { WG: groups * KG, G, D, BQ, BK, KG, QPT };
        if (BQ >= 1 && prefillTilingBytes(t) <= maxBytes && !out.some((o) => JSON.stringify(o) === JSON.stringify(t))) out.push(t);
      }
    }
  }
  return out;
}

/**
 * The model's prefill tiling: 2 query vectors a thread, 16 keys a tile, as many threads
 * (up to 256) as `maxBytes` of workgroup memory hold (16 KiB, the default limit, holds
 * 64: the queries (f32) take most of it). Measured on the H200 (bench/results), 256
 * threads ran 1.1-1.3x the 64-thread tile at the 1B shape and 1.4-1.6x at 8B; more
 * query vectors a thread or 32-key tiles ran slower.
 */
export function prefillTiling(G: number, D: number, maxBytes = 16384): PrefillTiling | null {
  return prefillTilings(G, D, maxBytes).find((t) => t.QPT === 2 && t.BK === keysPerTile(t.KG, 16)) ?? null;
}

/**
 * Tiles of the tiled prefill kernel: (first row, row count) per BQ rows of each
 * sequence, the ones that see the most keys first (the causal tail would otherwise
 * run alone at the end). `ns[b]`: rows of sequence b (in step order), `keys[b]`: about
 * how many keys its first row sees.
 */
export function prefillTiles(ns: number[], keys: number[], BQ: number): Uint32Array {
  const list: [number, number, number][] = [];
  let r = 0;
  ns.forEach((n, b) => {
    for (let i = 0; i < n; i += BQ) list.push([r + i, Math.min(BQ, n - i), keys[b] + i + BQ]);
    r += n;
  });
  list.sort((a, b) => b[2] - a[2] || a[0] - b[0]);
  const out = new Uint32Array(list.length * 4);
  list.forEach(([r0, nr], k) => out.set([r0, nr], k * 4));
  return out;
}

const PREFILL_WORKGROUPS = 2048;
const PREFILL_SPLIT_MIN_KEYS = 256;

/**
 * Split-K of the tiled prefill kernel: splits of at least PREFILL_SPLIT_MIN_KEYS keys
 * (a multiple of the key tile BK) until about PREFILL_WORKGROUPS workgroups run (an
 * H200 holds 132 SMs x 16 of these 64-thread workgroups; a 512-row chunk of the 1B
 * shape is only 64 tiles x 8 KV heads).
 */
export function prefillSplit(groups: number, maxLen: number, BK: number): { nsplit: number; splitLen: number } {
  if (groups >= PREFILL_WORKGROUPS || maxLen < 2 * PREFILL_SPLIT_MIN_KEYS) return { nsplit: 1, splitLen: Math.max(maxLen, 1) };
  let nsplit = Math.min(cdiv(PREFILL_WORKGROUPS, groups), Math.floor(maxLen / PREFILL_SPLIT_MIN_KEYS));
  const splitLen = cdiv(cdiv(maxLen, nsplit), BK) * BK;
  nsplit = cdiv(maxLen, splitLen);
  return { nsplit, splitLen };
}
