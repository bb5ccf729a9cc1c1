// A Llama decoder with past key/values as an ONNX graph, written from a ModelConfig and
// a weight source; onnxruntime does all the math, so it is an implementation of the
// model independent of kvc's kernels (the oracle in tests/ort-oracle.test.ts) and the
// engine a transformers.js user gets (the peer row, bench/ort/ort-bench.ts).
//
// Inputs and outputs follow the decoder-with-past layout that Optimum and the
// onnxruntime-genai builder give transformers.js:
//   input_ids                 int64 (batch, seq)
//   attention_mask            int64 (batch, past + seq)   all ones: no padding
//   past_key_values.{i}.key   T (batch, kv_heads, past, head_dim)   (and .value); past may be 0
//   logits                    T (batch, 1, vocab)          the last position only
//   present.{i}.key           T (batch, kv_heads, past + seq, head_dim)   (and .value)
// with the operators the genai builder uses, which onnxruntime's CPU (wasm) and WebGPU
// providers both implement: SimplifiedLayerNormalization (RMSNorm, f32 inside),
// SkipSimplifiedLayerNormalization (residual add + RMSNorm), GroupQueryAttention
// (com.microsoft; RoPE inside from cos/sin tables, past + new keys into present, causal).
// Unlike Optimum there is no position_ids input (GQA counts positions from the mask) and
// logits are computed for the last position only, as generation reads them.
import { onnx } from "onnx-proto";
import type { ModelConfig } from "../../src/model/config.ts";
import { f32ToF16Bits } from "../../src/model/f16.ts";

export type OnnxDType = "f32" | "f16";

/** A weight in the graph's dtype: f32 as Float32Array, f16 as the raw bits. */
export type WeightData = Float32Array | Uint16Array;

/**
 * Where weights come from, by HF name ("model.layers.0.self_attn.q_proj.weight"), in HF
 * layout: linear weights (out, in). `transposed` asks for (in, out), as MatMul wants.
 */
export interface WeightSource {
  get(name: string, dims: number[], transposed: boolean): WeightData;
}

export interface LlamaOnnxOptions {
  dtype: OnnxDType;
  /** positions the RoPE tables cover (the longest past + seq a session may run) */
  maxPositions: number;
  /**
   * Weights past this many bytes go to external data blobs (protobuf caps a model at
   * 2 GiB): each blob at most `blobBytes`, named as transformers.js looks for them:
   * `${modelName}_data`, `${modelName}_data_1`, ... Default: all inline.
   */
  externalAboveBytes?: number;
  blobBytes?: number;
  /** the .onnx file's name (default "model.onnx") */
  modelName?: string;
}

export interface LlamaOnnx {
  /** the ModelProto bytes */
  model: Uint8Array;
  /** external data, in the shape InferenceSession.create's `externalData` option takes */
  externalData: { path: string; data: Uint8Array }[];
  inputNames: string[];
  outputNames: string[];
}

const T = onnx.TensorProto.DataType;
const A = onnx.AttributeProto.AttributeType;

/** Graph builder state: nodes, initializers (possibly external) and a name counter. */
class Graph {
  nodes: onnx.INodeProto[] = [];
  inits: onnx.ITensorProto[] = [];
  blobs: { path: string; data: Uint8Array }[] = [];
  private blobParts: Uint8Array[] = [];
  private blobUsed = 0;
  private n = 0;
  constructor(private o: LlamaOnnxOptions) {}

  node(op: string, inputs: string[], outs: number | string[], attrs: Record<string, number | number[]> = {}, domain = ""): string[] {
    const output = typeof outs === "number" ? Array.from({ length: outs }, () => `${op}_${this.n++}`) : outs;
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v) ? { name, type: A.INTS, ints: v }
        : Number.isInteger(v) && !FLOAT_ATTRS.has(name) ? { name, type: A.INT, i: v }
        : { name, type: A.FLOAT, f: v });
    this.nodes.push({ opType: op, domain, input: inputs, output, attribute, name: `${op}_${this.n++}` });
    return output;
  }
  one(op: string, inputs: string[], attrs: Record<string, number | number[]> = {}, domain = ""): string {
    return this.node(op, inputs, 1, attrs, domain)[0];
  }

  /** A constant tensor; big ones go to external blobs when the options ask for it. */
  init(name: string, dims: number[], dataType: number, bytes: Uint8Array): string {
    const t: onnx.ITensorProto = { name, dims, dataType };
    const ext = this.o.externalAboveBytes;
    if (ext === undefined || bytes.byteLength <= ext) {
      t.rawData = bytes;
    } else {
      const cap = this.o.blobBytes ?? 2 ** 30;
      if (this.blobUsed + bytes.byteLength > cap && this.blobParts.length) this.flushBlob();
      const path = this.blobName(this.blobs.length);
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      t.externalData = [
        { key: "location", value: path },
        { key: "offset", value: String(this.blobUsed) },
        { key: "length", value: String(bytes.byteLength) },
      ];
      this.blobParts.push(bytes);
      this.blobUsed += bytes.byteLength;
    }
    this.inits.push(t);
    return name;
  }
  blobName(i: number): string {
    return `${this.o.modelName ?? "model.onnx"}_data${i ? `_${i}` : ""}`;
  }
  flushBlob() {
    if (!this.blobParts.length) return;
    const data = new Uint8Array(this.blobUsed);
    let at = 0;
    for (const p of this.blobParts) data.set(p, at), (at += p.byteLength);
    this.blobs.push({ path: this.blobName(this.blobs.length), data });
    this.blobParts = [];
    this.blobUsed = 0;
  }
}
const FLOAT_ATTRS = new Set(["epsilon", "scale", "alpha", "beta"]);

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function valueInfo(name: string, elemType: number, dims: (number | string)[]): onnx.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

/** RoPE tables (max_positions, head_dim / 2): cos and sin of position * inv_freq, in f64 then rounded. */
function ropeTables(c: ModelConfig, positions: number, dtype: OnnxDType): [WeightData, WeightData] {
  const half = c.headDim / 2;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * c.invFreq[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return dtype === "f32" ? [cos, sin] : [toF16(cos), toF16(sin)];
}

export function toF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16Bits(x[i]);
  return out;
}

export const pastName = (layer: number, kv: "key" | "value") => `past_key_values.${layer}.${kv}`;
export const presentName = (layer: number, kv: "key" | "value") => `present.${layer}.${kv}`;

/** Builds the graph. Weight names are Hugging Face's LlamaForCausalLM names. */
export function buildLlamaOnnx(c: ModelConfig, weights: WeightSource, o: LlamaOnnxOptions): LlamaOnnx {
  if (c.qkvBias) throw new Error("llama-onnx: attention biases (Qwen2) are not built");
  const g = new Graph(o);
  const et = o.dtype === "f32" ? T.FLOAT : T.FLOAT16;
  const H = c.hidden, D = c.headDim, KV = c.kvHeads * D, Q = c.heads * D;
  const w = (name: string, dims: number[], transposed = false) => {
    const data = weights.get(name, dims, transposed);
    const want = dims.reduce((a, b) => a * b, 1);
    if (data.length !== want) throw new Error(`llama-onnx: ${name} has ${data.length} values, expected ${want}`);
    return g.init(name, transposed ? [dims[1], dims[0]] : dims, et, bytesOf(data));
  };
  const i64 = (name: string, v: number[]) => g.init(name, [v.length], T.INT64, bytesOf(BigInt64Array.from(v.map(BigInt))));
  const i64Scalar = (name: string, v: number) => g.init(name, [], T.INT64, bytesOf(BigInt64Array.of(BigInt(v))));
  const eps = c.normEps;

  // GQA's lengths from the mask: seqlens_k = tokens per row - 1, total = mask width
  const one = i64("one_i64", [1]);
  const sum = g.one("ReduceSum", ["attention_mask", i64("axis_1", [1])], { keepdims: 0 });
  const seqlensK = g.one("Cast", [g.one("Sub", [sum, one])], { to: T.INT32 });
  const width = g.one("Gather", [g.one("Shape", ["attention_mask"]), i64Scalar("index_1", 1)], { axis: 0 });
  const totalLen = g.one("Cast", [width], { to: T.INT32 });
  const [cosT, sinT] = ropeTables(c, o.maxPositions, o.dtype);
  const cos = g.init("cos_cache", [o.maxPositions, D / 2], et, bytesOf(cosT));
  const sin = g.init("sin_cache", [o.maxPositions, D / 2], et, bytesOf(sinT));

  const embed = w("model.embed_tokens.weight", [c.vocab, H]);
  let h = g.one("Gather", [embed, "input_ids"], { axis: 0 }); // (batch, seq, hidden)
  let x = g.one("SimplifiedLayerNormalization", [h, w("model.layers.0.input_layernorm.weight", [H])], { axis: -1, epsilon: eps, stash_type: 1 });
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    // attention: q, k, v projections; GQA applies RoPE, appends to the past, attends causally
    const q = g.one("MatMul", [x, w(`${p}.self_attn.q_proj.weight`, [Q, H], true)]);
    const k = g.one("MatMul", [x, w(`${p}.self_attn.k_proj.weight`, [KV, H], true)]);
    const v = g.one("MatMul", [x, w(`${p}.self_attn.v_proj.weight`, [KV, H], true)]);
    const [att] = g.node("GroupQueryAttention",
      [q, k, v, pastName(l, "key"), pastName(l, "value"), seqlensK, totalLen, cos, sin],
      [`attn_${l}`, presentName(l, "key"), presentName(l, "value")],
      { num_heads: c.heads, kv_num_heads: c.kvHeads, do_rotary: 1, rotary_interleaved: 0, scale: 1 / Math.sqrt(D) }, "com.microsoft");
    const ao = g.one("MatMul", [att, w(`${p}.self_attn.o_proj.weight`, [H, Q], true)]);
    // residual add + post-attention RMSNorm in one node: outputs (normed, -, -, sum)
    const [xm, , , hm] = g.node("SkipSimplifiedLayerNormalization", [ao, h, w(`${p}.post_attention_layernorm.weight`, [H])], 4, { epsilon: eps }, "com.microsoft");
    // SwiGLU MLP: down(silu(gate x) * up x)
    const gate = g.one("MatMul", [xm, w(`${p}.mlp.gate_proj.weight`, [c.ffn, H], true)]);
    const up = g.one("MatMul", [xm, w(`${p}.mlp.up_proj.weight`, [c.ffn, H], true)]);
    const act = g.one("Mul", [g.one("Mul", [gate, g.one("Sigmoid", [gate])]), up]);
    const down = g.one("MatMul", [act, w(`${p}.mlp.down_proj.weight`, [H, c.ffn], true)]);
    const nextNorm = l + 1 < c.layers ? `model.layers.${l + 1}.input_layernorm.weight` : "model.norm.weight";
    [x, , , h] = g.node("SkipSimplifiedLayerNormalization", [down, hm, w(nextNorm, [H])], 4, { epsilon: eps }, "com.microsoft");
  }
  // logits of the last position: (batch, hidden) x lm_head (vocab, hidden)^T
  const lastRow = g.one("Gather", [x, g.init("index_last", [], T.INT64, bytesOf(BigInt64Array.of(-1n)))], { axis: 1 });
  const head = c.tiedEmbeddings ? embed : w("lm_head.weight", [c.vocab, H]);
  const logits2 = g.one("Gemm", [lastRow, head], { transB: 1 });
  g.node("Unsqueeze", [logits2, i64("axis_1b", [1])], ["logits"]);
  g.flushBlob();

  // Optimum's dimension names: transformers.js sizes the empty first past from them
  const pastDims = ["batch_size", c.kvHeads, "past_sequence_length", D];
  const presentDims = ["batch_size", c.kvHeads, "total_sequence_length", D];
  const layersKv = (f: (l: number, kv: "key" | "value") => onnx.IValueInfoProto) =>
    Array.from({ length: c.layers }, (_, l) => [f(l, "key"), f(l, "value")]).flat();
  const inputs = [
    valueInfo("input_ids", T.INT64, ["batch_size", "sequence_length"]),
    valueInfo("attention_mask", T.INT64, ["batch_size", "total_sequence_length"]),
    ...layersKv((l, kv) => valueInfo(pastName(l, kv), et, pastDims)),
  ];
  const outputs = [
    valueInfo("logits", et, ["batch_size", 1, c.vocab]),
    ...layersKv((l, kv) => valueInfo(presentName(l, kv), et, presentDims)),
  ];
  const graph: onnx.IGraphProto = { name: "llama", node: g.nodes, initializer: g.inits, input: inputs, output: outputs };
  const model = onnx.ModelProto.encode({
    irVersion: 10,
    producerName: "kvc bench/ort/llama-onnx.ts",
    opsetImport: [{ domain: "", version: 21 }, { domain: "com.microsoft", version: 1 }],
    graph,
  }).finish();
  return {
    model,
    externalData: g.blobs,
    inputNames: inputs.map((i) => i.name!),
    outputNames: outputs.map((i) => i.name!),
  };
}
