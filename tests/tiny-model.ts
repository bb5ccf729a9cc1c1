// Builds tiny random HF model folders (any dtype, sharded or not, Qwen2 bias, llama3
// RoPE) and runs them through a CPU forward pass in llama2.c style.
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ropeInvFreq } from "../src/model/config.ts";
import { f32ToF16Bits } from "../src/model/f16.ts";
import * as ref from "./reference.ts";
import { rand } from "./gpu-helpers.ts";
import { modelDir } from "./helpers.ts";

export interface TinySpec {
  arch: "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
  dtype: "F32" | "F16" | "BF16";
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  layers: number;
  tied: boolean;
  shards: number;
  ropeScaling?: Record<string, unknown>;
}
const VOCAB = 512; // stories260K's tokenizer is borrowed

function encode(x: Float32Array, dtype: TinySpec["dtype"]): Uint8Array {
  if (dtype === "F32") return new Uint8Array(x.slice().buffer);
  const out = new Uint16Array(x.length);
  const bits = new Uint32Array(x.slice().buffer);
  for (let i = 0; i < x.length; i++) out[i] = dtype === "F16" ? f32ToF16Bits(x[i]) : bits[i] >>> 16;
  return new Uint8Array(out.buffer);
}
/** The value the file really holds, as f32. */
function stored(x: Float32Array, dtype: TinySpec["dtype"]): Float32Array {
  if (dtype === "F32") return x;
  if (dtype === "F16") return x.map(ref.roundF16);
  const bits = new Uint32Array(x.slice().buffer);
  return new Float32Array(bits.map((b) => b & 0xffff0000).buffer);
}

export function writeSafetensors(path: string, tensors: [string, number[], Float32Array][], dtype: TinySpec["dtype"]) {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const [name, shape, data] of tensors) {
    const b = encode(data, dtype);
    header[name] = { dtype, shape, data_offsets: [off, off + b.length] };
    blobs.push(b);
    off += b.length;
  }
  let h = JSON.stringify(header);
  h += " ".repeat((8 - (h.length % 8)) % 8);
  const hb = new TextEncoder().encode(h);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const b of blobs) {
    out.set(b, p);
    p += b.length;
  }
  writeFileSync(path, out);
}

export interface TinyModel {
  dir: string;
  spec: TinySpec;
  w: Map<string, Float32Array>; // values as stored (after dtype rounding)
}

export function makeTinyModel(spec: TinySpec, seed = 1): TinyModel {
  const dir = mkdtempSync(join(tmpdir(), "kvc-tiny-"));
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: Fn } = spec;
  const tensors: [string, number[], Float32Array][] = [];
  let s = seed * 1000;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = rand(n, ++s, scale).map((v) => v + offset);
    tensors.push([name, shape, x]);
  };
  add("model.embed_tokens.weight", [VOCAB, Dm], 1);
  for (let l = 0; l < spec.layers; l++) {
    const p = `model.layers.${l}.`;
    add(p + "input_layernorm.weight", [Dm], 0.2, 1);
    add(p + "self_attn.q_proj.weight", [H * D, Dm], 0.3);
    add(p + "self_attn.k_proj.weight", [KVH * D, Dm], 0.3);
    add(p + "self_attn.v_proj.weight", [KVH * D, Dm], 0.3);
    if (spec.arch === "Qwen2ForCausalLM") {
      add(p + "self_attn.q_proj.bias", [H * D], 0.5);
      add(p + "self_attn.k_proj.bias", [KVH * D], 0.5);
      add(p + "self_attn.v_proj.bias", [KVH * D], 0.5);
    }
    add(p + "self_attn.o_proj.weight", [Dm, H * D], 0.3);
    add(p + "post_attention_layernorm.weight", [Dm], 0.2, 1);
    add(p + "mlp.gate_proj.weight", [Fn, Dm], 0.3);
    add(p + "mlp.up_proj.weight", [Fn, Dm], 0.3);
    add(p + "mlp.down_proj.weight", [Dm, Fn], 0.3);
  }
  add("model.norm.weight", [Dm], 0.2, 1);
  if (!spec.tied) add("lm_head.weight", [VOCAB, Dm], 0.5);
  const w = new Map(tensors.map(([n, , x]) => [n, stored(x, spec.dtype)]));
  if (spec.shards <= 1) writeSafetensors(join(dir, "model.safetensors"), tensors, spec.dtype);
  else {
    const per = Math.ceil(tensors.length / spec.shards);
    const map: Record<string, string> = {};
    for (let i = 0; i < spec.shards; i++) {
      const file = `model-0000${i + 1}-of-0000${spec.shards}.safetensors`;
      const part = tensors.slice(i * per, (i + 1) * per);
      for (const [n] of part) map[n] = file;
      writeSafetensors(join(dir, file), part, spec.dtype);
    }
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: map }));
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    architectures: [spec.arch], hidden_size: Dm, num_attention_heads: H, num_key_value_heads: KVH, head_dim: D,
    intermediate_size: Fn, num_hidden_layers: spec.layers, vocab_size: VOCAB, max_position_embeddings: 256,
    rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: spec.ropeScaling ?? null, tie_word_embeddings: spec.tied,
    hidden_act: "silu", bos_token_id: 1, eos_token_id: 2,
  }));
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: [2] }));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(modelDir("stories260K"), f), join(dir, f));
  return { dir, spec, w };
}

/** CPU forward over the whole sequence; logits of the last position. f16 weights and K/V, as the GPU stores them. */
export function cpuForward(m: TinyModel, ids: number[]): Float32Array {
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: Fn } = m.spec;
  const T = ids.length;
  const w16 = (n: string) => m.w.get(n)!.map(ref.roundF16);
  const w32 = (n: string) => m.w.get(n)!;
  const emb = w16("model.embed_tokens.weight");
  let x: Float32Array = new Float32Array(T * Dm);
  ids.forEach((t, i) => x.set(emb.slice(t * Dm, (t + 1) * Dm), i * Dm));
  const inv = ropeInvFreq(D, 10000, m.spec.ropeScaling ?? null);
  const pos = ids.map((_, i) => i);
  for (let l = 0; l < m.spec.layers; l++) {
    const p = `model.layers.${l}.`;
    const h = ref.rmsnorm(x, w32(p + "input_layernorm.weight"), T, Dm, 1e-5);
    const bias = (n: string) => (m.spec.arch === "Qwen2ForCausalLM" ? w32(p + `self_attn.${n}_proj.bias`) : undefined);
    const q = ref.matmul(h, w16(p + "self_attn.q_proj.weight"), T, H * D, Dm, bias("q"));
    const k = ref.matmul(h, w16(p + "self_attn.k_proj.weight"), T, KVH * D, Dm, bias("k"));
    const v = ref.matmul(h, w16(p + "self_attn.v_proj.weight"), T, KVH * D, Dm, bias("v"));
    const qr = ref.rope(q, T, H, D, H * D, pos, inv);
    const kr = ref.rope(k, T, KVH, D, KVH * D, pos, inv).map(ref.roundF16);
    const keys: Float32Array[] = [], values: Float32Array[] = [];
    for (let hh = 0; hh < KVH; hh++) {
      const kk = new Float32Array(T * D), vv = new Float32Array(T * D);
      for (let t = 0; t < T; t++)
        for (let i = 0; i < D; i++) {
          kk[t * D + i] = kr[t * KVH * D + hh * D + i];
          vv[t * D + i] = ref.roundF16(v[t * KVH * D + hh * D + i]);
        }
      keys.push(kk);
      values.push(vv);
    }
    const lens = pos.map((i) => new Array(KVH).fill(i + 1));
    const a = ref.attention(qr, keys, values, lens, H, KVH, D);
    x = ref.matmul(a, w16(p + "self_attn.o_proj.weight"), T, Dm, H * D, undefined, x);
    const h2 = ref.rmsnorm(x, w32(p + "post_attention_layernorm.weight"), T, Dm, 1e-5);
    const gu = new Float32Array(T * 2 * Fn);
    const g = ref.matmul(h2, w16(p + "mlp.gate_proj.weight"), T, Fn, Dm);
    const u = ref.matmul(h2, w16(p + "mlp.up_proj.weight"), T, Fn, Dm);
    for (let t = 0; t < T; t++) {
      gu.set(g.slice(t * Fn, (t + 1) * Fn), t * 2 * Fn);
      gu.set(u.slice(t * Fn, (t + 1) * Fn), t * 2 * Fn + Fn);
    }
    const act = ref.swiglu(gu, T, Fn, Fn);
    x = ref.matmul(act, w16(p + "mlp.down_proj.weight"), T, Dm, Fn, undefined, x);
  }
  const last = ref.rmsnorm(x.slice((T - 1) * Dm), w32("model.norm.weight"), 1, Dm, 1e-5);
  const head = m.spec.tied ? emb : w16("lm_head.weight");
  return ref.matmul(last, head, 1, VOCAB, Dm);
}

export function mkdirTmp(): string {
  const d = mkdtempSync(join(tmpdir(), "kvc-bad-"));
  mkdirSync(d, { recursive: true });
  return d;
}
