// Random-weight GGUF files at real model shapes (config.ts SHAPES) for the peer
// benchmark: the same file runs in kvc and in llama.cpp. Quantized blocks are random
// bytes with their f16 scales set so weights stay about +-0.03; norms are ones. The
// tensor mix follows llama.cpp's: Q4_K_M puts Q6_K on attn_v and ffn_down of the
// layers its `use_more_bits` picks and on the output (the tied embedding: Q6_K too).
import { f32ToF16Bits } from "../src/model/f16.ts";
import { writeGguf, type GgufTensorData, type GgufType, type GgufValue } from "../src/model/gguf-file.ts";
import { ropeInvFreq } from "../src/model/config.ts";
import type { ModelShape } from "./shapes.ts";
import { QUANT, type QuantType } from "../src/model/quant.ts";

export type PeerQuant = "q4_k_m" | "q8_0";

/** llama.cpp's use_more_bits(i, n) (llama-quant.cpp) */
const moreBits = (i: number, n: number) => i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;

/** d (and dmin) of each format: the largest |weight| about 0.03 */
const SCALES: Record<QuantType, [number, number]> = { q8_0: [2 ** -12, 0], q4_0: [2 ** -8, 0], q4_k: [2 ** -15, 2 ** -15], q6_k: [2 ** -17, 0] };

function randomBlocks(t: QuantType, n: number, seed: number): Uint8Array {
  const f = QUANT[t];
  const out = new Uint8Array(n * f.bytes);
  const w = new Uint32Array(out.buffer, 0, out.length >> 2);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    w[i] = s;
  }
  const [d, dmin] = SCALES[t].map(f32ToF16Bits);
  const dAt = t === "q6_k" ? 208 : 0;
  for (let b = 0; b < n; b++) {
    const o = b * f.bytes + dAt;
    out[o] = d & 255;
    out[o + 1] = d >> 8;
    if (t === "q4_k") {
      out[o + 2] = dmin & 255;
      out[o + 3] = dmin >> 8;
    }
  }
  return out;
}

export function writeRandomGguf(s: ModelShape, quant: PeerQuant, file: string, seed = 1) {
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: F, vocab: V, layers: L } = s;
  const tensors: GgufTensorData[] = [];
  let k = 0;
  const mat = (name: string, rows: number, K: number, type: GgufType) => {
    const q = type as QuantType;
    const sd = seed * 7919 + ++k;
    tensors.push({ name, type, shape: [rows, K], data: () => randomBlocks(q, (rows * K) / QUANT[q].block, sd) });
  };
  const ones = (name: string, n: number) => tensors.push({ name, type: "F32", shape: [n], data: new Uint8Array(new Float32Array(n).fill(1).buffer) });
  const main: QuantType = quant === "q8_0" ? "q8_0" : "q4_k";
  const high: QuantType = quant === "q8_0" ? "q8_0" : "q6_k";
  mat("token_embd.weight", V, Dm, s.tiedEmbeddings ? high : main);
  for (let l = 0; l < L; l++) {
    const b = `blk.${l}.`;
    ones(b + "attn_norm.weight", Dm);
    mat(b + "attn_q.weight", H * D, Dm, main);
    mat(b + "attn_k.weight", KVH * D, Dm, main);
    mat(b + "attn_v.weight", KVH * D, Dm, moreBits(l, L) ? high : main);
    mat(b + "attn_output.weight", Dm, H * D, main);
    ones(b + "ffn_norm.weight", Dm);
    mat(b + "ffn_gate.weight", F, Dm, main);
    mat(b + "ffn_up.weight", F, Dm, main);
    mat(b + "ffn_down.weight", Dm, F, moreBits(l, L) ? high : main);
  }
  ones("output_norm.weight", Dm);
  if (!s.tiedEmbeddings) mat("output.weight", V, Dm, high);
  if (s.ropeScaling) {
    const plain = ropeInvFreq(D, s.ropeTheta, null), scaled = ropeInvFreq(D, s.ropeTheta, s.ropeScaling);
    tensors.push({ name: "rope_freqs.weight", type: "F32", shape: [D / 2], data: new Uint8Array(plain.map((f, i) => f / scaled[i]).buffer) });
  }
  // a byte-level vocabulary of placeholder tokens: llama.cpp needs one, no prompt is text
  const bytes = Array.from({ length: 256 }, (_, i) => String.fromCodePoint(i < 33 || (i > 126 && i < 161) || i === 173 ? 256 + i : i));
  const tokens = [...bytes, "\u0120t", ...Array.from({ length: V - 257 }, (_, i) => `<t${i}>`)];
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  writeGguf(file, [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: `random ${s.name} ${quant}` }],
    ["llama.context_length", u32(8192)],
    ["llama.embedding_length", u32(Dm)],
    ["llama.block_count", u32(L)],
    ["llama.feed_forward_length", u32(F)],
    ["llama.attention.head_count", u32(H)],
    ["llama.attention.head_count_kv", u32(KVH)],
    ["llama.attention.key_length", u32(D)],
    ["llama.attention.value_length", u32(D)],
    ["llama.rope.dimension_count", u32(D)],
    ["llama.rope.freq_base", { type: "f32", value: s.ropeTheta }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: s.normEps }],
    ["llama.vocab_size", u32(V)],
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: "llama-bpe" }],
    ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "array", of: "i32", value: tokens.map(() => 1) }],
    ["tokenizer.ggml.merges", { type: "array", of: "string", value: ["\u0120 t"] }],
    ["tokenizer.ggml.bos_token_id", u32(V - 1)],
    ["tokenizer.ggml.eos_token_id", u32(V - 2)],
  ], tensors);
}
