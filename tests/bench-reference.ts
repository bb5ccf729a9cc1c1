// CPU references for the benchmark's GPU-built models: kernels/fill_random.wgsl value
// by value, and the HF-named weights of a random model (randomWeights) for cpuForward.
import { RANDOM_SHIFT, tensorSeed } from "../src/model/weights.ts";
import type { ModelShape } from "../src/model/config.ts";
import type { TinyModel } from "./tiny-model.ts";

function hash(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}
const draw = (seed: number, e: number) => (hash((hash(seed) ^ e) >>> 0) >>> 21) - 1024;
/** The value element e of a random tensor holds. */
export const randomValue = (seed: number, e: number, shift = RANDOM_SHIFT, base = 0) => base + draw(seed, e) * 2 ** -(10 + shift);

function f16Bits(x: number): number {
  // exact for the values fill_random makes (|m| <= 1024 times a power of two)
  if (x === 0) return 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  const e = Math.floor(Math.log2(a));
  if (e < -14) return sign | Math.round(a * 2 ** 24);
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

export function refF16Words(seed: number, words: number, first: number, shift: number): Uint32Array {
  const out = new Uint32Array(words);
  for (let i = 0; i < words; i++) {
    const e = 2 * (first + i);
    out[i] = (f16Bits(randomValue(seed, e, shift)) | (f16Bits(randomValue(seed, e + 1, shift)) << 16)) >>> 0;
  }
  return out;
}


/** Rows [r0, r0 + n) of a random matrix with K columns, as f32. */
function rows(seed: number, r0: number, n: number, K: number): Float32Array {
  const out = new Float32Array(n * K);
  for (let i = 0; i < n * K; i++) out[i] = randomValue(seed, r0 * K + i);
  return out;
}

/** The weights randomWeights(…, seed) builds, under HF tensor names, as a TinyModel for cpuForward. */
export function randomModelReference(s: ModelShape, seed: number): TinyModel {
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: F, vocab: V } = s;
  const w = new Map<string, Float32Array>();
  const vec = (name: string, n: number) => Float32Array.from({ length: n }, (_, i) => randomValue(tensorSeed(seed, name), i, RANDOM_SHIFT, 1));
  w.set("model.embed_tokens.weight", rows(tensorSeed(seed, "embed"), 0, V, Dm));
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    const qkv = tensorSeed(seed, `L${l}.qkv`);
    w.set(p + "input_layernorm.weight", vec(`L${l}.ln1`, Dm));
    w.set(p + "self_attn.q_proj.weight", rows(qkv, 0, H * D, Dm));
    w.set(p + "self_attn.k_proj.weight", rows(qkv, H * D, KVH * D, Dm));
    w.set(p + "self_attn.v_proj.weight", rows(qkv, (H + KVH) * D, KVH * D, Dm));
    w.set(p + "self_attn.o_proj.weight", rows(tensorSeed(seed, `L${l}.o`), 0, Dm, H * D));
    w.set(p + "post_attention_layernorm.weight", vec(`L${l}.ln2`, Dm));
    const gu = tensorSeed(seed, `L${l}.gate_up`);
    w.set(p + "mlp.gate_proj.weight", rows(gu, 0, F, Dm));
    w.set(p + "mlp.up_proj.weight", rows(gu, F, F, Dm));
    w.set(p + "mlp.down_proj.weight", rows(tensorSeed(seed, `L${l}.down`), 0, Dm, F));
  }
  w.set("model.norm.weight", vec("norm", Dm));
  if (!s.tiedEmbeddings) w.set("lm_head.weight", rows(tensorSeed(seed, "lm_head"), 0, V, Dm));
  return {
    dir: "",
    spec: { arch: "LlamaForCausalLM", dtype: "F16", hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: F, layers: s.layers, tied: s.tiedEmbeddings, shards: 1 },
    w,
  };
}
