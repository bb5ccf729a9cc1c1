// Random weights built on the GPU, for benchmarks at real shapes with no files:
// the host sends seeds only, and kernels/fill_random.wgsl draws every value.
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { cdiv, type KernelContext } from "../src/gpu/kernels.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { allocMatrix, type LayerWeights, type Matrix, type ModelWeights } from "../src/model/weights.ts";

/** Amplitude of random matrices: uniform in [-2^-shift, 2^-shift) (std 0.018, about HF's 0.02 init). */
export const RANDOM_SHIFT = 5;

/** Seed of one named tensor of a random model (FNV-1a of the name, mixed with the model seed). */
export function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/**
 * Fills `words` u32 words of `buf` with kernels/fill_random.wgsl: f16 pairs starting at
 * element 2 * first, or f32 values base + noise starting at element first.
 */
export function fillRandom(kc: KernelContext, buf: GPUBuffer, o: { words: number; first?: number; seed: number; f16: boolean; shift?: number; base?: number }) {
  const st = kc.step();
  const groups = cdiv(o.words, 256);
  const x = Math.min(groups, kc.gpu.limits.maxComputeWorkgroupsPerDimension);
  st.dispatch(kc.kernel("fill_random", { PAIRS: o.f16 }), [buf], { n: o.words, first: o.first ?? 0, seed: o.seed, shift: o.shift ?? RANDOM_SHIFT, base: o.base ?? 0 }, [x, cdiv(groups, x)]);
  st.submit();
}

/**
 * A model at cfg's shape with random weights made on the GPU: the host sends seeds only.
 * Matrix `name` (embed, L{l}.qkv, L{l}.o, L{l}.gate_up, L{l}.down, lm_head) holds, at
 * row-major element e of the fused matrix, the value fill_random draws for
 * (tensorSeed(seed, name), e); norm vectors (L{l}.ln1, L{l}.ln2, norm) are 1 + noise.
 */
export function randomWeights(gpu: Gpu, kc: KernelContext, cfg: ModelConfig, seed = 1): ModelWeights {
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: Fn, vocab: V } = cfg;
  for (const [what, k] of [["hidden", Dm], ["heads * head_dim", H * D], ["ffn", Fn]] as const) {
    if (k % 8 !== 0) throw new Error(`random weights need ${what} (${k}) to be a multiple of 8`);
  }
  let bytes = 0;
  const matrix = (name: string, N: number, K: number): Matrix => {
    const m = allocMatrix(gpu, name, N, K);
    for (const s of m.shards) {
      const words = (s.rows * K) / 2;
      fillRandom(kc, s.buffer, { words, first: (s.rowStart * K) / 2, seed: tensorSeed(seed, name), f16: true });
    }
    bytes += N * K * 2;
    return m;
  };
  const vector = (name: string, n: number): GPUBuffer => {
    const b = createStorage(gpu.device, n * 4, name);
    fillRandom(kc, b, { words: n, seed: tensorSeed(seed, name), f16: false, base: 1 });
    bytes += n * 4;
    return b;
  };
  const embed = matrix("embed", V, Dm);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    layers.push({
      ln1: vector(`L${l}.ln1`, Dm),
      qkv: matrix(`L${l}.qkv`, (H + 2 * KVH) * D, Dm),
      qkvBias: null,
      o: matrix(`L${l}.o`, Dm, H * D),
      ln2: vector(`L${l}.ln2`, Dm),
      gateUp: matrix(`L${l}.gate_up`, 2 * Fn, Dm),
      down: matrix(`L${l}.down`, Dm, Fn),
    });
  }
  const norm = vector("norm", Dm);
  const lmHead = cfg.tiedEmbeddings ? embed : matrix("lm_head", V, Dm);
  return { embed, layers, norm, lmHead, bytes };
}
