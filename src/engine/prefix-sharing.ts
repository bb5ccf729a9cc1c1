// PrefixSharing: sequences start from K/V the prefix cache holds instead of prefilling
// it again, and leave theirs for later ones.
//   attach           a new sequence holds the longest cached run of its prompt's full
//                    blocks (at least its last token is left to compute, whose logits
//                    it samples), or a compressed prefix of its settings
//   register         an uncompressed sequence's full prompt blocks, once computed, are
//                    cached (they are never written again: it neither scores nor compacts)
//   storeCompressed  a sequence that compressed its prefix (kv_compression.cache_prefix)
//                    leaves a copy of that compressed state
// A sequence that compresses writes its blocks (scores, compaction), so it never holds
// a shared one: what it attaches it copies first (copy on write, Compactor.unshare),
// and its scoring window is always computed by itself.
import { Compactor } from "../cache/compaction.ts";
import type { KvCache } from "../cache/kv-cache.ts";
import { blockHashes, PrefixCache } from "../cache/prefix-cache.ts";
import type { KernelContext } from "../gpu/kernels.ts";
import { Sequence } from "./sequence.ts";

export class PrefixSharing {
  readonly prefix: PrefixCache;
  private compactor: Compactor;

  constructor(kc: KernelContext, private cache: KvCache) {
    this.prefix = new PrefixCache(cache.pool);
    this.compactor = new Compactor(kc, cache);
  }

  /**
   * Sets a sequence's prefix-cache namespace (`enabled`: automatic prefix caching) and
   * its reusable compressed prefix (kv_compression.cache_prefix), as it is queued.
   */
  prepare(seq: Sequence, enabled: boolean) {
    // seeded requests keep their logits their own (batchInvariant): no K/V from other steps;
    // an n > 1 parent fills a namespace of its own when caching is off
    seq.prefixSalt ??= enabled && !seq.opts.batchInvariant ? "" : seq.opts.choices ? `group:${seq.id}` : null;
    const bs = this.cache.blockSize;
    // at least the last token is left to compute after the prefix (its logits give the first sample)
    const at = Math.floor(Math.min(seq.opts.prefixEnd ?? Infinity, seq.prompt.length - 1) / bs) * bs;
    if (seq.compression.cachePrefix && seq.compressing && at > seq.compression.observationWindow && seq.opts.compressAt === undefined) {
      seq.cachePrefixAt = seq.compressAt = at;
    }
  }

  /**
   * The parent that prefills the shared part of n > 1 choices (Engine.addChoices): the
   * prompt's full blocks before its last token; null when there are none (or one choice).
   */
  choicesParent(choices: Sequence[]): Sequence | null {
    const bs = this.cache.blockSize;
    const shared = Math.floor((choices[0].prompt.length - 1) / bs) * bs;
    if (choices.length === 1 || shared === 0) return null;
    const { sampling, batchInvariant } = choices[0].opts;
    const parent = new Sequence(choices[0].prompt.slice(0, shared), { maxTokens: 1, sampling, ignoreEos: true, batchInvariant, choices });
    for (const c of choices) c.parent = parent;
    return parent;
  }

  /**
   * Gives a sequence whose cache was just opened (empty) what the prefix cache holds
   * of its input; moves its progress past it. The first time, records the hit
   * (Sequence.cachedTokens).
   */
  attach(seq: Sequence) {
    if (seq.prefixSalt == null || seq.numComputedTokens > 0 || !seq.cache) return;
    const first = !seq.prefixQueried;
    seq.prefixQueried = true;
    const got = this.attachCompressed(seq) || this.attachPrompt(seq);
    if (first) seq.cachedTokens = got;
  }

  /**
   * Blocks of the cached prompt blocks `attach` would give a new sequence that some
   * sequence holds now (admission needs no free block for them); 0 for a sequence that
   * compresses (it copies what it reuses).
   */
  heldBlocksFor(seq: Sequence): number {
    if (seq.prefixSalt == null || seq.compressing || seq.numComputedTokens > 0) return 0;
    const hit = this.prefix.match(this.hashes(seq), Math.floor((seq.input.length - 1) / this.cache.blockSize));
    return hit.reduce((n, b) => n + b.blocks.reduce((m, id) => m + (this.cache.pool.refCount(id) > 0 ? 1 : 0), 0), 0);
  }

  /** Caches the full blocks of an uncompressed sequence's input computed so far. */
  register(seq: Sequence) {
    if (seq.prefixSalt == null || seq.compressing || !seq.cache) return;
    const full = Math.floor(Math.min(seq.numComputedTokens, seq.input.length) / this.cache.blockSize);
    const hashes = this.hashes(seq);
    for (let i = seq.cachedBlocks; i < full; i++) this.prefix.insert(hashes[i], Int32Array.from(seq.cache.blocks, (list) => list[i]));
    seq.cachedBlocks = Math.max(seq.cachedBlocks, full);
  }

  /** After a sequence compressed its reusable prefix: caches a copy of that state (skipped when the pool is short). */
  storeCompressed(seq: Sequence) {
    const at = seq.cachePrefixAt;
    const c = this.cache;
    if (!at || seq.prefixSalt == null || !seq.cache || seq.numComputedTokens !== at || seq.compressAt !== at) return;
    const key = this.compressedKey(seq);
    if (this.prefix.findCompressed(key)) return;
    const lengths = seq.cache.lengths.slice();
    const need = Array.from(lengths, (n) => Math.ceil(n / c.blockSize));
    const ids = c.pool.allocate(need.reduce((a, b) => a + b, 0));
    if (!ids) return;
    let k = 0;
    const blocks = need.map((n) => Array.from(ids.subarray(k, (k += n))));
    this.compactor.copy(seq.cache, { slot: -1, blocks, lengths });
    this.prefix.insertCompressed({ key, tokens: at, blocks, lengths, evictedTokens: seq.evictedTokens });
  }

  /** A compressed prefix of the sequence's own settings, copied into its cache; tokens it stands for (0: none). */
  private attachCompressed(seq: Sequence): number {
    const at = seq.cachePrefixAt;
    if (!at || seq.compressAt !== at) return 0;
    const p = this.prefix.findCompressed(this.compressedKey(seq));
    if (!p) return 0;
    this.cache.share(seq.cache!, p.blocks, p.lengths);
    if (!this.compactor.unshare(seq.cache!)) return this.detach(seq);
    seq.evictedTokens = p.evictedTokens;
    return this.advance(seq, p.tokens);
  }

  /** The longest cached run of the input's full blocks; tokens it covers. */
  private attachPrompt(seq: Sequence): number {
    const bs = this.cache.blockSize;
    // one token at least is computed (its logits give the first sample); a sequence that
    // compresses computes its whole observation window, whose queries score the keys
    const upTo = seq.compressing ? seq.compressAt - seq.compression.observationWindow : seq.input.length - 1;
    const hit = this.prefix.match(this.hashes(seq), Math.floor(Math.max(0, upTo) / bs));
    if (!hit.length) return 0;
    const blocks = Array.from({ length: this.cache.heads }, (_, h) => hit.map((b) => b.blocks[h]));
    this.cache.share(seq.cache!, blocks, new Int32Array(this.cache.heads).fill(hit.length * bs));
    if (seq.compressing && !this.compactor.unshare(seq.cache!)) return this.detach(seq);
    if (!seq.compressing) seq.cachedBlocks = hit.length;
    return this.advance(seq, hit.length * bs);
  }

  private advance(seq: Sequence, tokens: number): number {
    seq.numComputedTokens = seq.numWrittenTokens = tokens;
    return tokens;
  }

  /** Gives back what attach took (the pool could not copy it). */
  private detach(seq: Sequence): number {
    this.cache.rollback(seq.cache!, Math.max(...seq.cache!.lengths));
    return 0;
  }

  private hashes(seq: Sequence): string[] {
    if (seq.blockHashes.length < Math.floor(seq.input.length / this.cache.blockSize)) {
      seq.blockHashes = blockHashes(seq.input, this.cache.blockSize, seq.prefixSalt!, seq.blockHashes);
    }
    return seq.blockHashes;
  }

  /** The prefix's last block's hash and every setting that shapes the compressed state. */
  private compressedKey(seq: Sequence): string {
    const { interval, compressOnce, cachePrefix, ...shaping } = seq.compression;
    return `${this.hashes(seq)[seq.cachePrefixAt / this.cache.blockSize - 1]}|${JSON.stringify(shaping)}`;
  }

  destroy() {
    this.compactor.destroy();
  }
}
