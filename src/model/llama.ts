// The Llama forward pass on the GPU: one `Step` records embedding, every layer,
// the final norm, lm_head and sampling for a batch of sequences, each bringing any
// number of new tokens (a prefill chunk or one decode token).
//
//   x = embed(tokens)
//   per layer: h = rmsnorm(x); qkv = h Wqkv (+b); rope(q, k); append k, v to the paged
//              cache; a = attention(q, cache); x += a Wo; h = rmsnorm(x);
//              x += swiglu(h Wgate, h Wup) Wdown
//   logits = rmsnorm(x[last row of each sequence]) Wlm; token = sample(logits)
// With at most GEMV_MAX_ROWS rows (decode) each rmsnorm is folded into the GEMV after
// it and swiglu into the gate_up GEMV: 6 dispatches per layer. RoPE and the cache
// append are one kernel on both paths.
//
// Long file: the forward pass with the tile choice of its GEMV and attention
// dispatches; the tile choice is to move into a module per kernel family.
import { checkGpuErrors, type Gpu } from "../gpu/device.ts";
import { GrowableBuffers, readBuffer } from "../gpu/buffers.ts";
import { Usage } from "../gpu/flags.ts";
import { cdiv, F, nextPow2, type Binding, type Defines, type Kernel, type KernelContext, type Step } from "../gpu/kernels.ts";
import type { KvCache, SeqCache } from "../cache/kv-cache.ts";
import type { ModelConfig } from "./config.ts";
import { pad8, type Matrix, type MatrixShard, type ModelWeights } from "./weights.ts";
import { gemmGrid, gemmKernel, modelGemm } from "./gemm.ts";

export interface Sampling {
  temperature: number; // 0 = greedy
  topP: number; // 1 = off
  topK: number; // 0 = off
  seed: number; // u32
}

export interface StepSeq {
  seq: SeqCache;
  /** new token ids; ignored when the step reads tokens from the previous step's samples */
  tokens: ArrayLike<number>;
  /** number of new tokens (tokens.length unless fed from the GPU, then 1) */
  n: number;
  /** position of the first new token */
  pos0: number;
  sampling: Sampling;
  /** counter fed to the sampler's hash: the index of the token being drawn */
  counter: number;
  /** how many of the last new tokens score the cached keys (observation window; 1 in continual decode) */
  scoreRows?: number;
}

export interface StepInput {
  seqs: StepSeq[];
  /** decode tokens come from the last step's GPU samples (same batch order) */
  tokensFromGpu: boolean;
  /** where in the sample history buffer this step's tokens go (in batch rows) */
  histOffset: number;
  /**
   * Teacher forcing (perplexity): the next token of every row, 0xffffffff for none.
   * The step then scores every row (readNll) instead of sampling.
   */
  nllTargets?: Uint32Array<ArrayBuffer>;
}

/** Buffers of a step whose rows score the cached keys (see kernels/kv_scores.wgsl). */
interface Scoring {
  slots: number;
  nSeqs: number;
  seqs: GPUBuffer;
  sraw: GPUBuffer;
  /** what attention.wgsl writes; attention_prefill.wgsl writes it into sraw from lseBase on */
  lse: GPUBuffer;
  stride: number;
  /** f32 index of the lse tail of sraw (256-byte aligned, so kv_scores can bind it alone) */
  lseBase: number;
}

const NO_SLOT = 0xffffffff;

/**
 * A run of output columns [col, col + nW) of the fused gate_up GEMV whose gate rows
 * (col + i) all sit in one shard and whose up rows (F + col + i) in one shard; `n`
 * adds the zero padding columns to the last run.
 */
export interface SwigluRun {
  gate: MatrixShard;
  up: MatrixShard;
  col: number;
  nW: number;
  n: number;
}

/** Cuts gate_up (gate rows 0..F-1, then up rows F..2F-1, row-sharded) into SwigluRuns. */
export function swigluRuns(m: Matrix, F: number, Fp: number): SwigluRun[] {
  const cuts = new Set([0, F]);
  for (const s of m.shards) cuts.add(s.rowStart < F ? s.rowStart : s.rowStart - F);
  const at = (row: number) => m.shards.find((s) => row >= s.rowStart && row < s.rowStart + s.rows)!;
  const sorted = [...cuts].sort((a, b) => a - b);
  const runs: SwigluRun[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const [col, end] = [sorted[i], sorted[i + 1]];
    runs.push({ gate: at(col), up: at(F + col), col, nW: end - col, n: end === F ? Fp - col : end - col });
  }
  return runs;
}

/**
 * Matmuls with at most this many rows use the GEMV kernel; more use the tiled GEMM. On
 * an H200 the GEMV's 16-row tiles ran the 8B layer's matrices 1.55x faster than the
 * GEMM's 64 x 64 tiles at 32 rows, and fell behind at 64 (bench/results).
 */
const GEMV_MAX_ROWS = 32;

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
export class LlamaModel {
  readonly ws: GrowableBuffers;
  readonly ffnPad: number;
  private qkvWidth: number;
  private histCapacity = 0;
  /** attention_prefill.wgsl serves a step once a sequence brings this many rows (decode keeps attention.wgsl) */
  prefillAttentionMinRows = 17;
  /** the tiled prefill kernel's tile (null: the shape has none); benchmarks swap it to compare */
  prefillTiling: PrefillTiling | null;
  /** layout of kernels/attention.wgsl (decode, and steps without a prefill tile) */
  decodeAttention: DecodeAttentionShape;
  /** decode attention splits until about this many workgroups run */
  attnWorkgroups = ATTN_WORKGROUPS;
  /** the GEMM variant at M rows (src/model/gemm.ts) */
  readonly gemmFor = modelGemm();
  /** a uniform (see kernels/rope_append.wgsl), padded to whole vec4s */
  private invFreq: GPUBuffer;
  private freq4: number;
  private swiglu: SwigluRun[][];

  constructor(readonly gpu: Gpu, readonly kc: KernelContext, readonly cfg: ModelConfig, readonly w: ModelWeights, readonly cache: KvCache) {
    this.ws = new GrowableBuffers(gpu.device, () => kc.forgetBindGroups());
    this.ffnPad = pad8(cfg.ffn);
    this.qkvWidth = (cfg.heads + 2 * cfg.kvHeads) * cfg.headDim;
    this.prefillTiling = prefillTiling(cfg.heads / cfg.kvHeads, cfg.headDim, gpu.limits.maxComputeWorkgroupStorageSize);
    this.decodeAttention = decodeAttentionShape(cfg.heads / cfg.kvHeads, cfg.headDim);
    this.freq4 = cdiv(cfg.invFreq.length, 4);
    const freqs = new Float32Array(this.freq4 * 4);
    freqs.set(cfg.invFreq);
    this.invFreq = gpu.device.createBuffer({ label: "inv-freq", size: freqs.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST });
    gpu.device.queue.writeBuffer(this.invFreq, 0, freqs);
    this.swiglu = w.layers.map((l) => swigluRuns(l.gateUp, cfg.ffn, this.ffnPad));
  }

  /**
   * Sample history: `rows` u32 entries the host reads back in one map. Reserve the
   * whole round up front: growing it mid-round would drop earlier steps' tokens.
   */
  reserveHistory(rows: number): GPUBuffer {
    this.histCapacity = Math.max(this.histCapacity, rows);
    return this.ws.get("hist", this.histCapacity * 4);
  }

  /** steps submitted so far (a step feeding on GPU-sampled tokens needs the previous step to be the last) */
  steps = 0;

  /** Records and submits one forward step; returns the number of rows (tokens) processed. */
  step(input: StepInput): number {
    const { cfg, cache, kc } = this;
    this.steps++;
    const dev = this.gpu.device;
    const B = input.seqs.length;
    const M = input.seqs.reduce((a, s) => a + s.n, 0);
    const H = cfg.heads, KVH = cfg.kvHeads, D = cfg.headDim, Dm = cfg.hidden, L = cfg.layers;

    // per-step tables: rows (seq, i, pos, slot), then the prefill tiles; heads (tableOffset, lenBefore), last rows
    const tiling = this.prefillTiling && input.seqs.some((s) => s.n >= this.prefillAttentionMinRows) ? this.prefillTiling : null;
    const tiles = tiling ? prefillTiles(input.seqs.map((s) => s.n), input.seqs.map((s) => Math.max(...s.seq.lengths)), tiling.BQ) : null;
    const rows = new Uint32Array(M * 4 + (tiles?.length ?? 0));
    if (tiles) rows.set(tiles, M * 4);
    const heads = new Uint32Array(B * cache.heads * 2);
    const last = new Uint32Array(B);
    const toks = new Uint32Array(M);
    const samp = new Uint32Array(B * 8);
    const scoreSeqs: number[] = []; // (batch seq, first slot, slot count, i of first slot)
    let slots = 0;
    let r = 0;
    let maxLen = 0;
    input.seqs.forEach((s, b) => {
      const nScore = Math.min(s.n, s.scoreRows ?? 0);
      if (nScore > 0) scoreSeqs.push(b, slots, nScore, s.n - nScore);
      for (let i = 0; i < s.n; i++, r++) {
        rows.set([b, i, s.pos0 + i, i >= s.n - nScore ? slots++ : NO_SLOT], r * 4);
        if (!input.tokensFromGpu) toks[r] = s.tokens[i];
      }
      last[b] = r - 1;
      cache.writeHeads(s.seq, heads, b * cache.heads * 2);
      for (let h = 0; h < cache.heads; h++) maxLen = Math.max(maxLen, s.seq.lengths[h] + s.n);
      samp.set([F(s.sampling.temperature), F(s.sampling.topP), s.sampling.topK >>> 0, s.sampling.seed >>> 0, s.counter >>> 0], b * 8);
    });
    const ws = this.ws;
    const bRows = ws.get("rows", rows.byteLength);
    const bHeads = ws.get("heads", heads.byteLength);
    const bLast = ws.get("last", last.byteLength);
    const bSamp = ws.get("samp", samp.byteLength);
    const bSampled = ws.get("sampled", B * 4);
    dev.queue.writeBuffer(bRows, 0, rows);
    dev.queue.writeBuffer(bHeads, 0, heads);
    dev.queue.writeBuffer(bLast, 0, last);
    dev.queue.writeBuffer(bSamp, 0, samp);
    let bTok = bSampled;
    if (!input.tokensFromGpu) {
      bTok = ws.get("tokens", toks.byteLength);
      dev.queue.writeBuffer(bTok, 0, toks);
    }
    cache.flush();

    const x = ws.get("x", M * Dm * 4);
    const hbuf = ws.get("h", M * Dm * 4);
    const qkv = ws.get("qkv", M * this.qkvWidth * 4);
    const attn = ws.get("attn", M * H * D * 4);
    const gu = ws.get("gu", M * 2 * cfg.ffn * 4);
    const act = ws.get("act", M * this.ffnPad * 4);
    const forced = input.nllTargets;
    if (forced && forced.length !== M) throw new Error(`nllTargets has ${forced.length} entries for ${M} rows`);
    const outRows = forced ? M : B;
    const xs = ws.get("xs", outRows * Dm * 4);
    const logits = ws.get("logits", outRows * cfg.vocab * 4);
    if (!forced && input.histOffset + B > this.histCapacity) throw new Error("sample history not reserved for this step");

    const lseOffset = Math.ceil((slots * H * maxLen * 4) / 256) * 256;
    const scoring = slots > 0 ? {
      slots,
      nSeqs: scoreSeqs.length / 4,
      seqs: ws.get("score-seqs", scoreSeqs.length * 4),
      sraw: ws.get("score-raw", lseOffset + slots * H * 4),
      lse: ws.get("score-lse", slots * H * 4),
      stride: maxLen,
      lseBase: lseOffset / 4,
    } : null;
    if (scoring) dev.queue.writeBuffer(scoring.seqs, 0, new Uint32Array(scoreSeqs));

    const st = kc.step();
    this.embed(st, bTok, x, M);
    const attnPlan = decodeAttentionPlan(M * cfg.kvHeads * this.decodeAttention.NG, maxLen, this.decodeAttention.BK, this.attnWorkgroups);
    for (let l = 0; l < L; l++) {
      const lw = this.w.layers[l];
      this.normMatmul(st, lw.qkv, x, lw.ln1, hbuf, qkv, M, this.qkvWidth, { bias: lw.qkvBias });
      st.dispatch(kc.kernel("rope_append", { FREQ4: this.freq4 }),
        [qkv, bRows, bHeads, cache.table, cache.pool.k, cache.pool.v, cache.pool.pos, cache.pool.scores, this.invFreq],
        [M, D, H, KVH, L, l, cache.blockSize, this.qkvWidth], [cdiv((H + KVH) * (D / 4), 64), M]);
      if (tiling) this.attentionTiled(st, tiling, l, qkv, bRows, bHeads, attn, M, tiles!.length / 4, maxLen, scoring);
      else this.attention(st, attnPlan, l, qkv, bRows, bHeads, attn, M, scoring);
      this.matmul(st, lw.o, attn, x, M, Dm, { residual: true });
      if (M <= GEMV_MAX_ROWS && this.swiglu[l].every((r) => r.gate.quant === r.up.quant)) {
        this.gateUpSwiglu(st, this.swiglu[l], lw.gateUp.K, x, lw.ln2, act, M);
      } else {
        this.rmsnorm(st, x, lw.ln2, hbuf, M);
        this.matmul(st, lw.gateUp, hbuf, gu, M, 2 * cfg.ffn);
        st.dispatch(kc.kernel("swiglu"), [gu, act], [M, cfg.ffn, this.ffnPad], [cdiv(this.ffnPad, 64), M]);
      }
      this.matmul(st, lw.down, act, x, M, Dm, { residual: true });
    }
    if (forced) {
      const bTargets = ws.get("nll-targets", forced.byteLength);
      dev.queue.writeBuffer(bTargets, 0, forced);
      this.normMatmul(st, this.w.lmHead, x, this.w.norm, xs, logits, M, cfg.vocab);
      const gx = Math.min(M, 65535);
      st.dispatch(kc.kernel("token_nll"), [logits, bTargets, ws.get("nll", M * 4)], [cfg.vocab, M], [gx, cdiv(M, gx)]);
    } else {
      this.normMatmul(st, this.w.lmHead, x, this.w.norm, xs, logits, B, cfg.vocab, { gather: bLast });
      st.dispatch(kc.kernel("sample"), [logits, bSamp, bSampled, ws.get("hist", this.histCapacity * 4)], [cfg.vocab, B, input.histOffset], [B]);
    }
    st.submit();
    for (const s of input.seqs) cache.commit(s.seq, s.n);
    return M;
  }

  /** Logits of batch row b from the last step (for tests and evaluation). */
  async readLogits(b: number): Promise<Float32Array> {
    const V = this.cfg.vocab;
    const buf = this.ws.get("logits", (b + 1) * V * 4);
    return new Float32Array(await readBuffer(this.gpu.device, buf, b * V * 4, V * 4));
  }

  /** Per-row negative log-likelihoods of the last teacher-forced step. */
  async readNll(rows: number): Promise<Float32Array> {
    const out = new Float32Array(await readBuffer(this.gpu.device, this.ws.get("nll", rows * 4), 0, rows * 4));
    checkGpuErrors(this.gpu);
    return out;
  }

  async readHistory(rows: number): Promise<Uint32Array> {
    const out = new Uint32Array(await readBuffer(this.gpu.device, this.reserveHistory(rows), 0, rows * 4));
    checkGpuErrors(this.gpu);
    return out;
  }

  private embed(st: Step, tok: GPUBuffer, x: GPUBuffer, M: number) {
    const e = this.w.embed;
    for (const s of e.shards) {
      st.dispatch(this.kc.kernel("embed", { QUANT: s.quant ?? false }), [s.buffer, tok, x], [e.K, M, s.rowStart, s.rows, 0], [cdiv(e.K / 2, 64), M]);
    }
  }

  private rmsnorm(st: Step, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, rows: number, gather?: GPUBuffer) {
    const k = this.kc.kernel("rmsnorm", { GATHER: !!gather });
    const bindings: Binding[] = gather ? [x, w, y, gather] : [x, w, y];
    const gx = Math.min(rows, 65535);
    st.dispatch(k, bindings, [this.cfg.hidden, F(this.cfg.normEps), rows], [gx, cdiv(rows, gx)]);
  }

  /** Y[M, ldy] (+)= X[M, m.K] W^T over every row shard of W. */
  matmul(st: Step, m: Matrix, X: GPUBuffer, Y: GPUBuffer, M: number, ldy: number, o: { bias?: GPUBuffer | null; residual?: boolean } = {}) {
    const bias = !!o.bias;
    const gemm = this.gemmFor(M);
    for (const s of m.shards) {
      // the shard's weight format (f16 or a block format: src/model/quant.ts) picks the variant
      const QUANT = s.quant ?? false;
      const gemv = M <= GEMV_MAX_ROWS ? this.gemv(M, { BIAS: bias, RESIDUAL: !!o.residual, QUANT }) : null;
      const k = gemv ? gemv.k : gemmKernel(this.kc, gemm, bias, !!o.residual, QUANT);
      const bindings: Binding[] = [s.buffer, X, Y];
      if (o.bias) bindings.push(o.bias);
      const wg: [number, number] = gemv ? gemvGrid(gemv.tile, M, s.rows, false) : gemmGrid(gemm, M, s.rows);
      st.dispatch(k, bindings, [m.K, s.rows, M, ldy, s.rowStart], wg);
    }
  }

  private gemv(M: number, defs: Defines): { k: Kernel; tile: GemvTile } {
    const tile = gemvTileFor(M, !!defs.NORM, this.gpu.limits.maxComputeWorkgroupStorageSize, this.gpu.features.subgroups, !!defs.SWIGLU);
    return { k: this.kc.kernel("gemv", { BIAS: false, RESIDUAL: false, NORM: false, GATHER: false, SWIGLU: false, WG: GEMV_WG, ...tile, ...defs }), tile };
  }

  /**
   * Y = rmsnorm(X[rows], g) W^T (+ bias), rows = gather[j] or j: in the GEMV itself for
   * a few rows, else rmsnorm into h and then the GEMM.
   */
  private normMatmul(st: Step, m: Matrix, X: GPUBuffer, g: GPUBuffer, h: GPUBuffer, Y: GPUBuffer, M: number, ldy: number, o: { bias?: GPUBuffer | null; gather?: GPUBuffer } = {}) {
    if (M > GEMV_MAX_ROWS) {
      this.rmsnorm(st, X, g, h, M, o.gather);
      this.matmul(st, m, h, Y, M, ldy, { bias: o.bias });
      return;
    }
    for (const s of m.shards) {
      const { k, tile } = this.gemv(M, { BIAS: !!o.bias, NORM: true, GATHER: !!o.gather, QUANT: s.quant ?? false });
      const bindings: Binding[] = [s.buffer, X, Y];
      if (o.bias) bindings.push(o.bias);
      bindings.push(g);
      if (o.gather) bindings.push(o.gather);
      st.dispatch(k, bindings, [m.K, s.rows, M, ldy, s.rowStart, F(this.cfg.normEps)], gemvGrid(tile, M, s.rows, false));
    }
  }

  /** act = swiglu(rmsnorm(X, g) Wgate, rmsnorm(X, g) Wup), zero padded to ffnPad, for a few rows. */
  private gateUpSwiglu(st: Step, runs: SwigluRun[], K: number, X: GPUBuffer, g: GPUBuffer, act: GPUBuffer, M: number) {
    for (const r of runs) {
      const { k, tile } = this.gemv(M, { NORM: true, SWIGLU: true, QUANT: r.gate.quant ?? false });
      st.dispatch(k, [r.gate.buffer, X, act, g, r.up.buffer],
        [K, r.n, M, this.ffnPad, r.col, F(this.cfg.normEps), r.nW, r.col - r.gate.rowStart, this.cfg.ffn + r.col - r.up.rowStart], gemvGrid(tile, M, r.n, true));
    }
  }

  private attention(st: Step, plan: { nsplit: number; splitLen: number }, layer: number, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, out: GPUBuffer, M: number, scoring: Scoring | null) {
    const { cfg, cache, kc } = this;
    const H = cfg.heads, KVH = cfg.kvHeads, D = cfg.headDim;
    const shape = this.decodeAttention;
    const split = plan.nsplit > 1;
    const defs = { ...shape, SPLIT: split, SCORES: !!scoring };
    const params = [layer, H, KVH, cfg.layers, cache.blockSize, this.qkvWidth, F(1 / Math.sqrt(D)), plan.splitLen, plan.nsplit, scoring?.stride ?? 0];
    const common: Binding[] = [qkv, rows, heads, cache.table, cache.pool.k, cache.pool.v];
    const grid: [number, number, number] = [KVH * shape.NG, M, plan.nsplit];
    if (!split) {
      const b: Binding[] = scoring ? [...common, out, scoring.sraw, scoring.lse] : [...common, out];
      st.dispatch(kc.kernel("attention", defs), b, params, grid);
    } else {
      const ml = this.ws.get("part-ml", M * H * plan.nsplit * 8);
      const po = this.ws.get("part-o", M * H * plan.nsplit * D * 4);
      st.dispatch(kc.kernel("attention", defs), scoring ? [...common, ml, po, scoring.sraw] : [...common, ml, po], params, grid);
      st.dispatch(kc.kernel("attn_merge", { SCORES: !!scoring }), scoring ? [ml, po, out, rows, scoring.lse] : [ml, po, out], [H, D, plan.nsplit], [H, M]);
    }
    if (scoring) this.kvScores(st, layer, heads, scoring, scoring.lse);
  }

  /** Flash-attention tiles (kernels/attention_prefill.wgsl): `nTiles` tiles follow the M rows in `rows`. */
  private attentionTiled(st: Step, tiling: PrefillTiling, layer: number, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, out: GPUBuffer, M: number, nTiles: number, maxLen: number, scoring: Scoring | null) {
    const { cfg, cache, kc } = this;
    const H = cfg.heads, D = cfg.headDim;
    // split-K pays only where the (tile, KV head) workgroups leave the GPU short; scoring rows stay unsplit
    const { nsplit, splitLen } = scoring ? { nsplit: 1, splitLen: Math.max(maxLen, 1) } : prefillSplit(nTiles * cfg.kvHeads, maxLen, tiling.BK);
    const params = [layer, H, cfg.kvHeads, cfg.layers, cache.blockSize, this.qkvWidth, F(1 / Math.sqrt(D)), M, scoring?.stride ?? 0, scoring?.lseBase ?? 0, splitLen, nsplit];
    const common: Binding[] = [qkv, rows, heads, cache.table, cache.pool.k, cache.pool.v];
    const defs = { ...tiling, SPLIT: nsplit > 1, SCORES: !!scoring };
    if (nsplit > 1) {
      const ml = this.ws.get("part-ml", M * H * nsplit * 8);
      const po = this.ws.get("part-o", M * H * nsplit * D * 4);
      st.dispatch(kc.kernel("attention_prefill", defs), [...common, ml, po], params, [cfg.kvHeads, nTiles, nsplit]);
      st.dispatch(kc.kernel("attn_merge", { SCORES: false }), [ml, po, out], [H, D, nsplit], [H, M]);
      return;
    }
    st.dispatch(kc.kernel("attention_prefill", defs), scoring ? [...common, out, scoring.sraw] : [...common, out], params, [cfg.kvHeads, nTiles, 1]);
    if (scoring) this.kvScores(st, layer, heads, scoring, { buffer: scoring.sraw, offset: scoring.lseBase * 4, size: scoring.slots * H * 4 });
  }

  private kvScores(st: Step, layer: number, heads: GPUBuffer, scoring: Scoring, lse: Binding) {
    const { cfg, cache, kc } = this;
    st.dispatch(kc.kernel("kv_scores"), [scoring.sraw, lse, scoring.seqs, heads, cache.table, cache.pool.scores],
      [layer, cfg.heads, cfg.kvHeads, cfg.layers, cache.blockSize, scoring.stride], [cfg.kvHeads, scoring.nSeqs, cdiv(scoring.stride, 64)]);
  }

  destroy() {
    this.ws.destroy();
    this.invFreq.destroy();
  }
}

/** Threads per kernels/gemv.wgsl workgroup. */
const GEMV_WG = 256;

/**
 * A GEMV tile: GEMV_WG / LANES row groups per workgroup, each ROWS weight rows (SWIGLU:
 * half gate, half up) by BATCH activation rows; the LANES threads of a group split K.
 * W is read once per BATCH rows, X once per ROWS rows. An output's value depends on
 * LANES alone (each lane sums its own stride of K, then the lanes' partials are summed
 * in a fixed order), so tiles of one LANES agree bit for bit (batch invariance).
 */
export interface GemvTile {
  ROWS: number;
  BATCH: number;
  LANES: number;
  /** chunks of K a lane loads per loop trip (more loads in flight; same sums) */
  KU: number;
}

/** Bytes of kernels/gemv.wgsl's reduction scratch for a tile: NR values x SLOTS. */
export function gemvScratchBytes(t: GemvTile, norm: boolean, subgroups: boolean): number {
  return (t.ROWS * t.BATCH + (norm ? t.BATCH : 0)) * (GEMV_WG / (subgroups ? 4 : 2)) * 4;
}

/** Lanes per GEMV row group at every M, so that no output depends on the batch. */
const GEMV_LANES = 64;

/**
 * The tile for M decode rows, `norm` when the GEMV folds in RMSNorm (`swiglu` when it
 * also writes silu(gate) * up), within `maxStorage` bytes of workgroup memory. Measured
 * side by side on an H200 under the device's toggles (Tint's robustness transform off:
 * src/gpu/dawn-toggles.ts; bench/results):
 * - M = 1: 2 rows per group for the normed GEMVs (8B qkv 3322 GB/s; with 4 K chunks per
 *   trip, the best tile while the transform was on, 2491), 4 rows for gate/up (8B 3824),
 *   1 row and 2 chunks for o and down (2886, 3888).
 * - M = 2 to 4: all the rows in one batch tile, 4 weight rows per group (2 for o, down).
 * - M >= 8: batch tiles of 4 rows (normed) or 8 rows and 4 chunks (o, down: 8B at 16
 *   rows 952 and 1270 GB/s, against 872 and 822 with 2 chunks), neighbours in dispatch
 *   order so that the tiles after the first read W from L2. Wider batch tiles ran out
 *   of registers.
 * Halving BATCH to fit the storage keeps every value.
 */
export function gemvTileFor(M: number, norm: boolean, maxStorage = 16384, subgroups = true, swiglu = false): GemvTile {
  const t: GemvTile = M === 1
    ? (norm ? { ROWS: swiglu ? 4 : 2, BATCH: 1, LANES: GEMV_LANES, KU: 1 } : { ROWS: 1, BATCH: 1, LANES: GEMV_LANES, KU: 2 })
    : M <= 4 ? { ROWS: norm ? 4 : 2, BATCH: nextPow2(M), LANES: GEMV_LANES, KU: 1 }
    : norm ? { ROWS: 4, BATCH: 4, LANES: GEMV_LANES, KU: 1 }
    : { ROWS: 4, BATCH: 8, LANES: GEMV_LANES, KU: 4 };
  while (t.BATCH > 1 && gemvScratchBytes(t, norm, subgroups) > maxStorage) t.BATCH /= 2;
  return t;
}

/** "ROWSxBATCH", "kKU" where KU > 1, with "/LANES" where the lanes of a group are not the whole workgroup. */
export const gemvTileName = (t: GemvTile) => `${t.ROWS}x${t.BATCH}${t.LANES === GEMV_WG ? "" : "/" + t.LANES}${t.KU > 1 ? "k" + t.KU : ""}`;

/** Workgroups of a GEMV writing `cols` output columns of M rows. */
export function gemvGrid(t: GemvTile, M: number, cols: number, swiglu: boolean): [number, number] {
  return [cdiv(cols, (GEMV_WG / t.LANES) * (swiglu ? t.ROWS / 2 : t.ROWS)), cdiv(M, t.BATCH)];
}
