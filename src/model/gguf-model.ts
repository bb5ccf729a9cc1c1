// A GGUF model as kvc's blueprint, tokenizer and named tensors: metadata keys to
// ModelConfig, tokenizer.ggml.* to an HF tokenizer.json, GGUF tensor names to HF
// names (so src/model/weights.ts loads both kinds the same way).
import { ropeInvFreq, type ModelConfig } from "./config.ts";
import type { GgufModel, GgufTensor } from "./gguf-file.ts";
import { readTensorBytes } from "./safetensors.ts";
import { TextTokenizer } from "./tokenizer.ts";
import type { WeightTensor } from "./weights.ts";

const ARCHS: Record<string, string> = { llama: "LlamaForCausalLM", mistral: "MistralForCausalLM", qwen2: "Qwen2ForCausalLM" };

function metaNumber(g: GgufModel, key: string, fallback?: number): number {
  const v = g.meta[key];
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (v === undefined && fallback !== undefined) return fallback;
  throw new Error(`${g.file}: metadata ${key} is ${v === undefined ? "missing" : "not a number"}`);
}

const metaArray = (g: GgufModel, key: string) => (Array.isArray(g.meta[key]) ? (g.meta[key] as unknown[]) : null);

function readF32(t: GgufTensor): Float32Array {
  if (t.type !== "F32") throw new Error(`${t.file}: tensor ${t.name} is ${t.type}, expected F32`);
  const out = new Uint8Array(t.bytes);
  readTensorBytes(t, 0, out, t.bytes);
  return new Float32Array(out.buffer);
}

export function ggufConfig(g: GgufModel): ModelConfig {
  const a = String(g.meta["general.architecture"] ?? "");
  if (!ARCHS[a]) throw new Error(`${g.file}: architecture "${a || "(none)"}" is not supported; kvc runs GGUF ${Object.keys(ARCHS).join(", ")}`);
  const n = (k: string, fallback?: number) => metaNumber(g, `${a}.${k}`, fallback);
  const hidden = n("embedding_length");
  const heads = n("attention.head_count");
  const kvHeads = n("attention.head_count_kv", heads);
  const headDim = n("attention.key_length", hidden / heads);
  if (heads % kvHeads !== 0) throw new Error(`${g.file}: ${heads} heads are not a multiple of ${kvHeads} KV heads`);
  if (headDim % 4 !== 0) throw new Error(`${g.file}: head dim ${headDim} must be a multiple of 4`);
  const scaling = g.meta[`${a}.rope.scaling.type`];
  if (scaling !== undefined && scaling !== "none") throw new Error(`${g.file}: rope scaling "${scaling}" is not supported (llama3 frequency factors only)`);
  const ropeTheta = n("rope.freq_base", 10000);
  // llama 3 files carry their rope scaling as per-pair frequency divisors
  const invFreq = ropeInvFreq(headDim, ropeTheta, null);
  const factors = g.tensors.get("rope_freqs.weight");
  if (factors) {
    const f = readF32(factors);
    if (f.length !== invFreq.length) throw new Error(`${g.file}: rope_freqs.weight has ${f.length} values for ${invFreq.length} rotary pairs`);
    for (let i = 0; i < f.length; i++) invFreq[i] = invFreq[i] / f[i];
  }
  const tokens = metaArray(g, "tokenizer.ggml.tokens");
  const ids = ["eos_token_id", "eot_token_id", "eom_token_id"].map((k) => g.meta[`tokenizer.ggml.${k}`]).filter((v) => v !== undefined).map(Number);
  const bos = g.meta["tokenizer.ggml.bos_token_id"];
  return {
    arch: ARCHS[a],
    hidden,
    layers: n("block_count"),
    heads,
    kvHeads,
    headDim,
    ffn: n("feed_forward_length"),
    vocab: g.tensors.get("token_embd.weight")?.shape[0] ?? tokens?.length ?? n("vocab_size"),
    maxContext: n("context_length", 2048),
    normEps: n("attention.layer_norm_rms_epsilon", 1e-5),
    ropeTheta,
    invFreq,
    qkvBias: g.tensors.has("blk.0.attn_q.bias"),
    tiedEmbeddings: !g.tensors.has("output.weight"),
    bosId: bos === undefined ? null : Number(bos),
    eosIds: [...new Set(ids)],
  };
}

const LAYER_NAMES: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};
const GLOBAL_NAMES: Record<string, string> = { "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight" };

/**
 * The file's tensors under HF names. llama.cpp's converter stores the q and k rows of
 * "llama" models permuted for its interleaved RoPE (convert_hf_to_gguf.py `permute`:
 * row 2i + j of a head holds HF row j D/2 + i); kvc rotates HF's halves, so those rows
 * are put back in HF order here (whole rows, so any block format survives it).
 */
export function ggufTensors(g: GgufModel, cfg: ModelConfig): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  const permuted = cfg.arch !== "Qwen2ForCausalLM";
  for (const t of g.tensors.values()) {
    let name = GLOBAL_NAMES[t.name];
    const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(t.name);
    if (m && LAYER_NAMES[m[2]]) name = `model.layers.${m[1]}.${LAYER_NAMES[m[2]]}.${m[3]}`;
    if (!name) continue;
    const w: WeightTensor = { name, file: t.file, dtype: t.type, shape: t.shape, offset: t.offset, bytes: t.bytes };
    if (permuted && m && (m[2] === "attn_q" || m[2] === "attn_k") && m[3] === "weight") {
      w.data = unpermuteRows(t, m[2] === "attn_q" ? cfg.heads : cfg.kvHeads);
    }
    out.set(name, w);
  }
  return out;
}

function unpermuteRows(t: GgufTensor, heads: number): Uint8Array {
  const src = new Uint8Array(t.bytes);
  readTensorBytes(t, 0, src, t.bytes);
  const rows = t.shape[0];
  const D = rows / heads;
  const rb = t.bytes / rows;
  const out = new Uint8Array(t.bytes);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < D / 2; i++) {
        const from = h * D + 2 * i + j, to = h * D + j * (D / 2) + i;
        out.set(src.subarray(from * rb, (from + 1) * rb), to * rb);
      }
    }
  }
  return out;
}

// --- tokenizer ---

/** Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` names (llama-vocab.cpp). */
const PRE_REGEX: Record<string, string> = {
  "llama-bpe": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
};
PRE_REGEX.default = PRE_REGEX.gpt2;

/** llama.cpp token types */
const CONTROL = 3, USER_DEFINED = 4;

/**
 * An HF tokenizer.json (and the tokenizer_config fields kvc reads) built from the GGUF
 * metadata: "gpt2" files are byte-level BPE with their merges and pre-tokenizer;
 * "llama" files are SentencePiece vocabularies with scores, turned into BPE merges the
 * way transformers' GGUF loader does (a pair merges with the score of the piece it
 * makes, highest first), with byte fallback.
 */
export function ggufTokenizer(g: GgufModel): TextTokenizer {
  const model = g.meta["tokenizer.ggml.model"];
  const tokens = metaArray(g, "tokenizer.ggml.tokens") as string[] | null;
  if (!tokens) throw new Error(`${g.file}: no tokenizer.ggml.tokens in the metadata`);
  const types = (metaArray(g, "tokenizer.ggml.token_type") ?? []).map(Number);
  const tok = (key: string) => {
    const id = g.meta[`tokenizer.ggml.${key}`];
    return id === undefined ? null : tokens[Number(id)] ?? null;
  };
  const bos = tok("bos_token_id"), eos = tok("eos_token_id"), unk = tok("unknown_token_id");
  const addBos = g.meta["tokenizer.ggml.add_bos_token"] ?? model === "llama";
  const added = tokens.flatMap((content, id) => (types[id] === CONTROL || types[id] === USER_DEFINED
    ? [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[id] === CONTROL }] : []));
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const post = addBos && bos
    ? { type: "TemplateProcessing", single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }], special_tokens: { [bos]: { id: bos, ids: [vocab[bos]], tokens: [bos] } } }
    : null;
  let json: Record<string, unknown>;
  if (model === "gpt2") {
    const pre = String(g.meta["tokenizer.ggml.pre"] ?? "default");
    const regex = PRE_REGEX[pre];
    if (!regex) throw new Error(`${g.file}: tokenizer.ggml.pre "${pre}" is not supported; kvc knows ${Object.keys(PRE_REGEX).join(", ")}`);
    const merges = (metaArray(g, "tokenizer.ggml.merges") ?? []) as string[];
    json = {
      version: "1.0", added_tokens: added, normalizer: null,
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
      post_processor: post,
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: pre === "llama-bpe", vocab, merges },
    };
  } else if (model === "llama") {
    const scores = (metaArray(g, "tokenizer.ggml.scores") ?? []).map(Number);
    json = {
      version: "1.0", added_tokens: added,
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
      pre_tokenizer: null,
      post_processor: post,
      decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
      model: { type: "BPE", dropout: null, unk_token: unk, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: spmMerges(tokens, scores, types) },
    };
  } else {
    throw new Error(`${g.file}: tokenizer.ggml.model "${model}" is not supported (gpt2 BPE and llama SentencePiece only)`);
  }
  const template = g.meta["tokenizer.chat_template"];
  return new TextTokenizer(json, { bos_token: bos, eos_token: eos, chat_template: typeof template === "string" ? template : undefined });
}

/** BPE merges of a SentencePiece vocabulary: every split of a normal piece into two pieces, by the piece's score. */
function spmMerges(tokens: string[], scores: number[], types: number[]): [string, string][] {
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const merges: [[string, string], number, number][] = [];
  tokens.forEach((t, id) => {
    if (types[id] !== undefined && types[id] !== 1) return; // normal pieces only
    const chars = [...t];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join(""), r = chars.slice(i).join("");
      const li = ids.get(l), ri = ids.get(r);
      if (li !== undefined && ri !== undefined) merges.push([[l, r], scores[id] ?? 0, li * tokens.length + ri]);
    }
  });
  merges.sort((a, b) => b[1] - a[1] || a[2] - b[2]);
  return merges.map((m) => m[0]);
}
