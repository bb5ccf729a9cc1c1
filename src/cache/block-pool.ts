// BlockPool: the physical KV memory. A block holds `blockSize` tokens of ONE
// (layer, KV head): K and V as f16 pairs [block][slot][headDim / 2], each slot's
// original position, and its eviction score (accumulated squared attention).
// Blocks are reference counted: sequences that share a prompt prefix hold the same
// blocks. A block the prefix cache knows (`markCached`) is not freed when its last
// holder lets go: it goes idle, keeps its K/V for a later request with the same
// prefix, and is reclaimed, least recently used first, only when an allocation
// finds the free stack short (vLLM v1's free queue). Idle blocks count as free.
import { createStorage } from "../gpu/buffers.ts";

export class BlockPool {
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly pos: GPUBuffer;
  readonly scores: GPUBuffer;
  private free: Int32Array;
  private nFree: number;
  /** holders of each block (0: free or idle) */
  private refs: Int32Array;
  private cached: Uint8Array;
  /** cached blocks nobody holds, least recently used first (Map keeps insertion order) */
  private idle = new Map<number, true>();
  /** told of each cached block reclaimed for reuse (the prefix cache drops what it knew of it) */
  onReclaim: (id: number) => void = () => {};

  constructor(device: GPUDevice, readonly numBlocks: number, readonly blockSize: number, readonly headDim: number) {
    if (numBlocks < 1) throw new Error("KV cache has room for no blocks; raise --kv-memory");
    const kvBytes = numBlocks * blockSize * headDim * 2;
    this.k = createStorage(device, kvBytes, "kv-pool-k");
    this.v = createStorage(device, kvBytes, "kv-pool-v");
    this.pos = createStorage(device, numBlocks * blockSize * 4, "kv-pool-pos");
    this.scores = createStorage(device, numBlocks * blockSize * 4, "kv-pool-scores");
    this.free = new Int32Array(numBlocks);
    // pop from the end: low ids first
    for (let i = 0; i < numBlocks; i++) this.free[i] = numBlocks - 1 - i;
    this.nFree = numBlocks;
    this.refs = new Int32Array(numBlocks);
    this.cached = new Uint8Array(numBlocks);
  }

  /** Bytes one block takes: K + V + positions + scores. */
  static bytesPerBlock(blockSize: number, headDim: number): number {
    return blockSize * headDim * 2 * 2 + blockSize * 8;
  }

  /** Blocks an allocation can have: free ones and idle cached ones. */
  get numFreeBlocks(): number {
    return this.nFree + this.idle.size;
  }
  /** Blocks some sequence holds. */
  get numUsedBlocks(): number {
    return this.numBlocks - this.numFreeBlocks;
  }
  /** Cached blocks nobody holds (kept for later hits, reclaimed when needed). */
  get numIdleCachedBlocks(): number {
    return this.idle.size;
  }

  /** n block ids, held once each, or null (and nothing taken) when the pool is short. */
  allocate(n: number): Int32Array | null {
    if (n > this.numFreeBlocks) return null;
    while (this.nFree < n) this.reclaimOldest();
    const out = this.free.slice(this.nFree - n, this.nFree);
    this.nFree -= n;
    for (const id of out) this.refs[id] = 1;
    return out;
  }

  /** One more holder of a block already held or idle in the cache. */
  retain(id: number) {
    if (this.refs[id]++ === 0) {
      if (!this.idle.delete(id)) throw new Error(`block ${id} is neither held nor cached`);
    }
  }

  /** Drops one hold of each block; a block nobody holds goes back (idle when cached). */
  freeBlocks(ids: ArrayLike<number>) {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.refs[id] <= 0) throw new Error(`block ${id} freed more often than held`);
      if (--this.refs[id] > 0) continue;
      if (this.cached[id]) this.idle.set(id, true);
      else this.free[this.nFree++] = id;
    }
  }

  /** Holders of a block. */
  refCount(id: number): number {
    return this.refs[id];
  }
  /** Whether another holder or the cache may read this block (then a holder must not write it). */
  isShared(id: number): boolean {
    return this.refs[id] > 1 || this.cached[id] === 1;
  }

  /** The prefix cache keeps this (held) block's K/V once its holders let go. */
  markCached(id: number) {
    if (this.refs[id] <= 0) throw new Error(`block ${id} cached while nobody holds it`);
    this.cached[id] = 1;
  }

  /** The prefix cache forgot this block: idle, it is free at once; held, when let go. */
  uncache(id: number) {
    if (!this.cached[id]) return;
    this.cached[id] = 0;
    if (this.idle.delete(id)) this.free[this.nFree++] = id;
  }

  /** Frees the least recently let go idle cached block; the prefix cache forgets what it held. */
  private reclaimOldest() {
    const id = this.idle.keys().next().value!;
    this.uncache(id);
    this.onReclaim(id);
  }

  destroy() {
    this.k.destroy();
    this.v.destroy();
    this.pos.destroy();
    this.scores.destroy();
  }
}
