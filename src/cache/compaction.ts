// Applying an eviction plan without moving K/V through the host: the planner reads
// only scores and positions (kv_gather); survivors past each head's new length move
// into evicted slots before it (kv_compact); emptied trailing blocks return to the pool.
import { GrowableBuffers, readBuffer } from "../gpu/buffers.ts";
import { cdiv, type KernelContext } from "../gpu/kernels.ts";
import type { KvCache, SeqCache } from "./kv-cache.ts";
import type { EvictionPlan, HeadKeys } from "./policies.ts";

/** (src, dst) physical slot pairs and each head's new length. Pure. */
export function compactionMoves(seq: SeqCache, plan: EvictionPlan, blockSize: number): { moves: Uint32Array<ArrayBuffer>; lengths: Int32Array } {
  const moves: number[] = [];
  const lengths = new Int32Array(seq.lengths.length);
  const phys = (h: number, i: number) => seq.blocks[h][Math.floor(i / blockSize)] * blockSize + (i % blockSize);
  for (let h = 0; h < seq.lengths.length; h++) {
    const n = seq.lengths[h];
    const gone = new Uint8Array(n);
    for (const i of plan[h] ?? []) {
      if (i < 0 || i >= n || gone[i]) throw new Error(`eviction plan for head ${h} names slot ${i} twice or out of range`);
      gone[i] = 1;
    }
    const keep = n - (plan[h]?.length ?? 0);
    lengths[h] = keep;
    // holes below the new length, filled in order by survivors above it
    let src = keep;
    for (let dst = 0; dst < keep; dst++) {
      if (!gone[dst]) continue;
      while (gone[src]) src++;
      moves.push(phys(h, src), phys(h, dst));
      src++;
    }
  }
  return { moves: Uint32Array.from(moves), lengths };
}

export class Compactor {
  private ws: GrowableBuffers;

  constructor(private kc: KernelContext, private cache: KvCache) {
    this.ws = new GrowableBuffers(kc.device, () => kc.forgetBindGroups());
  }

  /** Scores and positions of every kept key of `seq`, per (layer, KV head). */
  async gather(seq: SeqCache): Promise<HeadKeys[]> {
    return (await this.gatherMany([seq]))[0];
  }

  /** The same for several sequences with one dispatch and one readback. */
  async gatherMany(seqs: SeqCache[]): Promise<HeadKeys[][]> {
    const c = this.cache;
    const n = seqs.length * c.heads;
    const heads = new Uint32Array(n * 2);
    seqs.forEach((s, i) => c.writeHeads(s, heads, i * c.heads * 2));
    const stride = Math.max(1, ...seqs.flatMap((s) => Array.from(s.lengths)));
    const bHeads = this.ws.get("heads", heads.byteLength);
    const out = this.ws.get("gathered", 2 * n * stride * 4);
    this.kc.device.queue.writeBuffer(bHeads, 0, heads);
    c.flush();
    const st = this.kc.step();
    const y = Math.min(n, 65535);
    st.dispatch(this.kc.kernel("kv_gather"), [bHeads, c.table, c.pool.scores, c.pool.pos, out], { stride, BS: c.blockSize, nHeads: n }, [cdiv(stride, 64), y, cdiv(n, y)]);
    st.submit();
    const words = new Uint32Array(await readBuffer(this.kc.device, out, 0, 2 * n * stride * 4));
    const scores = new Float32Array(words.buffer, 0, n * stride);
    return seqs.map((s, i) =>
      Array.from({ length: c.heads }, (_, h) => {
        const at = (i * c.heads + h) * stride;
        return { scores: scores.slice(at, at + s.lengths[h]), pos: words.slice(n * stride + at, n * stride + at + s.lengths[h]) };
      }));
  }

  /** Evicts the planned keys of `seq`; returns how many K/V entries went. */
  apply(seq: SeqCache, plan: EvictionPlan): number {
    const c = this.cache;
    const { moves, lengths } = compactionMoves(seq, plan, c.blockSize);
    this.move(moves);
    let evicted = 0;
    for (let h = 0; h < c.heads; h++) {
      evicted += seq.lengths[h] - lengths[h];
      seq.lengths[h] = lengths[h];
    }
    c.trim(seq);
    return evicted;
  }

  /** Copies every kept key of `src` into the same slots of `dst` (a KvCache.fork of it). */
  copy(src: SeqCache, dst: SeqCache) {
    const bs = this.cache.blockSize;
    const moves: number[] = [];
    for (let h = 0; h < src.lengths.length; h++) {
      for (let i = 0; i < src.lengths[h]; i++) moves.push(src.blocks[h][Math.floor(i / bs)] * bs + (i % bs), dst.blocks[h][Math.floor(i / bs)] * bs + (i % bs));
    }
    this.move(Uint32Array.from(moves));
  }

  /**
   * Copy on write: gives `seq` a private copy of every block it shares (a cached prefix
   * it will score or compact), then lets go of the shared ones. All or nothing: false
   * (and no change) when the pool is short.
   */
  unshare(seq: SeqCache): boolean {
    const c = this.cache, bs = c.blockSize, pool = c.pool;
    const shared: [number, number][] = [];
    for (let h = 0; h < c.heads; h++) seq.blocks[h].forEach((id, i) => pool.isShared(id) && shared.push([h, i]));
    if (!shared.length) return true;
    const ids = pool.allocate(shared.length);
    if (!ids) return false;
    const moves: number[] = [];
    const old: number[] = [];
    shared.forEach(([h, i], k) => {
      const src = seq.blocks[h][i];
      const n = Math.min(bs, seq.lengths[h] - i * bs);
      for (let j = 0; j < n; j++) moves.push(src * bs + j, ids[k] * bs + j);
      old.push(src);
      c.replace(seq, h, i, ids[k]);
    });
    this.move(Uint32Array.from(moves));
    pool.freeBlocks(old);
    return true;
  }

  /** kv_compact over (src, dst) physical slot pairs whose sources and destinations never overlap. */
  private move(moves: Uint32Array<ArrayBuffer>) {
    const c = this.cache;
    const n = moves.length / 2;
    if (n === 0) return;
    const bMoves = this.ws.get("moves", moves.byteLength);
    this.kc.device.queue.writeBuffer(bMoves, 0, moves);
    const st = this.kc.step();
    const y = Math.min(n, 65535);
    st.dispatch(this.kc.kernel("kv_compact"), [bMoves, c.pool.k, c.pool.v, c.pool.pos, c.pool.scores], { nMoves: n, half: c.opts.headDim / 2 }, [cdiv(c.opts.headDim / 2, 64), y, cdiv(n, y)]);
    st.submit();
  }

  destroy() {
    this.ws.destroy();
  }
}
