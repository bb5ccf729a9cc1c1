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
// Long file: the forward pass, one step's every dispatch (the tile choice of the
// GEMV and attention kernels lives beside them: gemv.ts, attention.ts).
import { checkGpuErrors, type Gpu } from "../gpu/device.ts";
import { GrowableBuffers, readBuffer } from "../gpu/buffers.ts";
import { Usage } from "../gpu/flags.ts";
import { GEMV_MAX_ROWS, GEMV_UNFUSED, GEMV_WG, gemvGrid, gemvTileFor, swigluRuns, type GemvTile, type SwigluRun } from "./gemv.ts";
import { quantGemvDefines, quantGemvFor, quantGemvForce } from "./quant-gemv.ts";
import { ATTN_WORKGROUPS, decodeAttentionFixedPlan, decodeAttentionPlan, decodeAttentionShape, prefillMmaTiling, prefillSplit, prefillTiles, prefillTiling, type DecodeAttentionShape, type PrefillMmaTiling, type PrefillTiling } from "./attention.ts";
// the tile choice lives beside its kernels (gemv.ts, attention.ts); importers that still name this module get it here
import { cdiv, nextPow2, type Binding, type Defines, type Kernel, type KernelContext, type Step } from "../gpu/kernels.ts";
import { f32Bits } from "../gpu/params.ts";
import type { KvCache, SeqCache } from "../cache/kv-cache.ts";
import type { ModelConfig } from "./config.ts";
import { pad8, type Matrix, type MatrixShard, type ModelWeights } from "./weights.ts";
import type { QuantType } from "./quant.ts";
import { LP_STRIDE } from "./token-logprobs.ts";
import { gemmGrid, gemmKernel, mmaGrid, mmaKernel, mmaMinRows, mmaTiles, modelGemm, modelMma, modelSkinny, skinnyCols, skinnyFits, skinnyKernel, splitK, splitKTarget, type MmaVariant } from "./gemm.ts";

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
  /** decode attention splits this step's keys at fixed offsets (decodeAttentionFixedPlan) */
  fixedSplits?: boolean;
  /** log-probabilities of the sampled token and this many alternatives (kernels/logprobs.wgsl); absent: none */
  logprobs?: number;
  /** a grammar's allowed tokens (bit i % 32 of word i / 32), applied before sampling (kernels/token_mask.wgsl) */
  mask?: Uint32Array;
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

export class LlamaModel {
  readonly ws: GrowableBuffers;
  readonly ffnPad: number;
  private qkvWidth: number;
  private histCapacity = 0;
  /** attention_prefill.wgsl serves a step once a sequence brings this many rows (decode keeps attention.wgsl) */
  prefillAttentionMinRows = 17;
  /** the tiled prefill kernel's tile (null: the shape has none); benchmarks swap it to compare */
  prefillTiling: PrefillTiling | null;
  /** the tensor-core prefill attention's tile, which serves in place of prefillTiling where set */
  prefillMma: PrefillMmaTiling | null;
  /** layout of kernels/attention.wgsl (decode, and steps without a prefill tile) */
  decodeAttention: DecodeAttentionShape;
  /** decode attention splits until about this many workgroups run */
  attnWorkgroups = ATTN_WORKGROUPS;
  /** the GEMM variant at M rows (src/model/gemm.ts) */
  readonly gemmFor = modelGemm();
  /**
   * Steps of at least this many rows run their matmuls on tensor cores (kernels/gemm_mma.wgsl)
   * where the adapter has f16 subgroup matrices; Infinity elsewhere. KVC_MMA_MIN_ROWS sets it.
   */
  mmaMinRows: number;
  /** the tensor-core GEMM variant for a step of M rows, or null (GEMV / f32 GEMM) */
  readonly mmaAt: (M: number) => MmaVariant | null;
  /** workgroups a tensor-core matmul with few output tiles splits its K range to reach (0: never) */
  readonly splitKWorkgroups = splitKTarget();
  /** decode batches on kernels/gemm_mma_skinny.wgsl, its shape (KVC_MMA_SKINNY, KVC_SKINNY) */
  readonly skinny = modelSkinny();
  /** the quantized GEMV's forced choice (KVC_QGEMV), or null for the planner's */
  readonly quantForce = quantGemvForce();
  /** this step's split-K partials (sized for every matmul of the step before any is recorded) */
  private splitPart: GPUBuffer | null = null;
  /** a uniform (see kernels/rope_append.wgsl), padded to whole vec4s */
  private invFreq: GPUBuffer;
  private freq4: number;
  private swiglu: SwigluRun[][];

  constructor(readonly gpu: Gpu, readonly kc: KernelContext, readonly cfg: ModelConfig, readonly w: ModelWeights, readonly cache: KvCache) {
    this.ws = new GrowableBuffers(gpu.device, () => kc.forgetBindGroups());
    this.ffnPad = pad8(cfg.ffn);
    this.qkvWidth = (cfg.heads + 2 * cfg.kvHeads) * cfg.headDim;
    this.prefillTiling = prefillTiling(cfg.heads / cfg.kvHeads, cfg.headDim, gpu.limits.maxComputeWorkgroupStorageSize);
    this.prefillMma = prefillMmaTiling(gpu, cfg.heads / cfg.kvHeads, cfg.headDim);
    this.decodeAttention = decodeAttentionShape(cfg.heads / cfg.kvHeads, cfg.headDim);
    this.freq4 = cdiv(cfg.invFreq.length, 4);
    const freqs = new Float32Array(this.freq4 * 4);
    freqs.set(cfg.invFreq);
    this.invFreq = gpu.device.createBuffer({ label: "inv-freq", size: freqs.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST });
    gpu.device.queue.writeBuffer(this.invFreq, 0, freqs);
    this.swiglu = w.layers.map((l) => swigluRuns(l.gateUp, cfg.ffn, this.ffnPad));
    this.mmaMinRows = mmaMinRows(gpu);
    this.mmaAt = modelMma(gpu, this.mmaMinRows);
  }


  /**
   * Sample history: `rows` u32 entries the host reads back in one map. Reserve the
   * whole round up front: growing it mid-round would drop earlier steps' tokens.
   */
  reserveHistory(rows: number): GPUBuffer {
    this.histCapacity = Math.max(this.histCapacity, rows);
    this.ws.get("lp-hist", this.histCapacity * LP_STRIDE * 4);
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
    const prefillRows = input.seqs.some((s) => s.n >= this.prefillAttentionMinRows);
    const mmaTiling = prefillRows ? this.prefillMma : null;
    const tiling = prefillRows && !mmaTiling ? this.prefillTiling : null;
    const tileRows = mmaTiling?.BQ ?? tiling?.BQ;
    const tiles = tileRows ? prefillTiles(input.seqs.map((s) => s.n), input.seqs.map((s) => Math.max(...s.seq.lengths)), tileRows) : null;
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
      samp.set([f32Bits(s.sampling.temperature), f32Bits(s.sampling.topP), s.sampling.topK >>> 0, s.sampling.seed >>> 0, s.counter >>> 0, 0, s.logprobs == null ? 0 : 1 + s.logprobs], b * 8);
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

    // split-K partials of this step's matmuls, got before any dispatch is recorded (a
    // buffer that grows is replaced); steps whose matmuls have tiles enough need none
    const partBytes = this.splitBytes(M);
    this.splitPart = partBytes > 0 ? ws.get("splitk", partBytes) : null;
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
    const attnPlan = input.seqs.some((s) => s.fixedSplits)
      ? decodeAttentionFixedPlan(maxLen)
      : decodeAttentionPlan(M * cfg.kvHeads * this.decodeAttention.NG, maxLen, this.decodeAttention.BK, this.attnWorkgroups);
    for (let l = 0; l < L; l++) {
      const lw = this.w.layers[l];
      this.normMatmul(st, lw.qkv, x, lw.ln1, hbuf, qkv, M, this.qkvWidth, { bias: lw.qkvBias });
      st.dispatch(kc.kernel("rope_append", { FREQ4: this.freq4 }),
        [qkv, bRows, bHeads, cache.table, cache.pool.k, cache.pool.v, cache.pool.pos, cache.pool.scores, this.invFreq],
        { M, D, H, KVH, L, layer: l, BS: cache.blockSize, ldq: this.qkvWidth }, [cdiv((H + KVH) * (D / 4), 64), M]);
      if (mmaTiling) this.attentionMma(st, mmaTiling, l, qkv, bRows, bHeads, attn, M, tiles!.length / 4, scoring);
      else if (tiling) this.attentionTiled(st, tiling, l, qkv, bRows, bHeads, attn, M, tiles!.length / 4, maxLen, scoring);
      else this.attention(st, attnPlan, l, qkv, bRows, bHeads, attn, M, scoring);
      this.matmul(st, lw.o, attn, x, M, Dm, { residual: true });
      if (M <= GEMV_MAX_ROWS && !this.mmaAt(M) && this.swiglu[l].every((r) => r.gate.quant === r.up.quant)) {
        this.gateUpSwiglu(st, this.swiglu[l], lw.gateUp.K, x, lw.ln2, act, M);
      } else {
        this.rmsnorm(st, x, lw.ln2, hbuf, M);
        this.matmul(st, lw.gateUp, hbuf, gu, M, 2 * cfg.ffn);
        st.dispatch(kc.kernel("swiglu"), [gu, act], { M, F: cfg.ffn, Fp: this.ffnPad }, [cdiv(this.ffnPad, 64), M]);
      }
      this.matmul(st, lw.down, act, x, M, Dm, { residual: true });
    }
    if (forced) {
      const bTargets = ws.get("nll-targets", forced.byteLength);
      dev.queue.writeBuffer(bTargets, 0, forced);
      this.normMatmul(st, this.w.lmHead, x, this.w.norm, xs, logits, M, cfg.vocab);
      const gx = Math.min(M, 65535);
      st.dispatch(kc.kernel("token_nll"), [logits, bTargets, ws.get("nll", M * 4)], { V: cfg.vocab, M }, [gx, cdiv(M, gx)]);
    } else {
      this.normMatmul(st, this.w.lmHead, x, this.w.norm, xs, logits, B, cfg.vocab, { gather: bLast });
      this.maskLogits(st, logits, input.seqs);
      st.dispatch(kc.kernel("sample"), [logits, bSamp, bSampled, ws.get("hist", this.histCapacity * 4)], { V: cfg.vocab, M: B, histOffset: input.histOffset }, [B]);
      if (input.seqs.some((s) => s.logprobs != null)) {
        st.dispatch(kc.kernel("logprobs"), [logits, bSamp, bSampled, ws.get("lp-hist", this.histCapacity * LP_STRIDE * 4)], { V: cfg.vocab, histOffset: input.histOffset }, [B]);
      }
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

  /** The logprobs rows of the last `rows` history entries (src/model/token-logprobs.ts reads them). */
  async readLogprobs(rows: number): Promise<Uint32Array> {
    this.reserveHistory(rows);
    const out = new Uint32Array(await readBuffer(this.gpu.device, this.ws.get("lp-hist", this.histCapacity * LP_STRIDE * 4), 0, rows * LP_STRIDE * 4));
    checkGpuErrors(this.gpu);
    return out;
  }

  /** The grammar masks of the step's constrained sequences, applied to their logits rows. */
  private maskLogits(st: Step, logits: GPUBuffer, seqs: StepSeq[]) {
    const V = this.cfg.vocab;
    const W = cdiv(V, 32);
    const rows = seqs.flatMap((s, b) => (s.mask ? [b] : []));
    if (!rows.length) return;
    const masks = new Uint32Array(rows.length * W);
    rows.forEach((b, m) => {
      const mask = seqs[b].mask!;
      if (mask.length !== W) throw new Error(`a token mask has ${mask.length} words; the vocabulary of ${V} needs ${W}`);
      masks.set(mask, m * W);
    });
    const bMasks = this.ws.get("masks", masks.byteLength);
    const bRows = this.ws.get("mask-rows", rows.length * 4);
    this.gpu.device.queue.writeBuffer(bMasks, 0, masks);
    this.gpu.device.queue.writeBuffer(bRows, 0, new Uint32Array(rows));
    st.dispatch(this.kc.kernel("token_mask"), [logits, bMasks, bRows], { V, W }, [cdiv(V, 256), rows.length]);
  }

  async readHistory(rows: number): Promise<Uint32Array> {
    const out = new Uint32Array(await readBuffer(this.gpu.device, this.reserveHistory(rows), 0, rows * 4));
    checkGpuErrors(this.gpu);
    return out;
  }

  private embed(st: Step, tok: GPUBuffer, x: GPUBuffer, M: number) {
    const e = this.w.embed;
    for (const s of e.shards) {
      st.dispatch(this.kc.kernel("embed", { QUANT: s.quant ?? false }), [s.buffer, tok, x], { D: e.K, M, rowStart: s.rowStart, rowCount: s.rows, tokOffset: 0 }, [cdiv(e.K / 2, 64), M]);
    }
  }

  private rmsnorm(st: Step, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, rows: number, gather?: GPUBuffer) {
    const k = this.kc.kernel("rmsnorm", { GATHER: !!gather });
    const bindings: Binding[] = gather ? [x, w, y, gather] : [x, w, y];
    const gx = Math.min(rows, 65535);
    st.dispatch(k, bindings, { D: this.cfg.hidden, eps: this.cfg.normEps, M: rows }, [gx, cdiv(rows, gx)]);
  }

  /** Y[M, ldy] (+)= X[M, m.K] W^T over every row shard of W. */
  matmul(st: Step, m: Matrix, X: GPUBuffer, Y: GPUBuffer, M: number, ldy: number, o: { bias?: GPUBuffer | null; residual?: boolean } = {}) {
    const bias = !!o.bias;
    const mma = this.mmaAt(M);
    const gemm = this.gemmFor(M);
    for (const s of m.shards) {
      // the shard's weight format (f16 or a block format: src/model/quant.ts) picks the
      // variant; the tensor-core GEMM reads f16 weights only
      const QUANT = s.quant ?? false;
      const tc = QUANT ? null : mma;
      const sgSize = this.gpu.features.subgroupMaxSize;
      const { skinny, tiles, sk } = this.tensorCorePlan(tc, M, s.rows, m.K);
      // the step's partials are sized for its M rows; the LM head of a decode step runs fewer
      // (one a sequence), whose plan may split further: then it runs unsplit
      const part = this.splitPart;
      if (tc && sk && part && sk.splits * M * s.rows * 4 <= part.size) {
        const k = skinny ? skinnyKernel(this.kc, M, sgSize, false, false, true, skinny) : mmaKernel(this.kc, tc, sgSize, false, false, true);
        const grid: [number, number] = skinny ? [1, tiles] : mmaGrid(tc, M, s.rows);
        st.dispatch(k, [s.buffer, X, part], { K: m.K, N: s.rows, M, ldy, colOff: s.rowStart, kSplit: sk.kSplit }, [...grid, sk.splits]);
        const sum: Binding[] = [part, Y];
        if (o.bias) sum.push(o.bias);
        st.dispatch(this.kc.kernel("gemm_splitk_sum", { BIAS: bias, RESIDUAL: !!o.residual }), sum, { N: s.rows, M, ldy, colOff: s.rowStart, splits: sk.splits }, [cdiv(s.rows, 256), M]);
        continue;
      }
      if (skinny) {
        const bindings: Binding[] = [s.buffer, X, Y];
        if (o.bias) bindings.push(o.bias);
        st.dispatch(skinnyKernel(this.kc, M, sgSize, bias, !!o.residual, false, skinny), bindings, { K: m.K, N: s.rows, M, ldy, colOff: s.rowStart }, [1, tiles]);
        continue;
      }
      const gemv = !tc && M <= GEMV_MAX_ROWS ? this.gemv(M, m.K, { BIAS: bias, RESIDUAL: !!o.residual, QUANT }) : null;
      const k = tc ? mmaKernel(this.kc, tc, sgSize, bias, !!o.residual)
        : gemv ? gemv.k : gemmKernel(this.kc, gemm, bias, !!o.residual, QUANT);
      const bindings: Binding[] = [s.buffer, X, Y];
      if (o.bias) bindings.push(o.bias);
      const wg: [number, number] = tc ? mmaGrid(tc, M, s.rows) : gemv ? gemvGrid(gemv.tile, M, s.rows, false) : gemmGrid(gemm, M, s.rows);
      const out = { K: m.K, N: s.rows, M, ldy, colOff: s.rowStart };
      st.dispatch(k, bindings, gemv ? { ...out, ...GEMV_UNFUSED } : out, wg);
    }
  }

  /**
   * How a tensor-core matmul of M rows runs over an N x K shard (tc: the step's variant,
   * null for none or a quantized shard): on gemm_mma_skinny or gemm_mma, its output tiles
   * (workgroups before any split) and its split-K plan, if it splits.
   */
  private tensorCorePlan(tc: MmaVariant | null, M: number, N: number, K: number) {
    const skinny = tc && this.skinny && skinnyFits(M, N, K) ? this.skinny : null;
    const tiles = skinny ? cdiv(N, skinnyCols(skinny)) : tc ? mmaTiles(tc, M, N) : 0;
    const sk = tc ? splitK(tiles, K, this.splitKWorkgroups) : null;
    return { skinny, tiles, sk };
  }

  private splitBytesByRows = new Map<number, number>();
  /** Bytes of split-K partials the largest split matmul of an M-row step writes (0: none splits). */
  private splitBytes(M: number): number {
    let bytes = this.splitBytesByRows.get(M);
    if (bytes !== undefined) return bytes;
    bytes = 0;
    const mma = this.mmaAt(M);
    const matrices = [...this.w.layers.flatMap((l) => [l.qkv, l.o, l.gateUp, l.down]), this.w.lmHead];
    for (const m of matrices) {
      for (const s of m.shards) {
        const sk = this.tensorCorePlan(s.quant ? null : mma, M, s.rows, m.K).sk;
        if (sk) bytes = Math.max(bytes, sk.splits * M * s.rows * 4);
      }
    }
    this.splitBytesByRows.set(M, bytes);
    return bytes;
  }

  /** The GEMV kernel and tile for M rows of a K-column matrix: f16, or (QUANT) src/model/gemv.ts quantGemvFor's. */
  private gemv(M: number, K: number, defs: Defines): { k: Kernel; tile: GemvTile } {
    const [maxStorage, subgroups, norm, swiglu] = [this.gpu.limits.maxComputeWorkgroupStorageSize, this.gpu.features.subgroups, !!defs.NORM, !!defs.SWIGLU];
    const base = { BIAS: false, RESIDUAL: false, NORM: false, GATHER: false, SWIGLU: false, WG: GEMV_WG };
    if (typeof defs.QUANT === "string") {
      const q = quantGemvFor(M, defs.QUANT as QuantType, K, norm, maxStorage, subgroups, swiglu, this.quantForce);
      return { k: this.kc.kernel("gemv", { ...base, ...defs, ...quantGemvDefines(q, defs.QUANT as QuantType, K) }), tile: q.tile };
    }
    const tile = gemvTileFor(M, norm, maxStorage, subgroups, swiglu);
    return { k: this.kc.kernel("gemv", { ...base, ...tile, ...defs }), tile };
  }

  /**
   * Y = rmsnorm(X[rows], g) W^T (+ bias), rows = gather[j] or j: in the GEMV itself for
   * a few rows, else rmsnorm into h and then the GEMM.
   */
  private normMatmul(st: Step, m: Matrix, X: GPUBuffer, g: GPUBuffer, h: GPUBuffer, Y: GPUBuffer, M: number, ldy: number, o: { bias?: GPUBuffer | null; gather?: GPUBuffer } = {}) {
    if (M > GEMV_MAX_ROWS || this.mmaAt(M)) {
      this.rmsnorm(st, X, g, h, M, o.gather);
      this.matmul(st, m, h, Y, M, ldy, { bias: o.bias });
      return;
    }
    for (const s of m.shards) {
      const { k, tile } = this.gemv(M, m.K, { BIAS: !!o.bias, NORM: true, GATHER: !!o.gather, QUANT: s.quant ?? false });
      const bindings: Binding[] = [s.buffer, X, Y];
      if (o.bias) bindings.push(o.bias);
      bindings.push(g);
      if (o.gather) bindings.push(o.gather);
      st.dispatch(k, bindings, { K: m.K, N: s.rows, M, ldy, colOff: s.rowStart, ...GEMV_UNFUSED, eps: this.cfg.normEps }, gemvGrid(tile, M, s.rows, false));
    }
  }

  /** act = swiglu(rmsnorm(X, g) Wgate, rmsnorm(X, g) Wup), zero padded to ffnPad, for a few rows. */
  private gateUpSwiglu(st: Step, runs: SwigluRun[], K: number, X: GPUBuffer, g: GPUBuffer, act: GPUBuffer, M: number) {
    for (const r of runs) {
      const { k, tile } = this.gemv(M, K, { NORM: true, SWIGLU: true, QUANT: r.gate.quant ?? false });
      st.dispatch(k, [r.gate.buffer, X, act, g, r.up.buffer],
        { K, N: r.n, M, ldy: this.ffnPad, colOff: r.col, eps: this.cfg.normEps, nW: r.nW, gRow: r.col - r.gate.rowStart, uRow: this.cfg.ffn + r.col - r.up.rowStart },
        gemvGrid(tile, M, r.n, true));
    }
  }

  private attention(st: Step, plan: { nsplit: number; splitLen: number }, layer: number, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, out: GPUBuffer, M: number, scoring: Scoring | null) {
    const { cfg, cache, kc } = this;
    const H = cfg.heads, KVH = cfg.kvHeads, D = cfg.headDim;
    const shape = this.decodeAttention;
    const split = plan.nsplit > 1;
    const defs = { ...shape, SPLIT: split, SCORES: !!scoring };
    const params = { ...this.attnParams(layer), splitLen: plan.splitLen, nsplit: plan.nsplit, sStride: scoring?.stride ?? 0 };
    const common: Binding[] = [qkv, rows, heads, cache.table, cache.pool.k, cache.pool.v];
    const grid: [number, number, number] = [KVH * shape.NG, M, plan.nsplit];
    if (!split) {
      const b: Binding[] = scoring ? [...common, out, scoring.sraw, scoring.lse] : [...common, out];
      st.dispatch(kc.kernel("attention", defs), b, params, grid);
    } else {
      const ml = this.ws.get("part-ml", M * H * plan.nsplit * 8);
      const po = this.ws.get("part-o", M * H * plan.nsplit * D * 4);
      st.dispatch(kc.kernel("attention", defs), scoring ? [...common, ml, po, scoring.sraw] : [...common, ml, po], params, grid);
      st.dispatch(kc.kernel("attn_merge", { SCORES: !!scoring }), scoring ? [ml, po, out, rows, scoring.lse] : [ml, po, out], { H, D, nsplit: plan.nsplit }, [H, M]);
    }
    if (scoring) this.kvScores(st, layer, heads, scoring, scoring.lse);
  }

  /** Flash-attention tiles (kernels/attention_prefill.wgsl): `nTiles` tiles follow the M rows in `rows`. */
  private attentionTiled(st: Step, tiling: PrefillTiling, layer: number, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, out: GPUBuffer, M: number, nTiles: number, maxLen: number, scoring: Scoring | null) {
    const { cfg, cache, kc } = this;
    const H = cfg.heads, D = cfg.headDim;
    // split-K pays only where the (tile, KV head) workgroups leave the GPU short; scoring rows stay unsplit
    const { nsplit, splitLen } = scoring ? { nsplit: 1, splitLen: Math.max(maxLen, 1) } : prefillSplit(nTiles * cfg.kvHeads, maxLen, tiling.BK);
    const params = { ...this.attnParams(layer), tileBase: M, sStride: scoring?.stride ?? 0, lseBase: scoring?.lseBase ?? 0, splitLen, nsplit };
    const common: Binding[] = [qkv, rows, heads, cache.table, cache.pool.k, cache.pool.v];
    const defs = { ...tiling, SPLIT: nsplit > 1, SCORES: !!scoring };
    if (nsplit > 1) {
      const ml = this.ws.get("part-ml", M * H * nsplit * 8);
      const po = this.ws.get("part-o", M * H * nsplit * D * 4);
      st.dispatch(kc.kernel("attention_prefill", defs), [...common, ml, po], params, [cfg.kvHeads, nTiles, nsplit]);
      st.dispatch(kc.kernel("attn_merge", { SCORES: false }), [ml, po, out], { H, D, nsplit }, [H, M]);
      return;
    }
    st.dispatch(kc.kernel("attention_prefill", defs), scoring ? [...common, out, scoring.sraw] : [...common, out], params, [cfg.kvHeads, nTiles, 1]);
    if (scoring) this.kvScores(st, layer, heads, scoring, { buffer: scoring.sraw, offset: scoring.lseBase * 4, size: scoring.slots * H * 4 });
  }

  /** Tensor-core flash attention (kernels/attention_prefill_mma.wgsl): `nTiles` tiles follow the M rows in `rows`; never split. */
  private attentionMma(st: Step, t: PrefillMmaTiling, layer: number, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, out: GPUBuffer, M: number, nTiles: number, scoring: Scoring | null) {
    const { cfg, cache, kc } = this;
    const H = cfg.heads, D = cfg.headDim;
    const params = { ...this.attnParams(layer), tileBase: M, sStride: scoring?.stride ?? 0, lseBase: scoring?.lseBase ?? 0, splitLen: 0, nsplit: 1 };
    const b: Binding[] = [qkv, rows, heads, cache.table, cache.pool.k, cache.pool.v, out];
    if (scoring) b.push(scoring.sraw);
    st.dispatch(kc.kernel("attention_prefill_mma", { ...t, SCORES: !!scoring }), b, params, [cfg.kvHeads, nTiles, 1]);
    if (scoring) this.kvScores(st, layer, heads, scoring, { buffer: scoring.sraw, offset: scoring.lseBase * 4, size: scoring.slots * H * 4 });
  }

  /** The Params fields every attention kernel shares (attention, attention_prefill, attention_prefill_mma). */
  private attnParams(layer: number) {
    const { cfg, cache } = this;
    return { layer, H: cfg.heads, KVH: cfg.kvHeads, L: cfg.layers, BS: cache.blockSize, ldq: this.qkvWidth, scale: 1 / Math.sqrt(cfg.headDim) };
  }

  private kvScores(st: Step, layer: number, heads: GPUBuffer, scoring: Scoring, lse: Binding) {
    const { cfg, cache, kc } = this;
    st.dispatch(kc.kernel("kv_scores"), [scoring.sraw, lse, scoring.seqs, heads, cache.table, cache.pool.scores],
      { layer, H: cfg.heads, KVH: cfg.kvHeads, L: cfg.layers, BS: cache.blockSize, sStride: scoring.stride }, [cfg.kvHeads, scoring.nSeqs, cdiv(scoring.stride, 64)]);
  }

  destroy() {
    this.ws.destroy();
    this.invFreq.destroy();
  }
}
