// ModelConfig: the blueprint read from an HF folder's config.json and
// generation_config.json. Only Llama-family decoder-only architectures.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface ModelConfig {
  arch: string;
  hidden: number; // d_model
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number; // SwiGLU intermediate size
  vocab: number;
  maxContext: number;
  normEps: number;
  ropeTheta: number;
  /** inverse frequencies per rotary pair, f32, with llama3 scaling applied */
  invFreq: Float32Array<ArrayBuffer>;
  qkvBias: boolean;
  tiedEmbeddings: boolean;
  bosId: number | null;
  eosIds: number[];
}

const SUPPORTED = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

export function readJson(path: string): any {
  if (!existsSync(path)) throw new Error(`missing file ${path}`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function ids(v: unknown): number[] {
  if (v === null || v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x) => typeof x === "number");
}

export function loadConfig(dir: string): ModelConfig {
  const path = join(dir, "config.json");
  const c = readJson(path);
  const arch = (c.architectures ?? [])[0] ?? "";
  if (!SUPPORTED.includes(arch)) {
    throw new Error(`${path}: architecture "${arch || "(none)"}" is not supported; kvc runs ${SUPPORTED.join(", ")}`);
  }
  const need = (k: string) => {
    if (typeof c[k] !== "number") throw new Error(`${path}: "${k}" must be a number`);
    return c[k] as number;
  };
  const hidden = need("hidden_size");
  const heads = need("num_attention_heads");
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = c.head_dim ?? hidden / heads;
  if (heads % kvHeads !== 0) throw new Error(`${path}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  // kernels/rope_append.wgsl writes two packed f16 pairs per thread
  if (headDim % 4 !== 0) throw new Error(`${path}: head_dim ${headDim} must be a multiple of 4`);
  if (c.hidden_act && c.hidden_act !== "silu") throw new Error(`${path}: hidden_act "${c.hidden_act}" is not supported (silu only)`);
  const rope = c.rope_scaling ?? null;
  const ropeParams = c.rope_parameters ?? {};
  const ropeTheta = c.rope_theta ?? ropeParams.rope_theta ?? 10000;
  const scaling = rope ?? (ropeParams.rope_type && ropeParams.rope_type !== "default" ? ropeParams : null);
  const invFreq = ropeInvFreq(headDim, ropeTheta, scaling, path);
  let gen: any = {};
  const genPath = join(dir, "generation_config.json");
  if (existsSync(genPath)) gen = readJson(genPath);
  const eos = new Set([...ids(gen.eos_token_id), ...ids(c.eos_token_id)]);
  return {
    arch,
    hidden,
    layers: need("num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    ffn: need("intermediate_size"),
    vocab: need("vocab_size"),
    maxContext: c.max_position_embeddings ?? 2048,
    normEps: c.rms_norm_eps ?? 1e-6,
    ropeTheta,
    invFreq,
    qkvBias: arch === "Qwen2ForCausalLM" || c.attention_bias === true,
    tiedEmbeddings: c.tie_word_embeddings ?? false,
    bosId: ids(gen.bos_token_id ?? c.bos_token_id)[0] ?? null,
    eosIds: [...eos],
  };
}

/**
 * HF `_compute_default_rope_parameters` and `_compute_llama3_parameters`, in f32 as
 * transformers computes them.
 */
export function ropeInvFreq(dim: number, theta: number, scaling: any, path = "config.json"): Float32Array<ArrayBuffer> {
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / dim);
  const type = scaling?.rope_type ?? scaling?.type;
  if (!scaling || type === "default") return inv;
  if (type !== "llama3") throw new Error(`${path}: rope_scaling type "${type}" is not supported (llama3 only)`);
  const factor = scaling.factor;
  const low = scaling.low_freq_factor;
  const high = scaling.high_freq_factor;
  const orig = scaling.original_max_position_embeddings;
  const lowWavelen = orig / low;
  const highWavelen = orig / high;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
    else if (wavelen >= highWavelen) {
      const smooth = (orig / wavelen - low) / (high - low);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
  return inv;
}
