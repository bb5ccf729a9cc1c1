// kernels/gemv.wgsl from the host: its tiles (rows x batch rows per workgroup, lanes
// per row group, K chunks per trip), the choice of a tile per step, the workgroup
// grid, and how the fused gate_up GEMV with SwiGLU is cut into runs over the shards.
import { cdiv, nextPow2 } from "../gpu/kernels.ts";
import type { Matrix, MatrixShard } from "./weights.ts";

/**
 * Matmuls with at most this many rows use the GEMV kernel; more use the tiled GEMM. On
 * an H200 the GEMV's 16-row tiles ran the 8B layer's matrices 1.55x faster than the
 * GEMM's 64 x 64 tiles at 32 rows, and fell behind at 64 (bench/results).
 */
export const GEMV_MAX_ROWS = 32;

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

/** Threads per kernels/gemv.wgsl workgroup. */
export const GEMV_WG = 256;

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

/** The gemv Params fields a plain (or NORM-only) GEMV leaves unused: the SWIGLU run's and the norm's epsilon. */
export const GEMV_UNFUSED = { eps: 0, nW: 0, gRow: 0, uRow: 0 } as const;
