// CPU references for every kernel, llama2.c style: plain loops over f32 arrays.
import { f16BitsToF32, f32ToF16Bits } from "../src/model/f16.ts";

/** Rounds through f16, as the GPU stores weights and K/V. */
export const roundF16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));

/** y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) (+ y[m, n] when residual) */
export function matmul(x: Float32Array, w: Float32Array, M: number, N: number, K: number, bias?: Float32Array, residual?: Float32Array): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s + (bias ? bias[n] : 0) + (residual ? residual[m * N + n] : 0);
    }
  return y;
}

export function rmsnorm(x: Float32Array, w: Float32Array, M: number, D: number, eps: number): Float32Array {
  const y = new Float32Array(M * D);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[m * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[m * D + i] = x[m * D + i] * inv * w[i];
  }
  return y;
}

/** rotate_half RoPE on `heads` heads of each row (row stride ld). */
export function rope(q: Float32Array, M: number, heads: number, D: number, ld: number, pos: number[], invFreq: Float32Array): Float32Array {
  const y = q.slice();
  const half = D / 2;
  for (let m = 0; m < M; m++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const a = Math.fround(pos[m] * invFreq[i]);
        const c = Math.cos(a), s = Math.sin(a);
        const b = m * ld + h * D;
        const x1 = q[b + i], x2 = q[b + i + half];
        y[b + i] = x1 * c - x2 * s;
        y[b + i + half] = x2 * c + x1 * s;
      }
  return y;
}

export function swiglu(gu: Float32Array, M: number, F: number, Fp: number): Float32Array {
  const y = new Float32Array(M * Fp);
  for (let m = 0; m < M; m++)
    for (let f = 0; f < F; f++) {
      const g = gu[m * 2 * F + f];
      y[m * Fp + f] = (g / (1 + Math.exp(-g))) * gu[m * 2 * F + F + f];
    }
  return y;
}

/**
 * Causal GQA attention of query rows over per-head key lists.
 * q: [rows][H * D]; keys/values: per kv head, [len][D]; lens[r][h] = keys row r sees in head h.
 */
export function attention(q: Float32Array, keys: Float32Array[], values: Float32Array[], lens: number[][], H: number, KVH: number, D: number): Float32Array {
  const rows = lens.length;
  const G = H / KVH;
  const out = new Float32Array(rows * H * D);
  const scale = 1 / Math.sqrt(D);
  for (let r = 0; r < rows; r++)
    for (let qh = 0; qh < H; qh++) {
      const h = Math.floor(qh / G);
      const n = lens[r][h];
      const s = new Float64Array(n);
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q[r * H * D + qh * D + i] * keys[h][j * D + i];
        s[j] = d * scale;
        mx = Math.max(mx, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j] - mx));
      for (let i = 0; i < D; i++) {
        let o = 0;
        for (let j = 0; j < n; j++) o += s[j] * values[h][j * D + i];
        out[r * H * D + qh * D + i] = o / sum;
      }
    }
  return out;
}

/**
 * KV-Compress metric: per KV head, for each key, the sum over the given query rows and
 * the query heads of its GQA group of the squared softmax probability it received.
 */
export function attentionScores(q: Float32Array, keys: Float32Array[], lens: number[][], H: number, KVH: number, D: number): Float64Array[] {
  const G = H / KVH;
  const scale = 1 / Math.sqrt(D);
  const out = keys.map((k) => new Float64Array(k.length / D));
  lens.forEach((lr, r) => {
    for (let qh = 0; qh < H; qh++) {
      const h = Math.floor(qh / G);
      const n = lr[h];
      const s = new Float64Array(n);
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q[r * H * D + qh * D + i] * keys[h][j * D + i];
        s[j] = d * scale;
        mx = Math.max(mx, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(s[j] - mx);
      for (let j = 0; j < n; j++) out[h][j] += (Math.exp(s[j] - mx) / sum) ** 2;
    }
  });
  return out;
}

/** PCG hash and the uniform draw used by kernels/sample.wgsl. */
export function pcg(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}
export function uniform(seed: number, counter: number): number {
  return (pcg((seed ^ pcg(counter)) >>> 0) >>> 8) / 16777216;
}

/**
 * The sampler's contract, exactly: greedy = first argmax; otherwise keep logits >= the
 * k-th largest, then the smallest head holding top_p of that mass, and pick by the
 * cumulative mass in index order at u * mass.
 */
export function sample(logits: Float32Array, temperature: number, topP: number, topK: number, u: number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0 || topK === 1) return best;
  const mx = logits[best];
  const sorted = Array.from(logits).sort((a, b) => b - a);
  let thr = topK > 0 && topK < logits.length ? sorted[topK - 1] : -Infinity;
  const e = (x: number) => Math.exp((x - mx) / temperature);
  let mass = 0;
  for (const x of logits) if (x >= thr) mass += e(x);
  if (topP < 1) {
    let acc = 0;
    for (const x of sorted) {
      if (x < thr) break;
      acc += e(x);
      if (acc >= topP * mass) {
        thr = x;
        break;
      }
    }
    mass = 0;
    for (const x of logits) if (x >= thr) mass += e(x);
  }
  const target = u * mass;
  let acc = 0;
  let last = best;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] < thr) continue;
    acc += e(logits[i]);
    last = i;
    if (target < acc) return i;
  }
  return last;
}
