// Prefill GEMM variants of kernels/gemm.wgsl: each names its defines and output tile.
// The model runs KVC_GEMM if set, else one by row count (modelGemm); `kvc bench
// kernels` times them all side by side (bench/kernels.ts).
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
