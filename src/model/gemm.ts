// Prefill GEMM variants of kernels/gemm.wgsl: each names its defines and output tile.
// The model runs KVC_GEMM if set, else one by row count (modelGemm); `kvc bench
// kernels` times them all side by side (bench/kernels.ts).
import type { Gpu } from "../gpu/device.ts";
import { cdiv, type Defines, type Kernel, type KernelContext } from "../gpu/kernels.ts";

export interface GemmVariant {
  name: string;
  defines: Defines;
  /** output tile: rows of X (M) by rows of W (N) per workgroup */
  bm: number;
  bn: number;
  /** grid x runs over M tiles (else over N tiles) */
  mFirst: boolean;
}

const tiled = (name: string, tm8: boolean, tn8: boolean, pad: number, db = false): GemmVariant =>
  ({ name, defines: { TILED: true, TM8: tm8, TN8: tn8, PAD: pad, DB: db }, bm: tm8 ? 128 : 64, bn: tn8 ? 128 : 64, mFirst: true });

// Workgroup storage: 16 x (BM + PAD + BN + PAD) floats, twice with DB (see gemmBytes);
// all but the double-buffered t84d fit the default 16 KiB.
export const GEMM_VARIANTS: readonly GemmVariant[] = [
  { name: "base", defines: { TILED: false, TM8: false, TN8: false, PAD: 0, DB: false }, bm: 64, bn: 64, mFirst: false },
  tiled("t44", false, false, 4),
  tiled("t84", true, false, 4),
  tiled("t88", true, true, 0),
  tiled("t84d", true, false, 4, true),
];

/** Workgroup storage bytes of a variant (the adapter's limit must hold them). */
export function gemmBytes(v: GemmVariant): number {
  const pad = Number(v.defines.PAD);
  return (v.defines.DB ? 2 : 1) * 16 * (v.bm + pad + v.bn + pad) * 4;
}

/** 8x4 per thread: vec4 reads feed 32 FMAs, and 128 x 64 tiles still give 128 workgroups for an N = 2048 matrix at 512 rows. */
export const GEMM_DEFAULT = "t84";

export function gemmVariant(name: string): GemmVariant {
  const v = GEMM_VARIANTS.find((x) => x.name === name);
  if (!v) throw new Error(`unknown GEMM variant "${name}"; variants: ${GEMM_VARIANTS.map((x) => x.name).join(", ")}`);
  return v;
}

/**
 * Steps up to this many rows (decode batches past the GEMV's 32, short prefills) run
 * GEMM_SMALL: on an H200 at 32 and 64 rows its 64 x 64 tiles ran the 8B and 1B
 * matrices 1.45-1.8x faster than t84's 128-row tiles, most of which such a step leaves
 * empty; at 128 rows a whole 8B layer still ran 1.17x faster, at 256 t84 was ahead.
 */
export const GEMM_SMALL_ROWS = 128;
export const GEMM_SMALL = "t44";

/**
 * The model's choice of variant by rows: KVC_GEMM at every M if set (read, and checked,
 * once here), else GEMM_SMALL up to GEMM_SMALL_ROWS rows and GEMM_DEFAULT past them.
 */
export function modelGemm(): (M: number) => GemmVariant {
  const env = (globalThis as any).process?.env?.KVC_GEMM ?? (globalThis as any).Deno?.env?.get("KVC_GEMM");
  const forced = env ? gemmVariant(env) : null;
  const small = gemmVariant(GEMM_SMALL), large = gemmVariant(GEMM_DEFAULT);
  return (M) => forced ?? (M <= GEMM_SMALL_ROWS ? small : large);
}

/** The GEMM kernel of variant v; QUANT: the weights' block format (src/model/quant.ts), false for f16. */
export function gemmKernel(kc: KernelContext, v: GemmVariant, bias: boolean, residual: boolean, QUANT: string | false = false): Kernel {
  return kc.kernel("gemm", { ...v.defines, BIAS: bias, RESIDUAL: residual, QUANT });
}

/** Workgroups for an M x N output. */
export function gemmGrid(v: GemmVariant, M: number, N: number): [number, number] {
  const m = cdiv(M, v.bm), n = cdiv(N, v.bn);
  return v.mFirst ? [m, n] : [n, m];
}

/**
 * Tensor-core GEMM variants (kernels/gemm_mma.wgsl, adapters with f16 subgroup matrices):
 * SG_ROWS x SG_COLS subgroups a workgroup, each TM x TN results of 16 x 16; DB
 * double-buffers the workgroup tiles.
 */
export interface MmaVariant {
  name: string;
  SG_ROWS: number;
  SG_COLS: number;
  TM: number;
  TN: number;
  DB: boolean;
  /** K a step (32 unless set): 64 halves the barriers a K range takes */
  BK?: number;
}

export const MMA_VARIANTS: readonly MmaVariant[] = [
  { name: "mma128", SG_ROWS: 4, SG_COLS: 2, TM: 2, TN: 4, DB: false },
  { name: "mma128d", SG_ROWS: 4, SG_COLS: 2, TM: 2, TN: 4, DB: true },
  { name: "mma64d", SG_ROWS: 2, SG_COLS: 4, TM: 2, TN: 2, DB: true },
  { name: "mma32d", SG_ROWS: 1, SG_COLS: 4, TM: 2, TN: 2, DB: true },
  { name: "mma16d", SG_ROWS: 1, SG_COLS: 4, TM: 1, TN: 2, DB: true },
  { name: "mma128k64", SG_ROWS: 4, SG_COLS: 2, TM: 2, TN: 4, DB: false, BK: 64 },
  { name: "mma128s4", SG_ROWS: 2, SG_COLS: 2, TM: 4, TN: 4, DB: false },
  { name: "mma128x64d", SG_ROWS: 4, SG_COLS: 2, TM: 2, TN: 2, DB: true },
  // for the next sweep (not yet run on a GPU): 4 x 4 results a subgroup with 64-wide K
  // steps, and a 128 x 256 tile (each X row staged once for twice the columns)
  { name: "mma128s4k64", SG_ROWS: 2, SG_COLS: 2, TM: 4, TN: 4, DB: false, BK: 64 },
  { name: "mma256s4", SG_ROWS: 2, SG_COLS: 4, TM: 4, TN: 4, DB: false },
];

export const mmaRows = (v: MmaVariant) => v.SG_ROWS * v.TM * 16;
export const mmaCols = (v: MmaVariant) => v.SG_COLS * v.TN * 16;

export const mmaK = (v: MmaVariant) => v.BK ?? 32;

/** Workgroup storage bytes: f16 tiles of BK K (rows padded by 8), once or twice, and a 16 x 16 f32 result per subgroup. */
export function mmaBytes(v: MmaVariant): number {
  return (v.DB ? 2 : 1) * (mmaRows(v) + mmaCols(v)) * (mmaK(v) + 8) * 2 + v.SG_ROWS * v.SG_COLS * 1024;
}

export function mmaVariant(name: string): MmaVariant {
  const v = MMA_VARIANTS.find((x) => x.name === name);
  if (!v) throw new Error(`unknown tensor-core GEMM variant "${name}"; variants: ${MMA_VARIANTS.map((x) => x.name).join(", ")}`);
  return v;
}

/**
 * The variant for M rows on an adapter: the single-buffered 128 x 128 tile with 64-wide K
 * steps from 128 rows (fastest of the sweep on the 8B and 1B prefill steps), mma64d with
 * split-K below (ahead of the skinny kernel at 64 rows); up to 32 rows gemm_mma_skinny
 * serves instead (skinnyFits). Measured: bench/results/2026-12-07-NVIDIA-H100-31bc009-tensor-cores-2.md.
 * KVC_MMA forces one.
 */
export function mmaFor(M: number, maxBytes: number): MmaVariant | null {
  const fits = MMA_VARIANTS.filter((v) => mmaBytes(v) <= maxBytes);
  const order = M >= 128 ? ["mma128k64", "mma128", "mma128d"] : M > 32 ? ["mma64d", "mma128"] : M > 16 ? ["mma32d", "mma64d"] : ["mma16d", "mma32d"];
  for (const n of order) {
    const v = fits.find((x) => x.name === n);
    if (v) return v;
  }
  return null;
}

/** SPLITK: the kernel writes per-split partial tiles (bias and residual then go to gemm_splitk_sum). */
export function mmaKernel(kc: KernelContext, v: MmaVariant, subgroupSize: number, bias: boolean, residual: boolean, SPLITK = false): Kernel {
  const { SG_ROWS, SG_COLS, TM, TN, DB } = v;
  const WG = SG_ROWS * SG_COLS * subgroupSize;
  const BK = mmaK(v);
  // vec4 loads a thread makes of each K step of the X and W tiles
  const XL = (mmaRows(v) * BK) / 4 / WG, WL = (mmaCols(v) * BK) / 4 / WG;
  if (!Number.isInteger(XL) || !Number.isInteger(WL)) throw new Error(`gemm_mma ${v.name}: ${WG} threads do not divide its tiles`);
  return kc.kernel("gemm_mma", { SG_ROWS, SG_COLS, TM, TN, DB, BK, WG, XL, WL, BIAS: bias && !SPLITK, RESIDUAL: residual && !SPLITK, SPLITK });
}

/**
 * Split-K for a tensor-core matmul with few output tiles (decode batches: at 32 rows an
 * N = 2048 matrix is 16 tiles of mma32d, for 132 SMs): the K range is cut into `splits`
 * runs of kSplit (a multiple of 64, so of every variant's K step) until about `workgroups` workgroups
 * run, at most SPLITK_MAX (the partial tiles are written and read back: splits x M x N
 * floats against the N x K weights). Null where one split is enough.
 */
export const SPLITK_MAX = 8;
export const SPLITK_WORKGROUPS = 512;
export function splitK(tiles: number, K: number, workgroups: number): { splits: number; kSplit: number } | null {
  if (workgroups <= 0 || 2 * tiles >= workgroups) return null;
  const want = Math.min(SPLITK_MAX, cdiv(workgroups, tiles), Math.floor(K / 64));
  if (want < 2) return null;
  const kSplit = cdiv(cdiv(K, want), 64) * 64;
  const splits = cdiv(K, kSplit);
  return splits >= 2 ? { splits, kSplit } : null;
}

/** Output tiles of a tensor-core GEMM variant for an M x N matmul (workgroups before any split). */
export const mmaTiles = (v: MmaVariant, M: number, N: number) => cdiv(M, mmaRows(v)) * cdiv(N, mmaCols(v));

/**
 * The decode-batch kernel (kernels/gemm_mma_skinny.wgsl): up to SKINNY_MAX_ROWS rows,
 * 4 subgroups of 16 columns a workgroup streaming their weights straight into matrices.
 * It needs N and K multiples of 16. At 16 and 32 rows it beat mma32d with split-K and the
 * GEMV, at 64 rows mma64d with split-K was ahead (bench/results/2026-12-07-NVIDIA-H100-31bc009-tensor-cores-2.md).
 */
export const SKINNY_MAX_ROWS = 32;
export const skinnyFits = (M: number, N: number, K: number) => M <= SKINNY_MAX_ROWS && N >= 16 && N % 16 === 0 && K % 16 === 0;
/** gemm_mma_skinny's 16-row result matrices a subgroup holds for M rows (its row tile). */
export const skinnyTM = (M: number) => (M <= 16 ? 1 : M <= 32 ? 2 : 4);

/** gemm_mma_skinny's shape: 16-column blocks a subgroup owns (NB) and 16-wide K steps loaded ahead (KU). */
export interface SkinnyShape { NB: 1 | 2; KU: 4 | 8 }
/** 1B decode, H100 (8255ee1): KU 8 ran batch 32 at 8398 tok/s against 7593 with KU 4; NB 2 gained nothing (bench/results/2026-12-08-NVIDIA-H100-8255ee1-skinny-prefix.md). */
export const SKINNY_SHAPE: SkinnyShape = { NB: 1, KU: 8 };
/** Output columns of one gemm_mma_skinny workgroup (4 subgroups). */
export const skinnyCols = (s: SkinnyShape) => 4 * 16 * s.NB;
export function skinnyKernel(kc: KernelContext, M: number, subgroupSize: number, bias: boolean, residual: boolean, SPLITK: boolean, shape: SkinnyShape = SKINNY_SHAPE): Kernel {
  const TM = skinnyTM(M);
  return kc.kernel("gemm_mma_skinny", { TM, NB: shape.NB, KU: shape.KU, WG: 4 * subgroupSize, BIAS: bias && !SPLITK, RESIDUAL: residual && !SPLITK, SPLITK });
}

/**
 * The model's decode-batch kernel shape, or null with KVC_MMA_SKINNY=0 (gemm_mma serves
 * those rows then); KVC_SKINNY="NB,KU" (e.g. "2,8") picks another shape for a sweep.
 */
export function modelSkinny(): SkinnyShape | null {
  const env = (k: string) => (globalThis as any).process?.env?.[k] ?? (globalThis as any).Deno?.env?.get(k);
  if (env("KVC_MMA_SKINNY") === "0") return null;
  const v = env("KVC_SKINNY");
  if (v === undefined || v === "") return SKINNY_SHAPE;
  const [NB, KU] = String(v).split(",").map(Number);
  if ((NB !== 1 && NB !== 2) || (KU !== 4 && KU !== 8)) throw new Error(`KVC_SKINNY="${v}": expected "NB,KU" with NB 1 or 2 and KU 4 or 8`);
  return { NB, KU };
}

/** The model's split-K target: KVC_SPLITK_WGS workgroups if set (0: never split), else SPLITK_WORKGROUPS. */
export function splitKTarget(): number {
  const env = (globalThis as any).process?.env?.KVC_SPLITK_WGS ?? (globalThis as any).Deno?.env?.get("KVC_SPLITK_WGS");
  if (env === undefined || env === "") return SPLITK_WORKGROUPS;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0) throw new Error(`KVC_SPLITK_WGS="${env}": expected a whole number of workgroups >= 0`);
  return n;
}

export function mmaGrid(v: MmaVariant, M: number, N: number): [number, number] {
  return [cdiv(M, mmaRows(v)), cdiv(N, mmaCols(v))];
}

/**
 * Rows from which the model's matmuls run on tensor cores (KVC_MMA_MIN_ROWS changes it);
 * Infinity without f16 16x16x16 subgroup matrices. On the 1B decode sweep the skinny
 * kernel beat the GEMV from 16 rows, tied at 8 and lost at 1 (same results file).
 */
export function mmaMinRows(gpu: Gpu): number {
  const sm = gpu.features.subgroupMatrix;
  if (!sm || sm.M !== 16 || sm.N !== 16 || sm.K !== 16 || !gpu.features.subgroupMaxSize) return Infinity;
  const env = (globalThis as any).process?.env?.KVC_MMA_MIN_ROWS ?? (globalThis as any).Deno?.env?.get("KVC_MMA_MIN_ROWS");
  if (env === undefined || env === "") return MMA_MIN_ROWS;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`KVC_MMA_MIN_ROWS="${env}": expected a whole number of rows >= 1`);
  return n;
}

export const MMA_MIN_ROWS = 16;

/**
 * The model's tensor-core variant by rows (null: GEMV or f32 GEMM), with KVC_MMA and the
 * threshold read once here, not on every matmul of every step.
 */
export function modelMma(gpu: Gpu, minRows: number): (M: number) => MmaVariant | null {
  const env = (globalThis as any).process?.env?.KVC_MMA ?? (globalThis as any).Deno?.env?.get("KVC_MMA");
  const forced = env ? mmaVariant(env) : null;
  const maxBytes = gpu.limits.maxComputeWorkgroupStorageSize;
  const by = [128, 64, 32, 16].map((m) => forced ?? mmaFor(m, maxBytes));
  return (M) => (M < minRows ? null : M >= 128 ? by[0] : M > 32 ? by[1] : M > 16 ? by[2] : by[3]);
}

/** A GEMM variant's name, f32 or tensor-core, checked: the error lists both kinds. */
export function anyGemmVariant(name: string): string {
  if (MMA_VARIANTS.some((v) => v.name === name) || GEMM_VARIANTS.some((v) => v.name === name)) return name;
  throw new Error(`unknown GEMM variant "${name}"; variants: ${[...GEMM_VARIANTS, ...MMA_VARIANTS].map((x) => x.name).join(", ")}`);
}
