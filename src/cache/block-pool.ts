// BlockPool: the physical KV memory. A block holds `blockSize` tokens of ONE
// (layer, KV head): K and V as f16 pairs [block][slot][headDim / 2], each slot's
// original position, and its eviction score (accumulated squared attention). Allocation and free are O(blocks touched) through a free stack.
import { createStorage } from "../gpu/buffers.ts";

export class BlockPool {
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly pos: GPUBuffer;
  readonly scores: GPUBuffer;
  private free: Int32Array;
  private nFree: number;

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
  }

  /** Bytes one block takes: K + V + positions + scores. */
  static bytesPerBlock(blockSize: number, headDim: number): number {
    return blockSize * headDim * 2 * 2 + blockSize * 8;
  }

  get numFreeBlocks(): number {
    return this.nFree;
  }
  get numUsedBlocks(): number {
    return this.numBlocks - this.nFree;
  }

  /** n block ids, or null (and nothing taken) when the pool is short. */
  allocate(n: number): Int32Array | null {
    if (n > this.nFree) return null;
    const out = this.free.slice(this.nFree - n, this.nFree);
    this.nFree -= n;
    return out;
  }

  freeBlocks(ids: ArrayLike<number>) {
    for (let i = 0; i < ids.length; i++) this.free[this.nFree++] = ids[i];
  }

  destroy() {
    this.k.destroy();
    this.v.destroy();
    this.pos.destroy();
    this.scores.destroy();
  }
}
