// What one request can hold in the KV cache. The server refuses, at admission, a
// request whose prompt + max_tokens cannot fit the cache even alone (it would be cut
// short with finish_reason "length" half way), and /v1/models reports the longest
// sequence the cache holds. Other requests never make one fail: the engine preempts
// them (recompute) to give a sequence that fits alone the room it needs.
import type { EngineLimits } from "../engine/client.ts";
import { DEFAULT_COMPRESSION, type CompressionOptions } from "../cache/compression.ts";
import { keepBudget } from "../cache/policies.ts";

/** Tokens of one uncompressed sequence the cache holds, at most the model's context. */
export function usableContext(l: EngineLimits): number {
  return Math.min(l.maxContext, Math.floor(l.numBlocks / l.heads) * l.blockSize);
}

/**
 * Most blocks a sequence of `promptLen` + `maxTokens` tokens holds at once. Uncompressed:
 * every token in every (layer, KV head). Compressed: the whole prompt during the prefill,
 * then the budget of its length, plus (continual mode) the `interval` tokens that come
 * between two compressions, or (compress_once) every token after the one compression;
 * one partly filled block per head on top.
 */
export function peakBlocks(l: EngineLimits, promptLen: number, maxTokens: number, compression: Partial<CompressionOptions>): number {
  const H = l.heads, bs = l.blockSize;
  const total = promptLen + maxTokens;
  const full = H * Math.ceil(total / bs);
  const o = { ...DEFAULT_COMPRESSION, ...compression };
  if (o.method === "none") return full;
  const keep = (len: number) => keepBudget({ layers: l.layers, kvHeads: l.kvHeads, lastPos: len - 1, logicalLen: len, opts: o });
  const after = o.compressOnce ? keep(promptLen) + H * maxTokens : keep(total) + H * o.interval;
  return Math.min(full, Math.max(H * Math.ceil(promptLen / bs), Math.ceil(after / bs) + H));
}

/** The largest max_tokens a `promptLen`-token prompt can run to in the cache (0: none), within the context. */
export function maxCompletionTokens(l: EngineLimits, promptLen: number, compression: Partial<CompressionOptions>): number {
  const fits = (m: number) => peakBlocks(l, promptLen, m, compression) <= l.numBlocks;
  let lo = 0, hi = Math.max(0, l.maxContext - promptLen);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
