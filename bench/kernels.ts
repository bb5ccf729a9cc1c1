// Kernel figures on a synthetic model: the decode GEMVs (qkv, o, gate_up, down,
// lm_head), paged decode attention at several contexts, the prefill GEMMs, and a
// device-to-device copy as the practical bandwidth ceiling. Each figure replays the
// dispatches a real step records (bench/profile.ts), all layers in turn, many times
// in one timed pass; bytes moved / time gives GB/s, 2 M N K / time gives TFLOP/s. The
// ceilings: a copy kernel (read + write) and a read-only kernel (what a GEMV can reach).
// Prefill attention: the tiled kernel beside attention.wgsl on the same step's inputs.
//
// Long file: one suite, each figure a short function beside the capture and replay
// helpers they all use.
import type { Engine } from "../src/engine/engine.ts";
import type { SeqCache } from "../src/cache/kv-cache.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { capture, GpuTimer, grid256, type CapturedDispatch } from "./profile.ts";
import { nextPow2 } from "../src/gpu/kernels.ts";
import { fillRandom } from "./random-weights.ts";
import { datasheetGbps, GREEDY, kvBytesFor, randomIds, round, syntheticEngine, type BenchContext } from "./common.ts";
import { configFromShape, shapeByName } from "./shapes.ts";
import { gemvGrid, gemvScratchBytes, gemvTileFor, gemvTileName, type GemvTile } from "../src/model/gemv.ts";
import { quantGemvDefines, quantGemvFor, quantGemvName, quantGemvSweep, type QuantGemv } from "../src/model/quant-gemv.ts";
import { ATTN_WORKGROUPS, decodeAttentionShape, prefillTileName, prefillTilingBytes, prefillTilings, type DecodeAttentionShape } from "../src/model/attention.ts";
import { rowWords, type QuantType } from "../src/model/quant.ts";
import { rankFigures } from "./rank.ts";
import { GEMM_DEFAULT, GEMM_VARIANTS, gemmBytes, gemmGrid, gemmKernel, gemmVariant, MMA_VARIANTS, mmaBytes, mmaGrid, mmaKernel } from "../src/model/gemm.ts";

export interface KernelSuiteOptions {
  contexts: number[];
  /** decode batch sizes for the GEMV figures */
  gemvRows: number[];
  /**
   * decode batch sizes at which every GEMV tile (src/model/gemv.ts GemvTile) is timed side
   * by side; with quantized weights every piece tile (quantGemvSweep), the 8-weight
   * kernel, and the f16 GEMV on f16 weights of the same shapes
   */
  gemvTileRows: number[];
  /** decode attention contexts at which every layout (G, WG, NK) and split target is timed side by side */
  attnSweepContexts: number[];
  /** rows of the captured prefill step (GEMM figures) */
  prefillRows: number;
  /** prompt lengths for the prefill attention figures: all rows in one step, and the last prefillRows-row chunk */
  prefillAttnLens: number[];
  /** time every prefill attention tiling (src/model/llama.ts prefillTilings) beside the model's */
  prefillAttnTiles: boolean;
  /** GEMM variants (src/model/gemm.ts; f32 and tensor-core) to time on the prefill step, side by side */
  gemmVariants: string[];
  /** sequences of one kv_rank pass (bench/rank.ts), and the keys per head at which it is timed */
  rankBatch: number;
  rankLens: number[];
  /** size of the copy-ceiling buffers, bytes (capped by the adapter's binding size) */
  copyBytes: number;
  minPassMs: number;
  passes: number;
}

export const KERNEL_DEFAULTS: KernelSuiteOptions = {
  contexts: [256, 1024, 8192, 32768],
  gemvRows: [1, 16],
  gemvTileRows: [],
  attnSweepContexts: [],
  prefillRows: 512,
  prefillAttnLens: [512, 2048, 6000],
  prefillAttnTiles: false,
  gemmVariants: [...GEMM_VARIANTS, ...MMA_VARIANTS].map((v) => v.name),
  rankBatch: 16,
  rankLens: [2048, 4096, 6000],
  copyBytes: 2 ** 30,
  minPassMs: 20,
  passes: 5,
};

/** Working sets below this may sit in the GPU's L2 between repetitions (H100/H200: 50 MB). */
const L2_RISK_BYTES = 128 * 2 ** 20;
const MATRICES = ["qkv", "o", "gate_up", "down", "lm_head"] as const;

const bufferOf = (b: CapturedDispatch["bindings"][number]): GPUBuffer => ("mapAsync" in b ? b : b.buffer);
const kernelName = (d: CapturedDispatch) => d.k.key.split(":")[0];

/** The defines a kernel was built with, from its key ("name:entry:A=1,B=true"). */
function definesOf(d: CapturedDispatch): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of d.k.key.split(":")[2].split(",")) {
    const [k, v] = kv.split("=");
    out[k] = v === "true" ? true : v === "false" ? false : /^-?\d+$/.test(v) ? Number(v) : v;
  }
  return out;
}

const defined = (d: CapturedDispatch, name: string) => definesOf(d)[name] === true;
/** The block format of a matmul dispatch's weights (QUANT), false for f16. */
const quantOf = (d: CapturedDispatch): QuantType | false => {
  const q = definesOf(d).QUANT;
  return typeof q === "string" ? (q as QuantType) : false;
};

/** What a GEMV folds in besides its matrix (kernels/gemv.wgsl NORM, SWIGLU), as a name suffix. */
const fusedSuffix = (d: CapturedDispatch) => (defined(d, "SWIGLU") ? "+swiglu" : defined(d, "NORM") ? "+norm" : "");

/**
 * Names each captured dispatch: the matrix a gemv/gemm reads (with what it fuses:
 * "qkv+norm", "gate_up+swiglu", "lm_head+norm"), attention for both attention
 * kernels, "rope+append" for rope_append, else the kernel.
 */
function classifier(e: Engine): (d: CapturedDispatch) => string {
  const byBuf = new Map<GPUBuffer, string>();
  for (const l of e.weights.layers) {
    for (const [name, m] of [["qkv", l.qkv], ["o", l.o], ["gate_up", l.gateUp], ["down", l.down]] as const) {
      for (const s of m.shards) byBuf.set(s.buffer, name);
    }
  }
  for (const s of e.weights.lmHead.shards) byBuf.set(s.buffer, "lm_head");
  return (d) => {
    const k = kernelName(d);
    if (k === "gemv" || k === "gemm" || k === "gemm_mma" || k === "gemm_mma_skinny") return (byBuf.get(bufferOf(d.bindings[0])) ?? k) + fusedSuffix(d);
    if (k === "attn_merge" || k === "attention_prefill" || k === "attention_prefill_mma") return "attention";
    if (k === "rope_append") return "rope+append";
    return k;
  };
}

/**
 * Bytes a gemv/gemm dispatch must move (weights once, activations in, outputs out) and
 * its FLOPs. A SWIGLU gemv writes N columns from nW gate and nW up rows.
 */
function matmulCost(d: CapturedDispatch): { bytes: number; flops: number } {
  const [K, N, M] = d.params;
  const rows = defined(d, "SWIGLU") ? 2 * d.params[6] : N;
  const residual = defined(d, "RESIDUAL");
  // quantized weights move their packed rows (src/model/quant.ts), f16 ones 2 bytes a weight
  const quant = quantOf(d);
  const rowBytes = quant ? rowWords(quant, K) * 4 : K * 2;
  return { bytes: rows * rowBytes + M * K * 4 + M * N * 4 * (residual ? 2 : 1), flops: 2 * M * rows * K };
}

/** The matrix a breakdown name is about ("gate_up+swiglu" -> "gate_up"), or null. */
const matrixOf = (name: string) => MATRICES.find((m) => name === m || name.startsWith(m + "+")) ?? null;

/** The variant the model itself picks for a captured GEMM dispatch's rows. */
function modelGemmName(e: Engine, d: CapturedDispatch): string {
  const M = d.params[2];
  return e.model.mmaAt(M)?.name ?? e.model.gemmFor(M).name;
}

/** A GEMM dispatch: the f32 kernel or the tensor-core one (same bindings and params). */
const isGemm = (d: CapturedDispatch) => kernelName(d) === "gemm" || kernelName(d) === "gemm_mma";

/** Why variant `name` cannot run on this adapter, or null. */
function gemmUnfit(e: Engine, name: string): string | null {
  const mma = MMA_VARIANTS.find((v) => v.name === name);
  if (mma && !e.gpu.features.subgroupMatrix) return "needs f16 subgroup matrices; the adapter has none";
  const bytes = mma ? mmaBytes(mma) : gemmBytes(gemmVariant(name));
  const have = e.gpu.limits.maxComputeWorkgroupStorageSize;
  return bytes > have ? `needs ${bytes} bytes of workgroup storage; the adapter has ${have}` : null;
}

/** A captured gemm dispatch run by another GEMM variant (f32 or tensor-core): same bindings and params, its pipeline and grid. */
function asGemmVariant(e: Engine, d: CapturedDispatch, name: string): CapturedDispatch {
  if (!isGemm(d)) return d;
  const [, N, M] = d.params;
  const bias = defined(d, "BIAS"), residual = defined(d, "RESIDUAL");
  const mma = MMA_VARIANTS.find((v) => v.name === name);
  // the tensor-core GEMM reads f16 weights only: quantized dispatches stay on the tiled GEMM
  if (mma && !quantOf(d)) return { ...d, k: mmaKernel(e.kc, mma, e.gpu.features.subgroupMaxSize, bias, residual), wg: [...mmaGrid(mma, M, N), 1] };
  const v = gemmVariant(mma ? GEMM_DEFAULT : name);
  return { ...d, k: gemmKernel(e.kc, v, bias, residual, quantOf(d)), wg: [...gemmGrid(v, M, N), 1] };
}

/**
 * A captured gemv dispatch run with another tile: same bindings and params, its
 * pipeline and grid. A gemm dispatch (a batch past the GEMV's rows) runs as a plain GEMV.
 */
function asGemvTile(e: Engine, d: CapturedDispatch, t: GemvTile): CapturedDispatch {
  const defs = isGemm(d)
    ? { WG: 256, BIAS: defined(d, "BIAS"), RESIDUAL: defined(d, "RESIDUAL"), NORM: false, GATHER: false, SWIGLU: false, QUANT: quantOf(d) }
    : definesOf(d);
  const [, cols, M] = d.params;
  return { ...d, k: e.kc.kernel("gemv", { ...defs, ROWS: t.ROWS, BATCH: t.BATCH, LANES: t.LANES, KU: t.KU }), wg: [...gemvGrid(t, M, cols, defs.SWIGLU === true), 1] };
}

/**
 * Tiles worth timing at M rows whose reduction scratch fits the workgroup storage
 * limit: the whole workgroup on one row group (LANES 256), and groups of 32 or 64
 * lanes with every batch row in one tile.
 */
function gemvTiles(e: Engine, M: number, norm: boolean, swiglu = false): GemvTile[] {
  const batch = Math.min(16, nextPow2(M));
  const cands: GemvTile[] = [];
  for (const ROWS of [2, 4, 8]) for (const BATCH of M === 1 ? [1] : [2, 4]) cands.push({ ROWS, BATCH, LANES: 256, KU: 1 });
  for (const LANES of [32, 64]) for (const ROWS of [1, 2, 4]) cands.push({ ROWS, BATCH: batch, LANES, KU: 1 });
  // the model's 64 lanes: more K chunks per trip, and smaller batch tiles past 8 rows
  for (const ROWS of [1, 2, 4]) {
    for (const KU of [2, 4]) cands.push({ ROWS, BATCH: Math.min(batch, 8), LANES: 64, KU });
    for (const BATCH of [4, 8]) if (BATCH < batch) cands.push({ ROWS, BATCH, LANES: 64, KU: 1 });
  }
  return cands.filter((t) => t.BATCH <= Math.max(M, 1) && (!swiglu || t.ROWS % 2 === 0) &&
    gemvScratchBytes(t, norm, e.gpu.features.subgroups) <= e.gpu.limits.maxComputeWorkgroupStorageSize);
}

/** A captured quantized gemv dispatch run as another quantized GEMV (piece tile or the 8-weight kernel): same bindings and params. */
function asQuantGemv(e: Engine, d: CapturedDispatch, q: QuantGemv): CapturedDispatch {
  const defs = definesOf(d);
  for (const k of ["XS", "XQS", "XQR", "QPW", "QRUNS", "QRUN", "XPAD", "XQPAD"]) delete defs[k];
  const [K, cols, M] = d.params;
  return { ...d, k: e.kc.kernel("gemv", { ...defs, ...quantGemvDefines(q, quantOf(d) as QuantType, K) }), wg: [...gemvGrid(q.tile, M, cols, defs.SWIGLU === true), 1] };
}

/**
 * The f16 twin of a list of quantized gemv dispatches: random f16 weights of each weight
 * buffer's shape (rows x K), read by the f16 GEMV with the model's f16 tile; the f16
 * bytes it must move; destroy() frees the twins.
 */
function f16Twin(e: Engine, ds: CapturedDispatch[]): { list: CapturedDispatch[]; bytes: number; destroy(): void } {
  const twins = new Map<GPUBuffer, GPUBuffer>();
  const twin = (b: CapturedDispatch["bindings"][number], quant: QuantType, K: number): GPUBuffer => {
    const q = bufferOf(b);
    let t = twins.get(q);
    if (!t) {
      const bytes = Math.ceil((q.size / (rowWords(quant, K) * 4)) * K * 2 / 16) * 16;
      t = createStorage(e.gpu.device, bytes, "f16-twin");
      fillRandom(e.kc, t, { words: bytes / 4, seed: twins.size + 1, f16: true });
      twins.set(q, t);
    }
    return t;
  };
  let bytes = 0;
  const list = ds.map((d) => {
    const defs = definesOf(d);
    const quant = quantOf(d) as QuantType;
    const [K, cols, M] = d.params;
    const swiglu = defs.SWIGLU === true;
    const t = gemvTileFor(M, defs.NORM === true, e.gpu.limits.maxComputeWorkgroupStorageSize, e.gpu.features.subgroups, swiglu);
    const bindings = d.bindings.map((b, i) => (i === 0 || (swiglu && i === 4) ? twin(b, quant, K) : b));
    const c = matmulCost(d);
    bytes += c.bytes - (swiglu ? 2 * d.params[6] : cols) * rowWords(quant, K) * 4 + (swiglu ? 2 * d.params[6] : cols) * K * 2;
    return { ...d, bindings, k: e.kc.kernel("gemv", { ...defs, ...t, QUANT: false, PIECE: false, XWG: false, QMAGIC: false, XQ8: false, QPF: false }), wg: [...gemvGrid(t, M, cols, swiglu), 1] as [number, number, number] };
  });
  return { list, bytes, destroy: () => twins.forEach((t) => t.destroy()) };
}

/** Decode attention layouts and split targets to time side by side (the model's first). */
function attentionVariants(e: Engine): { shape: DecodeAttentionShape; target: number }[] {
  const GQ = e.cfg.heads / e.cfg.kvHeads;
  const maxBytes = e.gpu.limits.maxComputeWorkgroupStorageSize;
  const out = [{ shape: e.model.decodeAttention, target: ATTN_WORKGROUPS }];
  for (let G = 1; G <= Math.min(GQ, 8); G++) {
    if (GQ % G) continue;
    for (const WG of [64, 128, 256]) {
      for (const NK of [1, 2, 4]) {
        let shape: DecodeAttentionShape;
        try {
          shape = decodeAttentionShape(GQ, e.cfg.headDim, maxBytes, { G, WG, NK });
        } catch {
          continue; // does not fit
        }
        for (const target of [512, 2048]) out.push({ shape, target });
      }
    }
  }
  return out;
}

function groupBy(list: CapturedDispatch[], cls: (d: CapturedDispatch) => string): Map<string, CapturedDispatch[]> {
  const out = new Map<string, CapturedDispatch[]>();
  for (const d of list) {
    const c = cls(d);
    if (!out.has(c)) out.set(c, []);
    out.get(c)!.push(d);
  }
  return out;
}

/** Weight bytes one decode step reads: every layer's matrices and lm_head (the embedding only by rows). */
function decodeWeightBytes(e: Engine): number {
  const bytes = (m: { N: number; K: number }) => m.N * m.K * 2;
  return e.weights.layers.reduce((a, l) => a + bytes(l.qkv) + bytes(l.o) + bytes(l.gateUp) + bytes(l.down), 0) + bytes(e.weights.lmHead);
}

/** Opens a sequence whose every head already holds `ctx` tokens (random K/V from the pool fill). */
function openAt(e: Engine, ctx: number): SeqCache | null {
  const s = e.cache.open();
  if (!s) return null;
  if (!e.cache.reserve(s, ctx + 1)) {
    e.cache.release(s);
    return null;
  }
  e.cache.commit(s, ctx);
  return s;
}

/** The dispatches of one decode step of these sequences (each at its context), captured, not run. */
function captureDecode(e: Engine, seqs: SeqCache[], ctx: number, seed: number): CapturedDispatch[] {
  const ids = randomIds(seqs.length, seed, e.cfg.vocab);
  e.model.reserveHistory(seqs.length);
  return capture(e.kc, () => {
    e.model.step({
      seqs: seqs.map((seq, b) => ({ seq, tokens: [ids[b]], n: 1, pos0: ctx, sampling: GREEDY, counter: 0 })),
      tokensFromGpu: false,
      histOffset: 0,
    });
  });
}

/** M sequences of 32 cached tokens and one decode step of all of them, captured. */
function captureShortDecode(e: Engine, M: number, seed: number): { seqs: SeqCache[]; list: CapturedDispatch[] } {
  const seqs: SeqCache[] = [];
  for (let b = 0; b < M; b++) {
    const s = openAt(e, 32);
    if (s) seqs.push(s);
  }
  if (seqs.length < M) throw new Error(`kv pool holds fewer than ${M} short sequences`);
  return { seqs, list: captureDecode(e, seqs, 32, seed) };
}

export async function kernelSuite(ctx: BenchContext, shapeName: string, o: KernelSuiteOptions) {
  const { rep } = ctx;
  const shape = shapeByName(shapeName);
  const cfg0 = configFromShape(shape, 1);
  const maxCtx = Math.max(...o.contexts, ...o.attnSweepContexts, ...o.prefillAttnLens);
  const maxRows = Math.max(...o.gemvRows, ...o.gemvTileRows);
  const kvMemory = Math.max(kvBytesFor(cfg0, 1, maxCtx + 1), kvBytesFor(cfg0, maxRows, 48));
  const e = await syntheticEngine(ctx, shape, { maxContext: maxCtx + 64, kvMemory, maxSeqs: Math.max(16, maxRows) });
  const timer = new GpuTimer(e.kc);
  const dev = e.gpu.device;
  const sheet = datasheetGbps(rep.gpu) ?? datasheetGbps(e.gpu.adapterName);
  const topt = { minPassMs: o.minPassMs, passes: o.passes };
  const cls = classifier(e);
  const gemmNames = (names: string[]) => names.filter((n) => !gemmUnfit(e, n));
  const common = { suite: "kernels", shape: shape.name, timing: timer.source, hbm_datasheet_gbps: sheet, ...(ctx.quant ? { quant: ctx.quant } : {}) };
  let ceiling: number | null = null;
  let readCeiling: number | null = null;
  const pct = (gbps: number) => ({
    pct_datasheet: sheet ? round((100 * gbps) / sheet, 1) : null,
    pct_copy: ceiling ? round((100 * gbps) / ceiling, 1) : null,
    pct_read: readCeiling ? round((100 * gbps) / readCeiling, 1) : null,
  });
  const done = () => rep.emit({ ...common, test: "timer", timing: timer.source, resolution_ns: timer.resolutionNs, min_pass_ms: o.minPassMs, passes: o.passes });
  try {
    // random K/V everywhere, so attention reads real-looking data (never zeros)
    const pool = e.cache.pool;
    for (const [i, b] of [pool.k, pool.v].entries()) fillRandom(e.kc, b, { words: b.size / 4, seed: ctx.seed * 7 + i, f16: true });

    // --- the practical ceiling: a copy kernel, and copyBufferToBuffer (wall clock) ---
    const L = e.gpu.limits;
    const copyBytes = Math.floor(Math.min(o.copyBytes, L.maxStorageBufferBindingSize, L.maxBufferSize) / 16) * 16;
    const src = createStorage(dev, copyBytes, "copy-src");
    const dst = createStorage(dev, copyBytes, "copy-dst");
    fillRandom(e.kc, src, { words: copyBytes / 4, seed: ctx.seed, f16: true });
    const n16 = copyBytes / 16;
    const copyK: CapturedDispatch = { k: e.kc.kernel("copy"), bindings: [src, dst], params: [n16], wg: grid256(n16, L.maxComputeWorkgroupsPerDimension) };
    const tk = await timer.time([copyK], topt);
    ceiling = (2 * copyBytes) / (tk.ms * 1e6);
    rep.emit({ ...common, test: "copy_kernel", bytes: 2 * copyBytes, ms: round(tk.ms, 4), gbps: round(ceiling, 1), ...pct(ceiling), reps: tk.reps });
    // reading alone: what a GEMV, which writes almost nothing, can hope for
    const sums = createStorage(dev, 65535 * 4, "read-sums");
    const readK: CapturedDispatch = { k: e.kc.kernel("read_bw"), bindings: [src, sums], params: [n16], wg: [Math.min(65535, Math.max(1, Math.ceil(n16 / 2048))), 1, 1] };
    const tr = await timer.time([readK], topt);
    readCeiling = copyBytes / (tr.ms * 1e6);
    rep.emit({ ...common, test: "read_kernel", bytes: copyBytes, ms: round(tr.ms, 4), gbps: round(readCeiling, 1), ...pct(readCeiling), reps: tr.reps });
    sums.destroy();
    const tb = await timer.timeBufferCopy(src, dst, copyBytes, 4, Math.min(o.passes, 3), o.minPassMs * 2);
    const gb = (2 * copyBytes) / (tb.ms * 1e6);
    rep.emit({ ...common, test: "copy_buffer", timing: "wall", bytes: 2 * copyBytes, ms: round(tb.ms, 4), gbps: round(gb, 1), ...pct(gb), reps: tb.reps });
    src.destroy();
    dst.destroy();

    // --- decode GEMVs (and the whole decode step) at each batch size ---
    for (const M of o.gemvRows) {
      if (!ctx.deadline.fits(5000)) break;
      const { seqs, list } = captureShortDecode(e, M, ctx.seed + M);
      const groups = groupBy(list, cls);
      const step = await timer.time(list, topt);
      const breakdown: Record<string, number> = {};
      for (const [name, ds] of groups) {
        const t = await timer.time(ds, topt);
        breakdown[name] = round(t.ms, 4)!;
        const matrix = matrixOf(name);
        if (!matrix) continue;
        const cost = ds.map(matmulCost).reduce((a, c) => ({ bytes: a.bytes + c.bytes, flops: a.flops + c.flops }), { bytes: 0, flops: 0 });
        const gbps = cost.bytes / (t.ms * 1e6);
        const [K, N] = ds[0].params;
        const rowsN = matrix === "lm_head" ? e.cfg.vocab : matrix === "gate_up" ? 2 * e.cfg.ffn : N;
        rep.emit({
          ...common, test: "gemv", name: matrix, fused: name.slice(matrix.length + 1) || null, M, N: rowsN, K, dispatches: ds.length,
          bytes: cost.bytes, ms: round(t.ms, 4), gbps: round(gbps, 1), ...pct(gbps), reps: t.reps,
          l2_resident_risk: cost.bytes < L2_RISK_BYTES,
        });
      }
      const weightBytes = decodeWeightBytes(e);
      rep.emit({
        ...common, test: "decode_step", M, dispatches: list.length, ms: round(step.ms, 4),
        tok_s: round((1000 * M) / step.ms, 1), weight_gbps: round(weightBytes / (step.ms * 1e6), 1), breakdown_ms: breakdown,
      });
      for (const s of seqs) e.cache.release(s);
    }

    // --- every GEMV tile side by side on the same captured dispatches ---
    for (const M of o.gemvTileRows) {
      if (!ctx.deadline.fits(20000)) break;
      const { seqs, list } = captureShortDecode(e, M, ctx.seed + M);
      const popt = { ...topt, passes: Math.min(3, o.passes) };
      // batches past the GEMV's rows run the prefill GEMM: its variants instead
      for (const [name, ds] of groupBy(list.filter(isGemm), cls)) {
        const cost = ds.map(matmulCost).reduce((a, c) => ({ bytes: a.bytes + c.bytes, flops: a.flops + c.flops }), { bytes: 0, flops: 0 });
        for (const v of gemmNames(KERNEL_DEFAULTS.gemmVariants)) {
          const r = await timer.time(ds.map((d) => asGemmVariant(e, d, v)), popt);
          rep.emit({
            ...common, test: "gemv_tile", name, M, tile: v, model_tile: v === modelGemmName(e, ds[0]),
            ms: round(r.ms, 4), gbps: round(cost.bytes / (r.ms * 1e6), 1), tflops: round(cost.flops / (r.ms * 1e9), 2), reps: r.reps,
          });
        }
        // and the GEMV's row-group tiles on the same matrices, 16 batch rows per tile
        for (const t of gemvTiles(e, M, false).filter((t) => t.LANES !== 256)) {
          const r = await timer.time(ds.map((d) => asGemvTile(e, d, t)), popt);
          rep.emit({
            ...common, test: "gemv_tile", name, M, tile: gemvTileName(t), ROWS: t.ROWS, BATCH: t.BATCH, LANES: t.LANES, KU: t.KU, model_tile: false,
            ms: round(r.ms, 4), gbps: round(cost.bytes / (r.ms * 1e6), 1), tflops: round(cost.flops / (r.ms * 1e9), 2), reps: r.reps,
          });
        }
      }
      for (const [name, ds] of groupBy(list.filter((d) => kernelName(d) === "gemv"), cls)) {
        const matrix = matrixOf(name)!;
        const cost = ds.map(matmulCost).reduce((a, c) => a + c.bytes, 0);
        const quant = quantOf(ds[0]);
        if (quant) {
          // quantized: the piece tiles, the 8-weight kernel (GB/s of packed bytes), then f16 weights
          const [K] = ds[0].params;
          const norm = defined(ds[0], "NORM"), swiglu = defined(ds[0], "SWIGLU");
          const [maxStorage, subgroups] = [e.gpu.limits.maxComputeWorkgroupStorageSize, e.gpu.features.subgroups];
          const mine = quantGemvName(quantGemvFor(M, quant, K, norm, maxStorage, subgroups, swiglu, e.model.quantForce));
          const old = quantGemvFor(M, quant, K, norm, maxStorage, subgroups, swiglu, "old");
          for (const q of [old, ...quantGemvSweep(M, quant, K, norm, maxStorage, subgroups, swiglu)]) {
            if (!ctx.deadline.fits(3000)) break;
            const r = await timer.time(ds.map((d) => asQuantGemv(e, d, q)), popt);
            const gbps = cost / (r.ms * 1e6);
            const p = q.piece;
            rep.emit({
              ...common, test: "gemv_tile", name: matrix, M, tile: quantGemvName(q), ROWS: q.tile.ROWS, BATCH: q.tile.BATCH, LANES: q.tile.LANES, KU: q.tile.KU,
              piece: !!p, XWG: p?.XWG ?? false, MAGIC: p?.MAGIC ?? false, model_tile: quantGemvName(q) === mine,
              ms: round(r.ms, 4), gbps: round(gbps, 1), ...pct(gbps), reps: r.reps,
            });
          }
          const tw = f16Twin(e, ds);
          try {
            const r = await timer.time(tw.list, popt);
            const gbps = tw.bytes / (r.ms * 1e6);
            rep.emit({ ...common, quant: null, test: "gemv_tile", name: matrix, M, tile: "f16 " + gemvTileName(gemvTileFor(M, norm, maxStorage, subgroups, swiglu)), model_tile: false, ms: round(r.ms, 4), gbps: round(gbps, 1), ...pct(gbps), reps: r.reps });
          } finally {
            tw.destroy();
          }
          continue;
        }
        const mine = gemvTileFor(M, defined(ds[0], "NORM"), e.gpu.limits.maxComputeWorkgroupStorageSize, e.gpu.features.subgroups, defined(ds[0], "SWIGLU"));
        for (const t of gemvTiles(e, M, defined(ds[0], "NORM"), defined(ds[0], "SWIGLU"))) {
          const r = await timer.time(ds.map((d) => asGemvTile(e, d, t)), popt);
          const gbps = cost / (r.ms * 1e6);
          rep.emit({
            ...common, test: "gemv_tile", name: matrix, M, tile: gemvTileName(t), ROWS: t.ROWS, BATCH: t.BATCH, LANES: t.LANES, KU: t.KU, model_tile: gemvTileName(t) === gemvTileName(mine),
            ms: round(r.ms, 4), gbps: round(gbps, 1), ...pct(gbps), reps: r.reps,
          });
        }
      }
      for (const s of seqs) e.cache.release(s);
    }

    // --- paged decode attention, one sequence per replay, rotating sequences past L2 ---
    const heads = e.cache.heads;
    const perTokenKV = heads * e.cfg.headDim * 2 * 2; // K + V bytes per token, all layers
    const shape0 = e.model.decodeAttention;
    const variants = attentionVariants(e);
    for (const want of [...new Set([...o.contexts, ...o.attnSweepContexts])].sort((a, b) => a - b)) {
      if (!ctx.deadline.fits(5000)) break;
      const blocksFor = (c: number) => heads * Math.ceil((c + 1) / e.cache.blockSize);
      let c = want;
      while (c > 16 && blocksFor(c) > pool.numBlocks) c -= e.cache.blockSize;
      const R = Math.max(1, Math.min(16, Math.ceil((256 * 2 ** 20) / (perTokenKV * (c + 1))), Math.floor(pool.numBlocks / blocksFor(c))));
      const seqs: SeqCache[] = [];
      for (let r = 0; r < R; r++) {
        const s = openAt(e, c);
        if (s) seqs.push(s);
      }
      if (!seqs.length) {
        rep.emit({ ...common, test: "attention", context: want, skipped: "the KV pool cannot hold one sequence at this context" });
        continue;
      }
      // each captured step writes the shared per-step head table; keep a copy per sequence
      const copies: GPUBuffer[] = [];
      const captureAttention = () => {
        const lists: CapturedDispatch[] = [];
        for (const [r, s] of seqs.entries()) {
          const list = captureDecode(e, [s], c, ctx.seed + r);
          const headsBuf = e.model.ws.get("heads", 0);
          const mine = createStorage(dev, headsBuf.size, `heads-${r}`);
          const enc = dev.createCommandEncoder();
          enc.copyBufferToBuffer(headsBuf, 0, mine, 0, headsBuf.size);
          dev.queue.submit([enc.finish()]);
          copies.push(mine);
          for (const d of list) {
            if (cls(d) !== "attention") continue;
            lists.push({ ...d, bindings: d.bindings.map((b) => (bufferOf(b) === headsBuf ? mine : b)) });
          }
        }
        return lists;
      };
      const perRep = seqs.length;
      // K and V of every cached token once, plus the queries in and the outputs out (f32)
      const bytes = perRep * (perTokenKV * (c + 1) + e.cfg.layers * e.cfg.heads * e.cfg.headDim * 4 * 2);
      const splitsOf = (lists: CapturedDispatch[]) => Math.max(...lists.filter((d) => kernelName(d) === "attention").map((d) => d.wg[2]));
      if (o.contexts.includes(want)) {
        const lists = captureAttention();
        const t = await timer.time(lists, topt);
        const gbps = bytes / (t.ms * 1e6);
        rep.emit({
          ...common, test: "attention", context: c, context_nominal: want, sequences_rotated: perRep,
          dispatches: lists.length / perRep, split: lists.some((d) => kernelName(d) === "attn_merge"), splits: splitsOf(lists),
          bytes_per_seq: bytes / perRep, ms_per_seq: round(t.ms / perRep, 4), gbps: round(gbps, 1), ...pct(gbps), reps: t.reps,
          l2_resident_risk: bytes < L2_RISK_BYTES,
        });
      }
      if (o.attnSweepContexts.includes(want)) {
        const popt = { ...topt, passes: Math.min(3, o.passes) };
        for (const v of variants) {
          if (!ctx.deadline.fits(8000)) break;
          e.model.decodeAttention = v.shape;
          e.model.attnWorkgroups = v.target;
          try {
            const lists = captureAttention();
            const t = await timer.time(lists, popt);
            rep.emit({
              ...common, test: "attention_variant", context: c, G: v.shape.G, WG: v.shape.WG, NK: v.shape.NK, BK: v.shape.BK, target_workgroups: v.target,
              model_variant: v.shape === shape0 && v.target === ATTN_WORKGROUPS, splits: splitsOf(lists), ms_per_seq: round(t.ms / perRep, 4), gbps: round(bytes / (t.ms * 1e6), 1),
            });
          } finally {
            e.model.decodeAttention = shape0;
            e.model.attnWorkgroups = ATTN_WORKGROUPS;
          }
        }
      }
      for (const s of seqs) e.cache.release(s);
      for (const b of copies) b.destroy();
    }

    // --- prefill GEMMs (one chunk of prefillRows tokens) ---
    if (ctx.deadline.fits(10000)) {
      const P = o.prefillRows;
      const s = e.cache.open()!;
      if (!e.cache.reserve(s, P)) throw new Error("kv pool cannot hold the prefill chunk");
      e.model.reserveHistory(1);
      const list = capture(e.kc, () => {
        e.model.step({ seqs: [{ seq: s, tokens: randomIds(P, ctx.seed, e.cfg.vocab), n: P, pos0: 0, sampling: GREEDY, counter: 0 }], tokensFromGpu: false, histOffset: 0 });
      });
      // each variant replays the same step; only its gemm dispatches differ, so the
      // other kernels are timed once, under the first variant
      const popt = { ...topt, passes: Math.min(3, o.passes) };
      const others: Record<string, number> = {};
      for (const v of o.gemmVariants.filter((n) => gemmUnfit(e, n))) {
        rep.emit({ ...common, test: "gemm", variant: v, skipped: gemmUnfit(e, v) });
      }
      for (const [vi, v] of gemmNames(o.gemmVariants).entries()) {
        const vlist = list.map((d) => asGemmVariant(e, d, v));
        const step = await timer.time(vlist, popt);
        const breakdown: Record<string, number> = {};
        for (const [name, ds] of groupBy(vlist, cls)) {
          const gemm = ds.every(isGemm);
          if (!gemm && vi > 0) {
            breakdown[name] = others[name];
            continue;
          }
          const t = await timer.time(ds, popt);
          breakdown[name] = round(t.ms, 4)!;
          if (!gemm) {
            others[name] = breakdown[name];
            continue;
          }
          const flops = ds.map(matmulCost).reduce((a, c) => a + c.flops, 0);
          const [K, N] = ds[0].params;
          rep.emit({ ...common, test: "gemm", variant: v, model_variant: v === modelGemmName(e, ds[0]), name, M: P, N, K, dispatches: ds.length, ms: round(t.ms, 4), tflops: round(flops / (t.ms * 1e9), 2), reps: t.reps });
        }
        rep.emit({ ...common, test: "prefill_step", gemm_variant: v, M: P, dispatches: vlist.length, ms: round(step.ms, 3), tok_s: round((1000 * P) / step.ms, 1), breakdown_ms: breakdown });
      }
      e.cache.release(s);
    }
    // --- prefill attention: the tiled kernel and attention.wgsl over the same step, after
    // the figures above (attention.wgsl at 6000 rows takes seconds per repetition) ---
    // (one sequence: every row of a prompt in one step, then its last prefillRows-row chunk
    // on top of the rest, as the engine prefills it). FLOPs: QK^T and PV, 2 * 2 * D per
    // (query head, key seen), causal: row i of the step sees before + i + 1 keys.
    for (const len of o.prefillAttnLens) {
      const cases = [{ before: 0, rows: len }];
      if (len > o.prefillRows) cases.push({ before: len - o.prefillRows, rows: o.prefillRows });
      for (const { before, rows } of cases) {
        if (!ctx.deadline.fits(20000)) break;
        const s = before ? openAt(e, before) : e.cache.open();
        if (!s || !e.cache.reserve(s, rows)) {
          if (s) e.cache.release(s);
          rep.emit({ ...common, test: "prefill_attention", rows, context_before: before, skipped: "the KV pool cannot hold the sequence" });
          continue;
        }
        e.model.reserveHistory(1);
        const ids = randomIds(rows, ctx.seed + before, e.cfg.vocab);
        // the step commits its rows: roll them back so the second capture sees the same cache
        // (same table slot and lengths; both lists then read the same blocks)
        const attnOf = (minRows: number, tiling = e.model.prefillTiling, mma = e.model.prefillMma) => {
          const keep = e.model.prefillAttentionMinRows, keepTiling = e.model.prefillTiling, keepMma = e.model.prefillMma;
          e.model.prefillAttentionMinRows = minRows;
          e.model.prefillTiling = tiling;
          e.model.prefillMma = mma;
          try {
            const list = capture(e.kc, () => {
              e.model.step({ seqs: [{ seq: s, tokens: ids, n: rows, pos0: before, sampling: GREEDY, counter: 0 }], tokensFromGpu: false, histOffset: 0 });
            });
            e.cache.rollback(s, rows);
            if (!e.cache.reserve(s, rows)) throw new Error("kv pool lost the prefill rows");
            return list.filter((d) => cls(d) === "attention");
          } finally {
            e.model.prefillAttentionMinRows = keep;
            e.model.prefillTiling = keepTiling;
            e.model.prefillMma = keepMma;
          }
        };
        // each capture is timed before the next: a capture may regrow the step's rows table
        // (rows, then tiles of the kernel's size), destroying the buffer an earlier list holds
        const popt = { ...topt, passes: Math.min(3, o.passes) };
        const tiled = attnOf(e.model.prefillAttentionMinRows, e.model.prefillTiling, null);
        const tt = tiled.some((d) => kernelName(d) === "attention_prefill") ? await timer.time(tiled, popt) : null;
        // the tensor-core kernel where the model has one (KVC_MMA_ATTN=1)
        const mma = e.model.prefillMma ? attnOf(e.model.prefillAttentionMinRows) : null;
        const tm = mma ? await timer.time(mma, popt) : null;
        const paged = attnOf(Infinity, e.model.prefillTiling, null);
        const tp = await timer.time(paged, popt);
        const sumKeys = rows * before + (rows * (rows + 1)) / 2;
        const flops = 4 * e.cfg.heads * e.cfg.headDim * e.cfg.layers * sumKeys;
        const rec = (kernel: string, t: { ms: number; reps: number }, list: CapturedDispatch[]) => rep.emit({
          ...common, test: "prefill_attention", kernel, rows, context_before: before, keys_seen: sumKeys, dispatches: list.length,
          ms: round(t.ms, 4), tflops: round(flops / (t.ms * 1e9), 2), reps: t.reps,
          ...(kernel === "attention_prefill" ? { speedup: round(tp.ms / t.ms, 2) } : {}),
        });
        rec("attention", tp, paged);
        if (mma && tm) {
          rep.emit({
            ...common, test: "prefill_attention", kernel: "attention_prefill_mma", rows, context_before: before, keys_seen: sumKeys, dispatches: mma.length,
            ms: round(tm.ms, 4), tflops: round(flops / (tm.ms * 1e9), 2), reps: tm.reps, speedup: round(tp.ms / tm.ms, 2),
            ...(tt ? { speedup_tiled: round(tt.ms / tm.ms, 2) } : {}),
          });
        }
        if (tt) rec("attention_prefill", tt, tiled);
        else rep.emit({ ...common, test: "prefill_attention", kernel: "attention_prefill", rows, context_before: before, skipped: "no tile shape for this head dim and group" });
        // every tiling of 64+ threads that fits the adapter, on the same step, each captured and timed in turn
        // (a capture rewrites the step's rows table)
        if (o.prefillAttnTiles && tt) {
          const mine = e.model.prefillTiling!;
          for (const t of prefillTilings(mine.G, mine.D, e.gpu.limits.maxComputeWorkgroupStorageSize).filter((t) => t.WG >= 64)) {
            if (!ctx.deadline.fits(5000)) break;
            const list = attnOf(e.model.prefillAttentionMinRows, t);
            const tm = await timer.time(list, popt);
            rep.emit({
              ...common, test: "prefill_attention_tile", tile: prefillTileName(t), model_tile: prefillTileName(mine), rows, context_before: before,
              ms: round(tm.ms, 4), tflops: round(flops / (tm.ms * 1e9), 2), speedup: round(tt.ms / tm.ms, 2), bytes: prefillTilingBytes(t), reps: tm.reps,
            });
          }
        }
        e.cache.release(s);
      }
    }

    // --- kv_rank, each path side by side ---
    await rankFigures(ctx, e, timer, topt, common, o.rankBatch, o.rankLens);

    done();
  } finally {
    timer.destroy();
    e.destroy();
  }
}
