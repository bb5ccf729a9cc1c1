// Greedy decoding with an onnxruntime-web session of bench/ort/llama-onnx.ts's graph:
// each run feeds the new tokens and the past key/values, and the presents it returns
// become the next past (on the GPU when the session keeps them there), as
// transformers.js does.
import type * as Ort from "onnxruntime-web";
import type { ModelConfig } from "../../src/model/config.ts";
import { f16BitsToF32 } from "../../src/model/f16.ts";
import { pastName, presentName, type OnnxDType } from "./llama-onnx.ts";

type OrtModule = typeof Ort;

/** Session options that keep every present on the GPU (and logits on the host). */
export function gpuPastOptions(c: ModelConfig): Record<string, "gpu-buffer" | "cpu"> {
  const loc: Record<string, "gpu-buffer" | "cpu"> = { logits: "cpu" };
  for (let l = 0; l < c.layers; l++) for (const kv of ["key", "value"] as const) loc[presentName(l, kv)] = "gpu-buffer";
  return loc;
}

export class OrtDecoder {
  private past = new Map<string, Ort.Tensor>();
  /** tokens in the past key/values */
  length = 0;

  constructor(private ort: OrtModule, private session: Ort.InferenceSession, private c: ModelConfig, private dtype: OnnxDType) {
    this.reset();
  }

  /** Empty past (0 positions); GPU presents from earlier runs are released. */
  reset() {
    for (const t of this.past.values()) if (t.location === "gpu-buffer") t.dispose();
    this.past.clear();
    const empty = this.dtype === "f32" ? new Float32Array(0) : new Uint16Array(0);
    for (let l = 0; l < this.c.layers; l++) {
      for (const kv of ["key", "value"] as const) {
        this.past.set(pastName(l, kv), new this.ort.Tensor(this.dtype === "f32" ? "float32" : "float16", empty, [1, this.c.kvHeads, 0, this.c.headDim]));
      }
    }
    this.length = 0;
  }

  /** Runs `ids` after the past; returns the logits of the last one (Float32Array, or Float16Array for f16). */
  async run(ids: number[]): Promise<ArrayLike<number>> {
    const total = this.length + ids.length;
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new this.ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: new this.ort.Tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
    };
    for (const [k, t] of this.past) feeds[k] = t;
    const out = await this.session.run(feeds);
    for (const t of this.past.values()) if (t.location === "gpu-buffer") t.dispose();
    for (let l = 0; l < this.c.layers; l++) {
      for (const kv of ["key", "value"] as const) this.past.set(pastName(l, kv), out[presentName(l, kv)]);
    }
    this.length = total;
    const data = out.logits.data;
    if (!(data instanceof Uint16Array)) return data as ArrayLike<number>;
    // f16 as raw bits where the runtime has no Float16Array
    return Float32Array.from(data, f16BitsToF32);
  }

  /** Greedy continuation: the prompt, then `n` tokens, each the argmax of the last logits. */
  async greedy(prompt: number[], n: number): Promise<{ ids: number[]; firstLogits: ArrayLike<number> }> {
    this.reset();
    let logits = await this.run(prompt);
    const firstLogits = logits;
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(argmax(logits));
      if (i + 1 < n) logits = await this.run([ids[i]]);
    }
    return { ids, firstLogits };
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
