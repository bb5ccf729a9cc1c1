// Host side of the decode GEMV (kernels/gemv_batch.wgsl, gemv_reduce.wgsl) for 1..16 rows:
// the tile for M activation rows, the split-K plan, and the dispatches of one matrix.
import { cdiv, F, type Binding, type Kernel, type KernelContext, type Step } from "../gpu/kernels.ts";

/** Weight rows per gemv_batch workgroup (RG row groups x R rows per thread, for every MT). */
export const GEMV_TILE = 64;
/** Activation rows gemv_batch serves (the model runs every decode GEMV on it, see modelGemv1). */
export const GEMV_BATCH_MIN = 1;
export const GEMV_BATCH_MAX = 16;
/** About this many workgroups (of 256 threads) keep an H200's loads in flight; split-K tops up to it. */
const GEMV_WORKGROUPS = 512;
/** Each thread takes at least 4 steps of 8 weights per split (8 k-lanes per row). */
const MIN_SPLIT_K8 = 32;

/** Tile rows MT (a multiple of 4 >= M) and weight rows per thread R (R * 256 / (8 * MT / 4) = 64). */
/**
 * Whether the model runs M = 1 on kernels/gemv.wgsl (KVC_GEMV1=gemv, for timing it beside
 * gemv_batch) instead of gemv_batch. gemv.wgsl sums in another order, so a sequence then
 * decodes to other bits alone than in a batch.
 */
export function modelGemv1Legacy(): boolean {
  const env = (globalThis as any).process?.env?.KVC_GEMV1 ?? (globalThis as any).Deno?.env?.get("KVC_GEMV1");
  return env === "gemv";
}

export function gemvBatchTile(M: number): { MT: number; R: number } {
  if (M < GEMV_BATCH_MIN || M > GEMV_BATCH_MAX) throw new Error(`gemv_batch serves ${GEMV_BATCH_MIN}..${GEMV_BATCH_MAX} rows, not ${M}`);
  return M <= 4 ? { MT: 4, R: 2 } : M <= 8 ? { MT: 8, R: 4 } : { MT: 16, R: 8 };
}

/**
 * Split-K of a gemv_batch over `tiles` 64-row tiles of K / 8 = K8 steps: splits of
 * kLen8 steps (a multiple of 8) until about GEMV_WORKGROUPS workgroups run.
 */
export function gemvSplit(tiles: number, K8: number): { nsplit: number; kLen8: number } {
  const nsplit = Math.max(1, Math.min(cdiv(GEMV_WORKGROUPS, tiles), Math.floor(K8 / MIN_SPLIT_K8)));
  if (nsplit === 1) return { nsplit: 1, kLen8: K8 };
  const kLen8 = cdiv(cdiv(K8, nsplit), 8) * 8;
  return { nsplit: cdiv(K8, kLen8), kLen8 };
}

export interface GemvBatchArgs {
  /** weight rows [N, K] of this dispatch (a row shard), f16 */
  W: Binding;
  X: Binding;
  Y: Binding;
  K: number;
  /** output columns of this dispatch */
  N: number;
  M: number;
  ldy: number;
  /** first output column */
  colOff: number;
  bias?: Binding | null;
  residual?: boolean;
  /** RMSNorm gain: Y = rmsnorm(X) W^T */
  norm?: { gain: Binding; eps: number };
  /** activation row m is X[gather[m]] (with norm) */
  gather?: Binding;
  /**
   * gate rows W[gRow + n] and up rows up[uRow + n], n < nW; columns nW..N-1 get 0
   * (with norm; never split)
   */
  swiglu?: { up: Binding; nW: number; gRow: number; uRow: number };
  /** scratch for split-K partials, at least `bytes` long */
  scratch: (bytes: number) => GPUBuffer;
}

/** The kernels of one gemv_batch matrix: the main pass, and the reduction where K is split. */
export function gemvBatchKernels(kc: KernelContext, a: Pick<GemvBatchArgs, "M" | "N" | "K" | "bias" | "residual" | "norm" | "gather" | "swiglu">) {
  const tile = gemvBatchTile(a.M);
  const tiles = cdiv(a.N, a.swiglu ? GEMV_TILE / 2 : GEMV_TILE);
  const plan = a.swiglu ? { nsplit: 1, kLen8: a.K / 8 } : gemvSplit(tiles, a.K / 8);
  const split = plan.nsplit > 1;
  const flags = { NORM: !!a.norm, GATHER: !!a.gather, SWIGLU: !!a.swiglu };
  const main: Kernel = kc.kernel("gemv_batch", { ...tile, ...flags, SPLIT: split, BIAS: !split && !!a.bias, RESIDUAL: !split && !!a.residual });
  const reduce = split ? kc.kernel("gemv_reduce", { NORM: !!a.norm, BIAS: !!a.bias, RESIDUAL: !!a.residual }) : null;
  return { main, reduce, tiles, ...plan };
}

/** Records Y (+)= X W^T for 1..16 rows of X, with the fusions of `a`. */
export function gemvBatch(kc: KernelContext, st: Step, a: GemvBatchArgs) {
  if (a.K % 8 !== 0) throw new Error(`gemv_batch needs K % 8 == 0, got ${a.K}`);
  const { main, reduce, tiles, nsplit, kLen8 } = gemvBatchKernels(kc, a);
  const sw = a.swiglu;
  const params = [a.K, a.N, a.M, a.ldy, a.colOff, F(a.norm?.eps ?? 0), sw?.nW ?? 0, sw?.gRow ?? 0, sw?.uRow ?? 0, kLen8];
  const tail: Binding[] = [];
  if (a.norm) tail.push(a.norm.gain);
  if (a.gather) tail.push(a.gather);
  if (sw) tail.push(sw.up);
  if (!reduce) {
    st.dispatch(main, [a.W, a.X, a.Y, ...(a.bias ? [a.bias] : []), ...tail], params, [tiles, 1]);
    return;
  }
  const part = a.scratch(4 * nsplit * a.M * (a.N + 1));
  st.dispatch(main, [a.W, a.X, part, ...tail], params, [tiles, nsplit]);
  st.dispatch(reduce, [part, a.Y, ...(a.bias ? [a.bias] : [])], [a.N, a.M, a.ldy, a.colOff, nsplit, a.K, F(a.norm?.eps ?? 0)], [cdiv(a.N, 256), a.M]);
}
