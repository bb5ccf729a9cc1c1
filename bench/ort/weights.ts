// Weight sources for bench/ort/llama-onnx.ts: an HF folder's safetensors (the oracle,
// the export script) and seeded random values at a model shape (the peer benchmark).
import { f16BitsToF32, bf16BitsToF32 } from "../../src/model/f16.ts";
import { listTensors, readTensorBytes } from "../../src/model/safetensors.ts";
import { toF16, type OnnxDType, type WeightData, type WeightSource } from "./llama-onnx.ts";

/** (rows, cols) -> (cols, rows) */
function transpose<A extends WeightData>(a: A, rows: number, cols: number, make: (n: number) => A): A {
  const out = make(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** The tensors of an HF folder (F32, F16 or BF16) in the graph's dtype. */
export function safetensorsSource(dir: string, dtype: OnnxDType): WeightSource {
  const tensors = listTensors(dir);
  return {
    get(name, dims, transposed) {
      const t = tensors.get(name);
      if (!t) throw new Error(`${dir}: no tensor ${name}`);
      if (t.shape.join(",") !== dims.join(",")) throw new Error(`${dir}: ${name} has shape ${t.shape}, expected ${dims}`);
      const raw = new Uint8Array(t.bytes);
      readTensorBytes(t, 0, raw, t.bytes);
      let f32: Float32Array;
      if (t.dtype === "F32") f32 = new Float32Array(raw.buffer);
      else {
        const bits = new Uint16Array(raw.buffer);
        if (t.dtype === "F16" && dtype === "f16") {
          return transposed ? transpose(bits, dims[0], dims[1], (n) => new Uint16Array(n)) : bits;
        }
        const conv = t.dtype === "F16" ? f16BitsToF32 : bf16BitsToF32;
        f32 = new Float32Array(bits.length);
        for (let i = 0; i < bits.length; i++) f32[i] = conv(bits[i]);
      }
      if (transposed) f32 = transpose(f32, dims[0], dims[1], (n) => new Float32Array(n));
      return dtype === "f32" ? f32 : toF16(f32);
    },
  };
}

/**
 * Seeded random weights: norms 1, everything else uniform in +-0.5/sqrt(fan-in) (so
 * activations stay in f16 range through deep stacks), as f16 bits or f32. Speed, not
 * meaning: a 1B model is 1.2e9 values, so each tensor repeats a random block of 2^20.
 */
export function randomSource(seed: number, dtype: OnnxDType): WeightSource {
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return {
    get(name, dims) {
      const n = dims.reduce((a, b) => a * b, 1);
      const isNorm = dims.length === 1;
      const scale = 0.5 / Math.sqrt(dims[dims.length - 1]);
      const block = new Float32Array(Math.min(n, 2 ** 20));
      for (let i = 0; i < block.length; i++) block[i] = isNorm ? 1 : (2 * next() - 1) * scale;
      const b = dtype === "f32" ? block : toF16(block);
      const out = dtype === "f32" ? new Float32Array(n) : new Uint16Array(n);
      for (let at = 0; at < n; at += b.length) out.set(at + b.length <= n ? b : b.subarray(0, n - at), at);
      return out;
    },
  };
}
