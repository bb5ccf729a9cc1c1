// Block-quantized weight formats of GGUF (ggml's Q8_0, Q4_0, Q4_K, Q6_K): their
// sizes, CPU dequantization and quantization (the references of kernels/quant.wgsl and
// the fixture builder), and the row layout the GPU reads.
//
// GGUF layouts (ggml-common.h), little-endian, per block:
//   Q8_0 (32 weights, 34 B): d f16, qs[32] i8            x = d q
//   Q4_0 (32 weights, 18 B): d f16, qs[16] u8            x[j] = d ((qs[j] & 15) - 8), x[j+16] = d ((qs[j] >> 4) - 8)
//   Q4_K (256, 144 B): d f16, dmin f16, scales[12] (8 six-bit scales and mins), qs[128]:
//     sub-block s (32 weights) = d sc_s q - dmin m_s, q the low (s even) or high nibbles of qs[32 (s >> 1) ..]
//   Q6_K (256, 210 B): ql[128], qh[64], scales[16] i8, d f16: six-bit q - 32 per weight,
//     one i8 scale per 16 weights
//
// On the GPU a matrix row is u32 words: the row's blocks with their f16 `d` moved out
// (Q8_0: 8 words of qs, Q4_0: 4, Q6_K: 52 of ql|qh|scales; Q4_K stays whole, 36 words),
// then the row's `d` values as f16 pairs. Every load is a whole aligned word, and the
// weights cross the bus in their packed size (+ at most 2 bytes a row).
import { f16BitsToF32, f32ToF16Bits } from "./f16.ts";

export type QuantType = "q8_0" | "q4_0" | "q4_k" | "q6_k";
export const QUANT_TYPES: readonly QuantType[] = ["q8_0", "q4_0", "q4_k", "q6_k"];

export interface QuantFormat {
  /** ggml's type id in GGUF tensor infos */
  ggml: number;
  /** weights per block */
  block: number;
  /** bytes per block in GGUF */
  bytes: number;
  /** u32 words per block on the GPU without its f16 d (which moves to the row's tail) */
  bodyWords: number;
  /** d moves out of the block (false: the block stays whole) */
  dTail: boolean;
}

export const QUANT: Record<QuantType, QuantFormat> = {
  q8_0: { ggml: 8, block: 32, bytes: 34, bodyWords: 8, dTail: true },
  q4_0: { ggml: 2, block: 32, bytes: 18, bodyWords: 4, dTail: true },
  q4_k: { ggml: 12, block: 256, bytes: 144, bodyWords: 36, dTail: false },
  q6_k: { ggml: 14, block: 256, bytes: 210, bodyWords: 52, dTail: true },
};

/** u32 words of one GPU row of K weights. */
export function rowWords(t: QuantType, K: number): number {
  const f = QUANT[t];
  const nb = K / f.block;
  return nb * f.bodyWords + (f.dTail ? Math.ceil(nb / 2) : 0);
}

/** GGUF bytes of one row of K weights. */
export const rowBytes = (t: QuantType, K: number) => (K / QUANT[t].block) * QUANT[t].bytes;

/** GGUF blocks of `rows` rows -> the GPU layout (see the top of this file). */
export function toGpuRows(t: QuantType, src: Uint8Array, rows: number, K: number): Uint32Array<ArrayBuffer> {
  const f = QUANT[t];
  const nb = K / f.block;
  const rw = rowWords(t, K);
  const out = new Uint32Array(rows * rw);
  const o8 = new Uint8Array(out.buffer);
  // Q4_K blocks are whole words already: the rows are the file's bytes
  if (!f.dTail) {
    o8.set(src.subarray(0, out.byteLength));
    return out;
  }
  const o16 = new Uint16Array(out.buffer);
  const bodyBytes = f.bodyWords * 4;
  // d first (Q8_0, Q4_0) or last (Q6_K); byte loops, no views per block (8B models hold ~10^8 blocks)
  const dFirst = t !== "q6_k";
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const s = (r * nb + b) * f.bytes;
      const o = (r * rw + b * f.bodyWords) * 4;
      const from = dFirst ? s + 2 : s;
      for (let i = 0; i < bodyBytes; i++) o8[o + i] = src[from + i];
      const dAt = dFirst ? s : s + bodyBytes;
      o16[(r * rw + nb * f.bodyWords) * 2 + b] = src[dAt] | (src[dAt + 1] << 8);
    }
  }
  return out;
}

const f16 = (b: Uint8Array, i: number) => f16BitsToF32(b[i] | (b[i + 1] << 8));

/** Q4_K's 6-bit scale and min of sub-block j (ggml get_scale_min_k4). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 15) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** GGUF blocks -> f32 weights (ggml's dequantize_row_*), `n` weights. */
export function dequantize(t: QuantType, src: Uint8Array, n: number): Float32Array {
  const f = QUANT[t];
  const y = new Float32Array(n);
  for (let b = 0; b < n / f.block; b++) {
    const s = b * f.bytes;
    const y0 = b * f.block;
    if (t === "q8_0") {
      const d = f16(src, s);
      for (let j = 0; j < 32; j++) y[y0 + j] = d * ((src[s + 2 + j] << 24) >> 24);
    } else if (t === "q4_0") {
      const d = f16(src, s);
      for (let j = 0; j < 16; j++) {
        y[y0 + j] = d * ((src[s + 2 + j] & 15) - 8);
        y[y0 + j + 16] = d * ((src[s + 2 + j] >> 4) - 8);
      }
    } else if (t === "q4_k") {
      const d = f16(src, s), dmin = f16(src, s + 2);
      for (let sb = 0; sb < 8; sb++) {
        const [sc, m] = scaleMinK4(sb, src, s + 4);
        const q = s + 16 + 32 * (sb >> 1);
        for (let l = 0; l < 32; l++) y[y0 + 32 * sb + l] = d * sc * ((sb & 1 ? src[q + l] >> 4 : src[q + l] & 15)) - dmin * m;
      }
    } else {
      const d = f16(src, s + 208);
      for (let half = 0; half < 2; half++) {
        const ql = s + 64 * half, qh = s + 128 + 32 * half, sc = s + 192 + 8 * half;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const q1 = ((src[ql + l] & 15) | (((src[qh + l] >> 0) & 3) << 4)) - 32;
          const q2 = ((src[ql + l + 32] & 15) | (((src[qh + l] >> 2) & 3) << 4)) - 32;
          const q3 = ((src[ql + l] >> 4) | (((src[qh + l] >> 4) & 3) << 4)) - 32;
          const q4 = ((src[ql + l + 32] >> 4) | (((src[qh + l] >> 6) & 3) << 4)) - 32;
          const i8 = (k: number) => (src[sc + k] << 24) >> 24;
          const o = y0 + 128 * half + l;
          y[o] = d * i8(is) * q1;
          y[o + 32] = d * i8(is + 2) * q2;
          y[o + 64] = d * i8(is + 4) * q3;
          y[o + 96] = d * i8(is + 6) * q4;
        }
      }
    }
  }
  return y;
}

const putF16 = (b: Uint8Array, i: number, x: number) => {
  const h = f32ToF16Bits(x);
  b[i] = h & 255;
  b[i + 1] = h >> 8;
};
/** the f32 value an f16 store keeps */
const asF16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/**
 * f32 weights -> GGUF blocks. Q8_0 and Q4_0 as ggml's reference quantizers; Q4_K and
 * Q6_K by plain min/max (absmax) scales, not llama.cpp's iterative search: a valid
 * encoding of the format, a little less accurate than llama-quantize's.
 */
export function quantize(t: QuantType, x: Float32Array): Uint8Array {
  const f = QUANT[t];
  if (x.length % f.block) throw new Error(`${t}: ${x.length} weights are not whole blocks of ${f.block}`);
  const nb = x.length / f.block;
  const out = new Uint8Array(nb * f.bytes);
  for (let b = 0; b < nb; b++) {
    const v = x.subarray(b * f.block, (b + 1) * f.block);
    const o = b * f.bytes;
    if (t === "q8_0") {
      const amax = v.reduce((a, c) => Math.max(a, Math.abs(c)), 0);
      const d = amax / 127;
      putF16(out, o, d);
      for (let j = 0; j < 32; j++) out[o + 2 + j] = (d ? Math.round(v[j] / d) : 0) & 255;
    } else if (t === "q4_0") {
      let max = 0;
      for (const c of v) if (Math.abs(c) > Math.abs(max)) max = c;
      const d = max / -8;
      const id = d ? 1 / d : 0;
      putF16(out, o, d);
      const q = (c: number) => Math.min(15, Math.trunc(c * id + 8.5));
      for (let j = 0; j < 16; j++) out[o + 2 + j] = q(v[j]) | (q(v[j + 16]) << 4);
    } else if (t === "q4_k") {
      quantizeQ4K(v, out, o);
    } else {
      quantizeQ6K(v, out, o);
    }
  }
  return out;
}

function quantizeQ4K(v: Float32Array, out: Uint8Array, o: number) {
  const scales = new Float32Array(8), mins = new Float32Array(8);
  for (let s = 0; s < 8; s++) {
    const sub = v.subarray(32 * s, 32 * s + 32);
    const mn = Math.min(0, ...sub), mx = Math.max(...sub);
    scales[s] = (mx - mn) / 15;
    mins[s] = -mn;
  }
  const d = asF16(Math.max(...scales) / 63), dmin = asF16(Math.max(...mins) / 63);
  putF16(out, o, d);
  putF16(out, o + 2, dmin);
  const ls = scales.map((s) => (d ? clamp(Math.round(s / d), 0, 63) : 0));
  const lm = mins.map((m) => (dmin ? clamp(Math.round(m / dmin), 0, 63) : 0));
  const sc = o + 4;
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[sc + j] = ls[j];
      out[sc + j + 4] = lm[j];
    } else {
      out[sc + j + 4] = (ls[j] & 15) | ((lm[j] & 15) << 4);
      out[sc + j - 4] |= (ls[j] >> 4) << 6;
      out[sc + j] |= (lm[j] >> 4) << 6;
    }
  }
  for (let s = 0; s < 8; s++) {
    const step = d * ls[s], m = dmin * lm[s];
    const q = o + 16 + 32 * (s >> 1);
    for (let l = 0; l < 32; l++) {
      const n = step ? clamp(Math.round((v[32 * s + l] + m) / step), 0, 15) : 0;
      out[q + l] |= s & 1 ? n << 4 : n;
    }
  }
}

function quantizeQ6K(v: Float32Array, out: Uint8Array, o: number) {
  const scales = new Float32Array(16);
  for (let s = 0; s < 16; s++) scales[s] = v.subarray(16 * s, 16 * s + 16).reduce((a, c) => Math.max(a, Math.abs(c)), 0) / 31;
  const d = asF16(Math.max(...scales) / 127);
  putF16(out, o + 208, d);
  const L = new Uint8Array(256);
  for (let s = 0; s < 16; s++) {
    const sc = d ? clamp(Math.round(scales[s] / d), -128, 127) : 0;
    out[o + 192 + s] = sc & 255;
    for (let l = 0; l < 16; l++) L[16 * s + l] = (sc ? clamp(Math.round(v[16 * s + l] / (d * sc)), -32, 31) : 0) + 32;
  }
  for (let half = 0; half < 2; half++) {
    const ql = o + 64 * half, qh = o + 128 + 32 * half, j = 128 * half;
    for (let l = 0; l < 32; l++) {
      const [q1, q2, q3, q4] = [L[j + l], L[j + l + 32], L[j + l + 64], L[j + l + 96]];
      out[ql + l] = (q1 & 15) | ((q3 & 15) << 4);
      out[ql + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
      out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
    }
  }
}
