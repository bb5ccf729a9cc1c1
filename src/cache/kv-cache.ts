// KvCache: maps sequences to blocks. Each sequence holds a slot in a GPU-resident
// block table laid out [slot][layer * kvHeads + head][maxBlocksPerHead]; every
// (layer, KV head) of a sequence has its own block list and length, so heads can
// keep different numbers of tokens. Table updates are written incrementally.
import { createStorage } from "../gpu/buffers.ts";
import { BlockPool } from "./block-pool.ts";

export interface KvCacheOptions {
  layers: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
  /** longest sequence (tokens per head) a table row can describe */
  maxSeqLen: number;
  maxSeqs: number;
}

export interface SeqCache {
  slot: number;
  /** block ids per head index (layer * kvHeads + head) */
  blocks: number[][];
  /** tokens kept per head index */
  lengths: Int32Array;
}

export class KvCache {
  readonly pool: BlockPool;
  readonly table: GPUBuffer;
  readonly heads: number; // layers * kvHeads
  readonly stride: number; // maxBlocksPerHead
  private mirror: Uint32Array<ArrayBuffer>;
  private dirty = new Map<number, [number, number]>(); // table row -> [from, to)
  private freeSlots: number[];

  constructor(private device: GPUDevice, readonly opts: KvCacheOptions) {
    this.pool = new BlockPool(device, opts.numBlocks, opts.blockSize, opts.headDim);
    this.heads = opts.layers * opts.kvHeads;
    this.stride = Math.ceil(opts.maxSeqLen / opts.blockSize);
    this.mirror = new Uint32Array(opts.maxSeqs * this.heads * this.stride);
    this.table = createStorage(device, this.mirror.byteLength, "kv-block-table");
    this.freeSlots = Array.from({ length: opts.maxSeqs }, (_, i) => opts.maxSeqs - 1 - i);
  }

  get blockSize(): number {
    return this.opts.blockSize;
  }

  /** Blocks `tokens` positions take uncompressed: each (layer, KV head) holds them in blocks of blockSize. */
  blocksFor(tokens: number): number {
    return this.heads * Math.ceil(tokens / this.opts.blockSize);
  }

  /** Table slots free for new sequences. */
  get freeSeqSlots(): number {
    return this.freeSlots.length;
  }

  /** A new, empty sequence, or null when every table slot is taken. */
  open(): SeqCache | null {
    const slot = this.freeSlots.pop();
    if (slot === undefined) return null;
    return { slot, blocks: Array.from({ length: this.heads }, () => []), lengths: new Int32Array(this.heads) };
  }

  /**
   * A new sequence with blocks for as many keys per head as `src` holds (evaluation:
   * one prefill, then several compression settings; Compactor.copy fills them); null
   * when the pool or the table slots are short.
   */
  fork(src: SeqCache): SeqCache | null {
    if (src.blocks.reduce((a, b) => a + b.length, 0) > this.pool.numFreeBlocks) return null;
    const dst = this.open();
    if (!dst) return null;
    dst.lengths.set(src.lengths);
    if (this.reserve(dst, 0)) return dst;
    this.release(dst);
    return null;
  }

  /**
   * Gives an empty sequence blocks other holders share (a cached prefix): `blocks[h]`
   * and `lengths[h]` tokens per head. A sequence that will write into them (scores,
   * compaction) takes private copies first (Compactor.unshare).
   */
  share(seq: SeqCache, blocks: ArrayLike<number>[], lengths: ArrayLike<number>) {
    for (let h = 0; h < this.heads; h++) {
      if (seq.blocks[h].length) throw new Error("share() needs an empty sequence");
      const list = Array.from(blocks[h]);
      for (const id of list) this.pool.retain(id);
      seq.blocks[h] = list;
      seq.lengths[h] = lengths[h];
      this.setRow(seq, h, 0);
    }
  }

  /** Puts block `id` at index i of head h's list (a private copy replacing a shared block). */
  replace(seq: SeqCache, h: number, i: number, id: number) {
    seq.blocks[h][i] = id;
    this.setRow(seq, h, i);
  }

  /** Writes head h's block list from index `from` on into the table mirror. */
  private setRow(seq: SeqCache, h: number, from: number) {
    const row = seq.slot * this.heads + h;
    const list = seq.blocks[h];
    for (let i = from; i < list.length; i++) this.mirror[row * this.stride + i] = list[i];
    if (list.length > from) this.markDirty(row, from, list.length);
  }

  /** Blocks needed so every head can take `n` more tokens. */
  blocksNeeded(seq: SeqCache, n: number): number {
    let need = 0;
    const bs = this.opts.blockSize;
    for (let h = 0; h < this.heads; h++) need += Math.max(0, Math.ceil((seq.lengths[h] + n) / bs) - seq.blocks[h].length);
    return need;
  }

  /**
   * Makes room for `n` more tokens in every head. All or nothing: false (and no
   * change) when the pool is short or a head would outgrow its table row.
   */
  reserve(seq: SeqCache, n: number): boolean {
    const bs = this.opts.blockSize;
    for (let h = 0; h < this.heads; h++) if (Math.ceil((seq.lengths[h] + n) / bs) > this.stride) return false;
    const need = this.blocksNeeded(seq, n);
    if (need === 0) return true;
    const ids = this.pool.allocate(need);
    if (!ids) return false;
    let k = 0;
    for (let h = 0; h < this.heads; h++) {
      const list = seq.blocks[h];
      const want = Math.ceil((seq.lengths[h] + n) / bs);
      const from = list.length;
      const row = seq.slot * this.heads + h;
      while (list.length < want) {
        this.mirror[row * this.stride + list.length] = ids[k];
        list.push(ids[k++]);
      }
      if (list.length > from) this.markDirty(row, from, list.length);
    }
    return true;
  }

  /** Records that `n` tokens were written to every head. */
  commit(seq: SeqCache, n: number) {
    for (let h = 0; h < this.heads; h++) seq.lengths[h] += n;
  }

  /** Forgets the newest `n` tokens of every head and frees blocks left empty. */
  rollback(seq: SeqCache, n: number) {
    if (n <= 0) return;
    for (let h = 0; h < this.heads; h++) seq.lengths[h] = Math.max(0, seq.lengths[h] - n);
    this.trim(seq);
  }

  /** Frees the blocks beyond each head's length. */
  trim(seq: SeqCache) {
    const bs = this.opts.blockSize;
    for (let h = 0; h < this.heads; h++) {
      const keep = Math.ceil(seq.lengths[h] / bs);
      const list = seq.blocks[h];
      if (list.length > keep) this.pool.freeBlocks(list.splice(keep));
    }
  }

  /** Returns every block of the sequence and its table slot. */
  release(seq: SeqCache) {
    for (let h = 0; h < this.heads; h++) {
      // newest first: cached blocks go idle tail first, and the pool reclaims the oldest
      // idle ones, so a cached prompt loses its end before its start
      this.pool.freeBlocks(seq.blocks[h].reverse());
      seq.blocks[h] = [];
      seq.lengths[h] = 0;
    }
    if (seq.slot >= 0) this.freeSlots.push(seq.slot);
    seq.slot = -1;
  }

  private markDirty(row: number, from: number, to: number) {
    const d = this.dirty.get(row);
    if (d) {
      d[0] = Math.min(d[0], from);
      d[1] = Math.max(d[1], to);
    } else this.dirty.set(row, [from, to]);
  }

  /** Uploads the table entries changed since the last flush. */
  flush() {
    for (const [row, [a, b]] of this.dirty) {
      const off = row * this.stride + a;
      this.device.queue.writeBuffer(this.table, off * 4, this.mirror, off, b - a);
    }
    this.dirty.clear();
  }

  /** (tableOffset, lenBefore) of each head of `seq`, for the attention kernels. */
  writeHeads(seq: SeqCache, out: Uint32Array, at: number) {
    for (let h = 0; h < this.heads; h++) {
      out[at + 2 * h] = (seq.slot * this.heads + h) * this.stride;
      out[at + 2 * h + 1] = seq.lengths[h];
    }
  }

  tokensKept(seq: SeqCache): number {
    let s = 0;
    for (let h = 0; h < this.heads; h++) s += seq.lengths[h];
    return s;
  }
  blocksUsed(seq: SeqCache): number {
    let s = 0;
    for (let h = 0; h < this.heads; h++) s += seq.blocks[h].length;
    return s;
  }

  destroy() {
    this.pool.destroy();
    this.table.destroy();
  }
}

/** Parses sizes like "2GiB", "512MiB", "1.5G", "1000000". */
export function parseBytes(s: string): number {
  const m = /^\s*([\d.]+)\s*([kmgt]?)(i?b?)\s*$/i.exec(s);
  if (!m || !Number.isFinite(Number(m[1]))) throw new Error(`cannot read "${s}" as a size; use e.g. 512MiB or 2GiB`);
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Math.floor(Number(m[1]) * mult);
}
