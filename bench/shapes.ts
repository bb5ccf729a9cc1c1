// Model shapes for benchmarks: real ones (from the models' config.json) and a tiny
// one for CPU Vulkan tests, turned into a ModelConfig without any files.
import { ropeInvFreq, type ModelConfig } from "../src/model/config.ts";

/** A model's shape without files: what benchmarks need to build one with random weights. */
export interface ModelShape {
  name: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  tiedEmbeddings: boolean;
  ropeTheta: number;
  ropeScaling: Record<string, unknown> | null;
  normEps: number;
}

const LLAMA3_EOS = [128001, 128008, 128009];

/** Real shapes (from the models' config.json) and a tiny one for CPU Vulkan tests. */
export const SHAPES: Record<string, ModelShape> = {
  "llama-3.2-1b": {
    name: "llama-3.2-1b", hidden: 2048, layers: 16, heads: 32, kvHeads: 8, headDim: 64, ffn: 8192, vocab: 128256,
    tiedEmbeddings: true, ropeTheta: 500000, normEps: 1e-5,
    ropeScaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  "llama-3.1-8b": {
    name: "llama-3.1-8b", hidden: 4096, layers: 32, heads: 32, kvHeads: 8, headDim: 128, ffn: 14336, vocab: 128256,
    tiedEmbeddings: false, ropeTheta: 500000, normEps: 1e-5,
    ropeScaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  tiny: {
    name: "tiny", hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, ffn: 128, vocab: 512,
    tiedEmbeddings: false, ropeTheta: 10000, normEps: 1e-5, ropeScaling: null,
  },
};
const ALIASES: Record<string, string> = { "1b": "llama-3.2-1b", "8b": "llama-3.1-8b" };

export function shapeByName(name: string): ModelShape {
  const s = SHAPES[ALIASES[name] ?? name];
  if (!s) throw new Error(`unknown model shape "${name}"; known: ${[...Object.keys(ALIASES), ...Object.keys(SHAPES)].join(", ")}`);
  return s;
}

/** The config of a shape, with `maxContext` chosen by the caller (it sizes the block table). */
export function configFromShape(s: ModelShape, maxContext: number): ModelConfig {
  if (s.heads % s.kvHeads !== 0) throw new Error(`shape ${s.name}: heads ${s.heads} is not a multiple of kv heads ${s.kvHeads}`);
  return {
    arch: "LlamaForCausalLM",
    hidden: s.hidden,
    layers: s.layers,
    heads: s.heads,
    kvHeads: s.kvHeads,
    headDim: s.headDim,
    ffn: s.ffn,
    vocab: s.vocab,
    maxContext,
    normEps: s.normEps,
    ropeTheta: s.ropeTheta,
    invFreq: ropeInvFreq(s.headDim, s.ropeTheta, s.ropeScaling, `shape ${s.name}`),
    qkvBias: false,
    tiedEmbeddings: s.tiedEmbeddings,
    bosId: s.vocab > 128000 ? 128000 : null,
    eosIds: s.vocab > 128000 ? LLAMA3_EOS : [],
  };
}
