// Per-request KV compression settings. The engine hands them to a compression
// policy; the cache never knows which policy chose what to evict.

export type CompressionMethod = "none" | "kvcompress" | "snapkv" | "streaming" | "kvcrush";
export type CrushAnchor = "mean" | "alternate" | "random";
export type CrushBase = "kvcompress" | "snapkv";

export interface CompressionOptions {
  method: CompressionMethod;
  /** keep total / rate of the sequence's K/V entries (>= 1); ignored when maxCacheTokens is set */
  rate: number | null;
  /** budget as an average number of tokens per (layer, KV head) */
  maxCacheTokens: number | null;
  /** most recent positions never evicted */
  protectedWindow: number;
  /** last prompt queries whose attention scores the keys */
  observationWindow: number;
  /** decode steps between compressions in continual mode */
  interval: number;
  /** compress only once, after the prefill */
  compressOnce: boolean;
  /** KVCrush: share of the budget given to representatives of evicted tokens */
  crushRatio: number;
  crushAnchor: CrushAnchor;
  /** KVCrush: the importance method it composes with */
  crushBase: CrushBase;
  /** max-pool width along the sequence for the scores (KV-Compress kernel 7) */
  poolKernel: number;
  /** even split of the budget per layer instead of across all layers */
  evenLayerSplit: boolean;
  /** keys per eviction chunk (KV-Compress evicts block-sized chunks) */
  chunkSize: number;
}

export const DEFAULT_COMPRESSION: CompressionOptions = {
  method: "none",
  rate: null,
  maxCacheTokens: null,
  protectedWindow: 32,
  observationWindow: 8,
  interval: 16,
  compressOnce: false,
  crushRatio: 0.25,
  crushAnchor: "mean",
  crushBase: "kvcompress",
  poolKernel: 7,
  evenLayerSplit: false,
  chunkSize: 16,
};

/** What a sequence's cache holds against what it would hold uncompressed. */
export interface KvStats {
  blocksUsed: number;
  blocksUncompressed: number;
  /** K/V entries kept, summed over every (layer, KV head) */
  tokensKept: number;
  /** tokens of the sequence whose K/V were computed */
  tokensLogical: number;
  /** blocksUncompressed / blocksUsed (1 when nothing was evicted) */
  compressionRate: number;
  evictedTokens: number;
}
