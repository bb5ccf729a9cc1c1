// PrefixCache: what the pool's cached blocks hold, found by content.
//   Prompt blocks (automatic prefix caching, vLLM-style): every full block of
//     `blockSize` prompt tokens has a chained hash, sha256(parent hash, its tokens),
//     the root seeded with a salt (a namespace); the hash names the block's K/V in
//     every (layer, KV head), so a request whose prompt starts the same way holds
//     those blocks instead of prefilling them. Only uncompressed K/V: every head
//     then holds the same tokens in the same slots.
//   Compressed prefixes: a prefix compressed once, query-agnostically, keyed by its
//     last block's hash and the compression settings; per head its own blocks and
//     length (heads keep different numbers of tokens).
// The pool frees cached blocks least recently used first when it runs short
// (BlockPool.onReclaim); losing one block drops what it belonged to.
import { createHash } from "node:crypto";
import type { BlockPool } from "./block-pool.ts";

/** One cached prompt block: a physical block per (layer, KV head), each full. */
export interface PromptBlock {
  hash: string;
  /** block id per head index (layer * kvHeads + head) */
  blocks: Int32Array;
}

/** A compressed prefix: each head's blocks and the tokens it kept. */
export interface CompressedPrefix {
  key: string;
  /** prompt tokens it stands for */
  tokens: number;
  blocks: number[][];
  lengths: Int32Array;
  /** K/V entries its compression evicted (the request's kv_cache figures count them) */
  evictedTokens: number;
}

/**
 * Chained hashes of the full blocks of `tokens`, extending `known` (hashes of its
 * first blocks, computed before). Each covers every token up to its block's end.
 */
export function blockHashes(tokens: readonly number[], blockSize: number, salt: string, known: string[] = []): string[] {
  const out = known.slice();
  const full = Math.floor(tokens.length / blockSize);
  let parent = out.length ? out[out.length - 1] : createHash("sha256").update(`kvc-prefix:${salt}`).digest("base64");
  for (let i = out.length; i < full; i++) {
    const block = Uint32Array.from(tokens.slice(i * blockSize, (i + 1) * blockSize));
    parent = createHash("sha256").update(parent).update(new Uint8Array(block.buffer)).digest("base64");
    out.push(parent);
  }
  return out;
}

export class PrefixCache {
  private prompt = new Map<string, PromptBlock>();
  private compressed = new Map<string, CompressedPrefix>();
  /** physical block -> the entry it belongs to */
  private owner = new Map<number, PromptBlock | CompressedPrefix>();

  constructor(private pool: BlockPool) {
    pool.onReclaim = (id) => this.forget(id);
  }

  /** Prompt blocks known. */
  get size(): number {
    return this.prompt.size;
  }

  /** The cached blocks of the longest run of `hashes` from the first, at most `maxBlocks`. */
  match(hashes: readonly string[], maxBlocks: number): PromptBlock[] {
    const out: PromptBlock[] = [];
    for (let i = 0; i < Math.min(maxBlocks, hashes.length); i++) {
      const e = this.prompt.get(hashes[i]);
      if (!e) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Caches prompt block `hash` held by a sequence (one block per head). A hash known
   * already keeps its blocks (two requests prefilled the same block at once).
   */
  insert(hash: string, blocks: Int32Array) {
    if (this.prompt.has(hash)) return;
    const e: PromptBlock = { hash, blocks };
    this.prompt.set(hash, e);
    this.own(e, blocks);
  }

  findCompressed(key: string): CompressedPrefix | undefined {
    return this.compressed.get(key);
  }

  /** Takes a compressed prefix whose blocks the caller allocated (held once): they go idle, cached. */
  insertCompressed(p: CompressedPrefix) {
    const all = p.blocks.flat();
    if (this.compressed.has(p.key)) return this.pool.freeBlocks(all);
    this.compressed.set(p.key, p);
    this.own(p, all);
    this.pool.freeBlocks(all);
  }

  private own(e: PromptBlock | CompressedPrefix, blocks: ArrayLike<number>) {
    for (let i = 0; i < blocks.length; i++) {
      this.owner.set(blocks[i], e);
      this.pool.markCached(blocks[i]);
    }
  }

  /** Forgets every entry (their idle blocks are free at once): a cold start for evaluation. */
  clear() {
    for (const id of [...this.owner.keys()]) this.forget(id);
  }

  /** A block of `id`'s entry was reclaimed: the entry goes, its other blocks are uncached. */
  private forget(id: number) {
    const e = this.owner.get(id);
    if (!e) return;
    if ("hash" in e) this.prompt.delete(e.hash);
    else this.compressed.delete(e.key);
    const blocks = "hash" in e ? e.blocks : e.blocks.flat();
    for (let i = 0; i < blocks.length; i++) {
      this.owner.delete(blocks[i]);
      this.pool.uncache(blocks[i]);
    }
  }
}
