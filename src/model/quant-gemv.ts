// kernels/gemv.wgsl's piece GEMV of block-quantized rows (PIECE, kernels/quant_piece.wgsl)
// from the host: each format's piece, which rows it reads, its tile and options per
// step (quantGemvFor, KVC_QGEMV), their defines and names, and the tiles a sweep times.
import { nextPow2, type Defines } from "../gpu/kernels.ts";
import { GEMV_WG, gemvScratchBytes, gemvTileFor, gemvTileName, type GemvTile } from "./gemv.ts";
import { QUANT, rowWords, type QuantType } from "./quant.ts";

/**
 * kernels/quant_piece.wgsl's piece of each block format: QPW weights, QRUNS runs of 16
 * weights QRUN apart in x, one to four 16-byte loads. XPAD: x vec4s between padding
 * vec4s in workgroup memory (XWG), so that the 8 lanes of a quarter-warp, reading vec4
 * j of 8 consecutive pieces, meet 8 different 16-byte bank groups (Q4_K piece p reads
 * vec4 64 sb + 16 c + 4 h: padded, (c + 4 h) % 8 differs; Q6_K 64 sb + 32 n + 4 h, Q8_0
 * and Q4_0 8 p likewise). Unpadded, 4 or 8 of them share one. XQPAD: the same for
 * XQ8's runs of 16 integers (one vec4 each), XQPAD padding vec4s after every 8 (Q4_K
 * piece p reads run 16 sb + 4 c + h, Q6_K 16 sb + 8 n + h, Q8_0 and Q4_0 2 p).
 */
export const QUANT_PIECES: Record<QuantType, { QPW: number; QRUNS: number; QRUN: number; XPAD: number; XQPAD: number }> = {
  q4_k: { QPW: 32, QRUNS: 2, QRUN: 32, XPAD: 16, XQPAD: 2 },
  q6_k: { QPW: 64, QRUNS: 4, QRUN: 32, XPAD: 32, XQPAD: 2 },
  q8_0: { QPW: 32, QRUNS: 2, QRUN: 16, XPAD: 8, XQPAD: 1 },
  q4_0: { QPW: 32, QRUNS: 2, QRUN: 16, XPAD: 8, XQPAD: 1 },
};

/** The piece GEMV reads rows as whole 16-byte words: every format's rows are when K % 256 == 0. */
export const pieceFits = (quant: QuantType, K: number) => K % QUANT[quant].block === 0 && K % QUANT_PIECES[quant].QPW === 0 && rowWords(quant, K) % 4 === 0;

/**
 * A quantized GEMV: a GemvTile over pieces (kernels/quant_piece.wgsl), with x staged in
 * workgroup memory (XWG) or read from L1, and q converted by an integer conversion or
 * (MAGIC) the 2^23 exponent trick. Every choice but LANES and XQ8 leaves each output's
 * value unchanged (the same sums in the same order), as for GemvTile. XQ8 (with XWG):
 * x staged as 8-bit integers per run of 16 and met by 4-way integer dot products
 * (llama.cpp's CUDA design; activations rounded to 8 bits, as llama.cpp's do). PF:
 * each trip's pieces loaded a trip ahead, the first before x is staged (twice the
 * weight registers, twice the loads in flight).
 */
export interface PieceTile extends GemvTile {
  XWG: boolean;
  MAGIC: boolean;
  XQ8: boolean;
  PF: boolean;
}

/** A quantized GEMV's kernel: the piece GEMV, or (piece null) the 8-weight one of kernels/quant.wgsl. */
export interface QuantGemv {
  tile: GemvTile;
  piece: PieceTile | null;
}

/**
 * Lanes per row group of the piece GEMV at every M (batch invariance). A lane's trip
 * covers 32 weights (4x the f16 GEMV's 8), so fewer lanes split a row: the 1B's K = 2048
 * is 64 Q4_K pieces, 2 a lane.
 */
const PIECE_LANES = 32;

/** vec4s of workgroup memory XWG stages: BATCH activation rows of K, one padding vec4 per XPAD. */
const xwgVec4s = (t: GemvTile, quant: QuantType, K: number) => (t.BATCH * K) / 4 + Math.ceil((t.BATCH * K) / 4 / QUANT_PIECES[quant].XPAD);
/** XQ8's runs of 16 (vec4s, XQPAD padding after every 8) and their (d, sum) pairs */
const xq8Runs = (t: GemvTile, K: number) => (t.BATCH * K) / 16;
const xq8Vec4s = (t: GemvTile, quant: QuantType, K: number) => xq8Runs(t, K) + QUANT_PIECES[quant].XQPAD * Math.ceil(xq8Runs(t, K) / 8);
/** Bytes of workgroup memory a tile stages x in (0 without XWG). */
export const xwgBytes = (t: PieceTile, quant: QuantType, K: number) =>
  !t.XWG ? 0 : t.XQ8 ? 16 * xq8Vec4s(t, quant, K) + 8 * xq8Runs(t, K) : 16 * xwgVec4s(t, quant, K);

/** Partial choices read from KVC_QGEMV: "old", or "rows=2,lanes=32,ku=2,xwg=1,magic=1,xq8=1,pf=1" (any subset). */
export type PieceForce = "old" | Partial<Pick<PieceTile, "ROWS" | "LANES" | "KU" | "XWG" | "MAGIC" | "XQ8" | "PF">>;

export function parsePieceForce(env: string | undefined): PieceForce | null {
  if (env === undefined || env.trim() === "") return null;
  if (env.trim() === "old") return "old";
  const out: Exclude<PieceForce, "old"> = {};
  for (const kv of env.split(",")) {
    const [k, v] = kv.split("=").map((x) => x.trim());
    const n = Number(v);
    const key = { rows: "ROWS", lanes: "LANES", ku: "KU", xwg: "XWG", magic: "MAGIC", xq8: "XQ8", pf: "PF" }[k] as keyof typeof out | undefined;
    if (!key || !Number.isInteger(n) || n < 0) throw new Error(`KVC_QGEMV="${env}": expected "old" or rows=R,lanes=L,ku=U,xwg=0|1,magic=0|1,xq8=0|1,pf=0|1 (any of them)`);
    if (key === "XWG" || key === "MAGIC" || key === "XQ8" || key === "PF") out[key] = n !== 0;
    else out[key] = n;
  }
  if (out.LANES !== undefined && (out.LANES < 4 || (out.LANES & (out.LANES - 1)) !== 0)) throw new Error(`KVC_QGEMV: lanes=${out.LANES} is not a power of two >= 4`);
  return out;
}

/** KVC_QGEMV's choice, read once by the model (LlamaModel.quantForce), not on every dispatch. */
export function quantGemvForce(): PieceForce | null {
  return parsePieceForce((globalThis as any).process?.env?.KVC_QGEMV ?? (globalThis as any).Deno?.env?.get("KVC_QGEMV"));
}

/**
 * The quantized GEMV for M decode rows of a `quant` matrix of K columns (norm, swiglu
 * as gemvTileFor). Rows that are not whole 16-byte words, and KVC_QGEMV=old, take the
 * 8-weight kernel with the f16 GEMV's tile. First choices, not yet timed on a GPU
 * (bench/kernels.ts times them all: `--quant q4_k --gemv-tile-rows 1`): at M = 1 the
 * f16 tiles' rows (1 row and 2 pieces per trip for o and down, 2 for the normed GEMVs,
 * 4 for gate/up); batches as the f16 tiles; x in workgroup memory where it fits and a
 * workgroup has 16 weight rows or more (a group reads all of x: from workgroup memory
 * its lanes meet no bank conflict, from L1 they touch 16 lines per 512 bytes; but
 * staging reads BATCH K x 4 bytes a workgroup from L2, 0.44 of the Q4_K weights' bytes
 * at 16 rows, 0.89 at 8); q made f32 by the exponent trick (no conversion instruction:
 * NVIDIA SMs issue those at a fraction of their FMA rate).
 */
export function quantGemvFor(M: number, quant: QuantType, K: number, norm: boolean, maxStorage = 16384, subgroups = true, swiglu = false, force: PieceForce | null = null): QuantGemv {
  if (force === "old" || !pieceFits(quant, K)) return { tile: gemvTileFor(M, norm, maxStorage, subgroups, swiglu), piece: null };
  const o = { LANES: PIECE_LANES, XWG: true, MAGIC: true, XQ8: false, PF: false };
  const t: PieceTile = M === 1
    ? (norm ? { ROWS: swiglu ? 4 : 2, BATCH: 1, KU: 1, ...o } : { ROWS: 1, BATCH: 1, KU: 2, ...o })
    : M <= 4 ? { ROWS: norm ? 4 : 2, BATCH: nextPow2(M), KU: 1, ...o }
    : { ROWS: norm ? 4 : 2, BATCH: norm ? 4 : 8, KU: 1, ...o };
  t.XWG = t.ROWS * (GEMV_WG / t.LANES) >= 16;
  if (force) Object.assign(t, force);
  if (t.XQ8) t.XWG = true;
  if (swiglu && t.ROWS % 2) t.ROWS *= 2;
  while (t.BATCH > 1 && gemvScratchBytes(t, norm, subgroups) > maxStorage) t.BATCH /= 2;
  // x that does not fit stays in L1 (XQ8 needs it staged: then no XQ8 either)
  if (t.XWG && gemvScratchBytes(t, norm, subgroups) + xwgBytes(t, quant, K) > maxStorage) [t.XWG, t.XQ8] = [false, false];
  return { tile: t, piece: t };
}

/** The kernels/gemv.wgsl defines of a quantized GEMV (beside BIAS, NORM...). */
export function quantGemvDefines(q: QuantGemv, quant: QuantType, K: number): Defines {
  const p = q.piece;
  if (!p) return { ...q.tile, QUANT: quant, PIECE: false, XWG: false, QMAGIC: false, XQ8: false, QPF: false };
  return {
    ROWS: p.ROWS, BATCH: p.BATCH, LANES: p.LANES, KU: p.KU, QUANT: quant, PIECE: true, XWG: p.XWG, QMAGIC: p.MAGIC, XQ8: p.XQ8, QPF: p.PF,
    ...(p.XWG ? (p.XQ8 ? { XQS: xq8Vec4s(p, quant, K), XQR: xq8Runs(p, K) } : { XS: xwgVec4s(p, quant, K) }) : {}), ...QUANT_PIECES[quant],
  };
}

/**
 * gemvTileName, "+x" with x in workgroup memory (+q8 as 8-bit integers), "+m" with the
 * exponent trick, "+pf" loading a trip ahead; "old ..." for the 8-weight kernel.
 */
export const quantGemvName = (q: QuantGemv) =>
  q.piece
    ? gemvTileName(q.piece) + (q.piece.XQ8 ? "+x+q8" : q.piece.XWG ? "+x" : "") + (q.piece.MAGIC && !q.piece.XQ8 ? "+m" : "") + (q.piece.PF ? "+pf" : "")
    : "old " + gemvTileName(q.tile);

/**
 * Piece tiles worth timing side by side at M rows: rows 1, 2, 4 (2, 4 for SwiGLU) x lanes
 * 16, 32, 64, each with the planner's options (x in workgroup memory, the exponent
 * trick) at 1 and 2 pieces per trip; with 32 or 64 lanes also those loading a trip
 * ahead, x read from L1 (with and without the trick), and 8-bit x (plain, and 2 pieces
 * loaded ahead).
 */
export function quantGemvSweep(M: number, quant: QuantType, K: number, norm: boolean, maxStorage: number, subgroups: boolean, swiglu: boolean): QuantGemv[] {
  const out = new Map<string, QuantGemv>();
  const planned = { XWG: true, MAGIC: true, XQ8: false, PF: false };
  const base: Exclude<PieceForce, "old">[] = [{ KU: 1, ...planned }, { KU: 2, ...planned }];
  const more: Exclude<PieceForce, "old">[] = [
    { KU: 1, ...planned, PF: true }, { KU: 2, ...planned, PF: true },
    { KU: 1, XWG: false, MAGIC: false, XQ8: false, PF: false }, { KU: 1, XWG: false, MAGIC: true, XQ8: false, PF: false },
    { KU: 1, XWG: true, MAGIC: false, XQ8: true, PF: false }, { KU: 2, XWG: true, MAGIC: false, XQ8: true, PF: true },
  ];
  for (const ROWS of swiglu ? [2, 4] : [1, 2, 4]) {
    for (const LANES of [16, 32, 64]) {
      for (const f of LANES === 16 ? base : [...base, ...more]) {
        const q = quantGemvFor(M, quant, K, norm, maxStorage, subgroups, swiglu, { ROWS, LANES, ...f });
        if (q.piece && q.piece.XWG === f.XWG) out.set(quantGemvName(q), q);
      }
    }
  }
  return [...out.values()];
}
