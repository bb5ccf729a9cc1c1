// Builds GGUF files of the shared test models (kvc-nano, kvc-small, stories260K) the
// way llama.cpp's convert_hf_to_gguf.py lays them out (arch "llama", q/k rows permuted
// for its interleaved RoPE, tokenizer and chat template in the metadata), in F16,
// Q8_0, Q4_0 and a K-quant mix, into fixtures/gguf/ (ignored by git: derived weights
// are rebuilt, never committed). scripts/setup.sh runs it; so can anyone:
//   bun scripts/make-gguf-fixtures.ts [shared models folder] [out folder]
// Rows whose length is not a whole number of a format's blocks stay F16 (llama.cpp's
// quantizer falls back the same way); the K-quant mix ("q4_k_m") uses Q4_K, and Q6_K
// for the down projections of the first and last layers and for attn_v, where rows
// hold whole 256-blocks, and Q4_0 elsewhere (llama.cpp would pick Q5_0, which kvc does
// not read).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../src/model/config.ts";
import { f32ToF16Bits, toF32 } from "../src/model/f16.ts";
import { writeGguf, type GgufTensorData, type GgufType, type GgufValue } from "../src/model/gguf-file.ts";
import { QUANT, quantize, type QuantType } from "../src/model/quant.ts";
import { listTensors, readTensorBytes } from "../src/model/safetensors.ts";

export type FixtureType = "f16" | "q8_0" | "q4_0" | "q4_k_m";
/** The K-quant mix only where it differs from Q4_0: kvc-small's FFN rows hold whole 256-blocks, the others' rows none. */
export const FIXTURES: [string, FixtureType][] = [
  ...(["kvc-nano", "kvc-small", "stories260K"] as const).flatMap((m) => (["f16", "q8_0", "q4_0"] as const).map((t): [string, FixtureType] => [m, t])),
  ["kvc-small", "q4_k_m"],
];
export const fixturePath = (dir: string, model: string, type: FixtureType) => join(dir, `${model}-${type}.gguf`);

const u32 = (value: number): GgufValue => ({ type: "u32", value });
const f32 = (value: number): GgufValue => ({ type: "f32", value });
const str = (value: string): GgufValue => ({ type: "string", value });

/** llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte */
function tokenizerMeta(dir: string): [string, GgufValue][] {
  const tj = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const tc = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  const vocab: Record<string, number> = tj.model.vocab;
  const tokens: string[] = [];
  for (const [t, id] of Object.entries(vocab)) tokens[id] = t;
  for (const a of tj.added_tokens) tokens[a.id] = a.content;
  const special = new Set<number>(tj.added_tokens.filter((a: any) => a.special).map((a: any) => a.id));
  const idOf = (t: unknown) => (typeof t === "string" ? tokens.indexOf(t) : -1);
  const out: [string, GgufValue][] = [];
  const sentencePiece = tj.model.byte_fallback === true;
  if (sentencePiece) {
    // scores that reproduce the merge order: a piece scores minus the rank of the first merge making it
    const rank = new Map<string, number>();
    (tj.model.merges as (string | string[])[]).forEach((m, r) => {
      const piece = (typeof m === "string" ? m.split(" ") : m).join("");
      if (!rank.has(piece)) rank.set(piece, r);
    });
    out.push(["tokenizer.ggml.model", str("llama")], ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }]);
    out.push(["tokenizer.ggml.scores", { type: "array", of: "f32", value: tokens.map((t) => -(rank.get(t) ?? (t.length > 1 && !/^<0x/.test(t) ? 1e6 : 0))) }]);
    out.push(["tokenizer.ggml.token_type", { type: "array", of: "i32", value: tokens.map((t, i) => (t === tj.model.unk_token ? 2 : special.has(i) ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1)) }]);
  } else {
    const merges = (tj.model.merges as (string | string[])[]).map((m) => (typeof m === "string" ? m : m.join(" ")));
    out.push(["tokenizer.ggml.model", str("gpt2")], ["tokenizer.ggml.pre", str("llama-bpe")]);
    out.push(["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }]);
    out.push(["tokenizer.ggml.token_type", { type: "array", of: "i32", value: tokens.map((_, i) => (special.has(i) ? 3 : 1)) }]);
    out.push(["tokenizer.ggml.merges", { type: "array", of: "string", value: merges }]);
  }
  const bos = idOf(tc.bos_token?.content ?? tc.bos_token), eos = idOf(tc.eos_token?.content ?? tc.eos_token);
  if (bos >= 0) out.push(["tokenizer.ggml.bos_token_id", u32(bos)]);
  if (eos >= 0) out.push(["tokenizer.ggml.eos_token_id", u32(eos)]);
  const eot = tokens.indexOf("<|eot_id|>");
  if (eot >= 0) out.push(["tokenizer.ggml.eot_token_id", u32(eot)]);
  if (sentencePiece) out.push(["tokenizer.ggml.unknown_token_id", u32(idOf(tj.model.unk_token))]);
  out.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: tj.post_processor?.type === "TemplateProcessing" }]);
  if (typeof tc.chat_template === "string") out.push(["tokenizer.chat_template", str(tc.chat_template)]);
  return out;
}

/** convert_hf_to_gguf.py's `permute`: HF row j D/2 + i of a head goes to row 2i + j. */
function permuteRows(w: Float32Array, rows: number, K: number, heads: number): Float32Array {
  const D = rows / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < D / 2; i++) out.set(w.subarray((h * D + j * (D / 2) + i) * K, (h * D + j * (D / 2) + i + 1) * K), (h * D + 2 * i + j) * K);
    }
  }
  return out;
}

/** The format a matrix gets in a fixture: F16 where its rows are not whole blocks. */
function matrixType(type: FixtureType, gguf: string, layer: number, layers: number, K: number): GgufType {
  const fits = (q: QuantType) => K % QUANT[q].block === 0;
  if (type === "f16") return "F16";
  if (type !== "q4_k_m") return fits(type) ? type : "F16";
  const six = gguf === "attn_v" || (gguf === "ffn_down" && (layer === 0 || layer === layers - 1));
  if (fits("q4_k")) return six ? "q6_k" : "q4_k";
  return fits("q4_0") ? "q4_0" : "F16";
}

export function makeFixture(modelDir: string, out: string, type: FixtureType) {
  const cfg = loadConfig(modelDir);
  const tensors = listTensors(modelDir);
  const read = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${modelDir}: no tensor ${name}`);
    const raw = new Uint8Array(t.bytes);
    readTensorBytes(t, 0, raw, t.bytes);
    return { values: toF32(raw, t.dtype), shape: t.shape };
  };
  const data: GgufTensorData[] = [];
  const vector = (gguf: string, hf: string) => {
    const { values, shape } = read(hf);
    data.push({ name: gguf, type: "F32", shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
  };
  const matrix = (gguf: string, hf: string, layer = 0, heads = 0) => {
    const { values, shape } = read(hf);
    const [rows, K] = shape;
    const w = heads ? permuteRows(values, rows, K, heads) : values;
    const short = gguf.replace(/^blk\.\d+\./, "").replace(/\.weight$/, "");
    const t = matrixType(type, short, layer, cfg.layers, K);
    const bytes = t === "F16" ? new Uint8Array(Uint16Array.from(w, f32ToF16Bits).buffer) : quantize(t as QuantType, w);
    data.push({ name: gguf, type: t, shape, data: bytes });
  };
  matrix("token_embd.weight", "model.embed_tokens.weight");
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}.`, b = `blk.${l}.`;
    vector(b + "attn_norm.weight", p + "input_layernorm.weight");
    matrix(b + "attn_q.weight", p + "self_attn.q_proj.weight", l, cfg.heads);
    matrix(b + "attn_k.weight", p + "self_attn.k_proj.weight", l, cfg.kvHeads);
    matrix(b + "attn_v.weight", p + "self_attn.v_proj.weight", l);
    matrix(b + "attn_output.weight", p + "self_attn.o_proj.weight", l);
    vector(b + "ffn_norm.weight", p + "post_attention_layernorm.weight");
    matrix(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", l);
    matrix(b + "ffn_up.weight", p + "mlp.up_proj.weight", l);
    matrix(b + "ffn_down.weight", p + "mlp.down_proj.weight", l);
  }
  vector("output_norm.weight", "model.norm.weight");
  if (tensors.has("lm_head.weight")) matrix("output.weight", "lm_head.weight");
  const name = modelDir.split("/").filter(Boolean).pop()!;
  const meta: [string, GgufValue][] = [
    ["general.architecture", str("llama")],
    ["general.name", str(name)],
    ["general.alignment", u32(32)],
    ["llama.context_length", u32(cfg.maxContext)],
    ["llama.embedding_length", u32(cfg.hidden)],
    ["llama.block_count", u32(cfg.layers)],
    ["llama.feed_forward_length", u32(cfg.ffn)],
    ["llama.attention.head_count", u32(cfg.heads)],
    ["llama.attention.head_count_kv", u32(cfg.kvHeads)],
    ["llama.attention.key_length", u32(cfg.headDim)],
    ["llama.attention.value_length", u32(cfg.headDim)],
    ["llama.rope.dimension_count", u32(cfg.headDim)],
    ["llama.rope.freq_base", f32(cfg.ropeTheta)],
    ["llama.attention.layer_norm_rms_epsilon", f32(cfg.normEps)],
    ["llama.vocab_size", u32(cfg.vocab)],
    ...tokenizerMeta(modelDir),
  ];
  writeGguf(out, meta, data);
}

if (import.meta.main) {
  const shared = process.argv[2] ?? new URL("../../shared/models", import.meta.url).pathname;
  const outDir = process.argv[3] ?? new URL("../fixtures/gguf", import.meta.url).pathname;
  if (!existsSync(shared)) {
    console.log(`make-gguf-fixtures: no ${shared}, nothing to build`);
    process.exit(0);
  }
  mkdirSync(outDir, { recursive: true });
  for (const [m, t] of FIXTURES) {
    const out = fixturePath(outDir, m, t);
    makeFixture(join(shared, m), out, t);
    console.log(`wrote ${out}`);
  }
}
