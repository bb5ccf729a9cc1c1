// ModelWeights: read-only GPU tensors of a Llama-family model. Matrices are f16
// (packed pairs), K padded to a multiple of 8, q|k|v and gate|up fused by rows,
// and split into row shards that each fit one storage binding. A shard may instead
// hold block-quantized rows (GGUF; `quant` names the format, src/model/quant.ts).
import type { Gpu } from "../gpu/device.ts";
import { createStorage, uploadStorage, writeAligned } from "../gpu/buffers.ts";
import { cdiv, type KernelContext } from "../gpu/kernels.ts";
import type { ModelConfig } from "./config.ts";
import { toF16Bytes, toF32 } from "./f16.ts";
import { QUANT, rowWords, toGpuRows, type QuantType } from "./quant.ts";
import { readTensorBytes, type TensorInfo } from "./safetensors.ts";

/** A tensor to load: from a safetensors or GGUF file, or from `data` (rows already reordered on the host). */
export interface WeightTensor extends Omit<TensorInfo, "dtype"> {
  dtype: TensorInfo["dtype"] | QuantType;
  data?: Uint8Array;
}

export interface MatrixShard {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
  /** block format of the rows (kernels/quant.wgsl); f16 when absent */
  quant?: QuantType;
}
export interface Matrix {
  N: number; // output rows
  K: number; // padded input size (multiple of 8)
  shards: MatrixShard[];
}
export interface LayerWeights {
  ln1: GPUBuffer; // (hidden,) f32
  qkv: Matrix; // ((H + 2 KVH) D, hidden)
  qkvBias: GPUBuffer | null; // ((H + 2 KVH) D,) f32
  o: Matrix; // (hidden, H D)
  ln2: GPUBuffer; // (hidden,) f32
  gateUp: Matrix; // (2 F, hidden)
  down: Matrix; // (hidden, Fp)
}
export interface ModelWeights {
  embed: Matrix; // (vocab, hidden)
  layers: LayerWeights[];
  norm: GPUBuffer; // (hidden,) f32
  lmHead: Matrix; // (vocab, hidden), the embedding itself when tied
  bytes: number;
}

export const pad8 = (k: number) => Math.ceil(k / 8) * 8;
const CHUNK = 32 * 2 ** 20;

/** An uninitialized N x K f16 matrix (K padded to 8) in row shards that each fit one storage binding. */
export function allocMatrix(gpu: Gpu, label: string, N: number, K: number): Matrix {
  const Kp = pad8(K);
  const rowBytes = Kp * 2;
  const perShard = Math.max(1, Math.floor(gpu.limits.maxStorageBufferBindingSize / rowBytes));
  const shards: MatrixShard[] = [];
  for (let r = 0; r < N; r += perShard) {
    const n = Math.min(perShard, N - r);
    if (n * rowBytes > gpu.limits.maxBufferSize) throw new Error(`${label}: shard larger than the adapter's maxBufferSize`);
    shards.push({ buffer: createStorage(gpu.device, n * rowBytes, `${label}[${shards.length}]`), rowStart: r, rows: n });
  }
  return { N, K: Kp, shards };
}

class Loader {
  private staging: GPUBuffer | null = null;
  private chunk = new Uint8Array(CHUNK);
  loaded = 0;
  total = 0;
  bytes = 0;
  private lastDraw = 0;

  constructor(private gpu: Gpu, private kc: KernelContext, private tensors: Map<string, WeightTensor>, private dir: string) {
    for (const t of tensors.values()) this.total += t.bytes;
  }

  get(name: string, shape: number[]): WeightTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.dir}: tensor ${name} is missing from the model files`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${t.file}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t;
  }

  progress(n: number) {
    this.loaded += n;
    const out = (globalThis as any).process?.stderr;
    const now = Date.now();
    if (!out?.isTTY || (now - this.lastDraw < 100 && this.loaded < this.total)) return;
    this.lastDraw = now;
    const frac = this.total ? this.loaded / this.total : 1;
    const w = 30;
    const bar = "#".repeat(Math.round(frac * w)).padEnd(w, ".");
    out.write(`\rloading weights [${bar}] ${(this.loaded / 2 ** 20).toFixed(0)}/${(this.total / 2 ** 20).toFixed(0)} MiB`);
    if (this.loaded >= this.total) out.write("\n");
  }

  /** bytes [start, start + len) of a tensor into `dst` */
  private read(t: WeightTensor, start: number, dst: Uint8Array, len: number) {
    if (t.data) dst.set(t.data.subarray(start, start + len));
    else readTensorBytes(t, start, dst, len);
  }

  /** A float tensor's values (norms, biases); a quantized one is refused by name. */
  private floats(t: WeightTensor): Float32Array {
    if (t.dtype in QUANT) throw new Error(`${t.file}: tensor ${t.name} is ${t.dtype.toUpperCase()}; kvc reads vectors as F32, F16 or BF16`);
    const raw = new Uint8Array(t.bytes);
    this.read(t, 0, raw, t.bytes);
    this.progress(t.bytes);
    return toF32(raw, t.dtype as TensorInfo["dtype"]);
  }

  vector(name: string, len: number): GPUBuffer {
    const t = this.get(name, [len]);
    this.bytes += len * 4;
    return uploadStorage(this.gpu.device, this.floats(t), name);
  }

  vectors(names: string[], lens: number[]): GPUBuffer {
    const all = new Float32Array(lens.reduce((a, b) => a + b, 0));
    let off = 0;
    names.forEach((n, i) => {
      all.set(this.floats(this.get(n, [lens[i]])), off);
      off += lens[i];
    });
    this.bytes += all.byteLength;
    return uploadStorage(this.gpu.device, all, names.join("+"));
  }

  /**
   * Rows of several [rows_i, K] tensors stacked into one sharded matrix: f16, or, where
   * any of them is block-quantized, shards of each tensor's own format.
   */
  matrix(label: string, names: string[], rows: number[], K: number): Matrix {
    const ts = names.map((n, i) => this.get(n, [rows[i], K]));
    if (ts.some((t) => t.dtype in QUANT)) return this.mixedMatrix(label, ts, rows, K);
    const m = allocMatrix(this.gpu, label, rows.reduce((a, b) => a + b, 0), K);
    this.bytes += m.N * m.K * 2;
    let row0 = 0;
    ts.forEach((t, i) => {
      this.fill(m, t, row0, rows[i], K);
      row0 += rows[i];
    });
    return m;
  }

  /** Each tensor in its own shards: quantized rows as they are (GPU row layout), float ones as f16. */
  private mixedMatrix(label: string, ts: WeightTensor[], rows: number[], K: number): Matrix {
    const shards: MatrixShard[] = [];
    let row0 = 0;
    ts.forEach((t, i) => {
      if (t.dtype in QUANT) {
        for (const s of this.quantShards(`${label}[${i}]`, t, rows[i], K)) shards.push({ ...s, rowStart: row0 + s.rowStart });
      } else {
        const sub = allocMatrix(this.gpu, `${label}[${i}]`, rows[i], K);
        this.bytes += sub.N * sub.K * 2;
        this.fill(sub, t, 0, rows[i], K);
        for (const s of sub.shards) shards.push({ ...s, rowStart: row0 + s.rowStart });
      }
      row0 += rows[i];
    });
    return { N: row0, K: pad8(K), shards };
  }

  /** A quantized tensor's rows in shards that each fit one storage binding, streamed in chunks. */
  private quantShards(label: string, t: WeightTensor, N: number, K: number): MatrixShard[] {
    const quant = t.dtype as QuantType;
    const srcRow = t.bytes / N;
    const gpuRow = rowWords(quant, K) * 4;
    const perShard = Math.max(1, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / gpuRow));
    const perChunk = Math.max(1, Math.floor(CHUNK / srcRow));
    const shards: MatrixShard[] = [];
    for (let r = 0; r < N; r += perShard) {
      const rows = Math.min(perShard, N - r);
      const buffer = createStorage(this.gpu.device, rows * gpuRow, `${label}[${shards.length}]`);
      for (let c = 0; c < rows; c += perChunk) {
        const n = Math.min(perChunk, rows - c);
        const buf = n * srcRow <= this.chunk.length ? this.chunk : new Uint8Array(n * srcRow);
        this.read(t, (r + c) * srcRow, buf, n * srcRow);
        this.progress(n * srcRow);
        writeAligned(this.gpu.device, buffer, c * gpuRow, new Uint8Array(toGpuRows(quant, buf.subarray(0, n * srcRow), n, K).buffer));
      }
      this.bytes += rows * gpuRow;
      shards.push({ buffer, rowStart: r, rows, quant });
    }
    return shards;
  }

  /** Streams one tensor's rows into matrix rows [row0, row0 + nrows). */
  private fill(m: Matrix, t: WeightTensor, row0: number, nrows: number, K: number) {
    const eb = t.dtype === "F32" ? 4 : 2;
    const srcRow = K * eb;
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK / srcRow));
    for (let r = 0; r < nrows; r += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, nrows - r);
      const len = n * srcRow;
      const buf = len <= this.chunk.length ? this.chunk : new Uint8Array(len);
      this.read(t, r * srcRow, buf, len);
      this.progress(len);
      const bytes = buf.subarray(0, len);
      if (K !== m.K) {
        // odd K (e.g. an FFN of 172): pad each row with zeros on the host
        const vals = toF32(bytes, t.dtype as TensorInfo["dtype"]);
        const padded = new Float32Array(n * m.K);
        for (let i = 0; i < n; i++) padded.set(vals.subarray(i * K, (i + 1) * K), i * m.K);
        this.writeRows(m, row0 + r, n, (shard, off, a, b) => writeAligned(this.gpu.device, shard.buffer, off, toF16Bytes(padded.subarray(a * m.K, b * m.K))));
      } else if (t.dtype === "F16") {
        this.writeRows(m, row0 + r, n, (shard, off, a, b) => writeAligned(this.gpu.device, shard.buffer, off, bytes.subarray(a * srcRow, b * srcRow)));
      } else {
        this.writeRows(m, row0 + r, n, (shard, off, a, b) => this.convertOnGpu(bytes.subarray(a * srcRow, b * srcRow), t.dtype === "BF16", shard.buffer, off));
      }
    }
  }

  /** Splits rows [row, row + n) across shards; `write` gets (shard, byteOffset, localStart, localEnd). */
  private writeRows(m: Matrix, row: number, n: number, write: (s: MatrixShard, off: number, a: number, b: number) => void) {
    for (const s of m.shards) {
      const a = Math.max(row, s.rowStart);
      const b = Math.min(row + n, s.rowStart + s.rows);
      if (a >= b) continue;
      write(s, (a - s.rowStart) * m.K * 2, a - row, b - row);
    }
  }

  /** f32/bf16 bytes -> f16 pairs at byte offset `off` of `dst`, converted by kernels/convert.wgsl. */
  private convertOnGpu(src: Uint8Array, bf16: boolean, dst: GPUBuffer, off: number) {
    const device = this.gpu.device;
    this.staging ??= createStorage(device, CHUNK, "convert-staging");
    const outWords = bf16 ? src.byteLength / 4 : src.byteLength / 8;
    writeAligned(device, this.staging, 0, src);
    const k = this.kc.kernel("convert", { BF16: bf16 });
    const step = this.kc.step();
    const groups = cdiv(outWords, 256);
    const x = Math.min(groups, 65535);
    step.dispatch(k, [this.staging, dst], { n: outWords, offset: off / 4 }, [x, cdiv(groups, x)]);
    step.submit();
  }

  destroy() {
    this.staging?.destroy();
  }
}

/** Uploads a model's tensors (HF names; from safetensors or GGUF); `source` names them in errors. */
export function loadWeights(gpu: Gpu, kc: KernelContext, tensors: Map<string, WeightTensor>, source: string, cfg: ModelConfig): ModelWeights {
  const ld = new Loader(gpu, kc, tensors, source);
  const { hidden: Dm, heads: H, kvHeads: KVH, headDim: D, ffn: F, vocab: V } = cfg;
  if (Dm % 8 !== 0) throw new Error(`${source}: hidden size ${Dm} must be a multiple of 8`);
  if ((H * D) % 8 !== 0) throw new Error(`${source}: heads * head dim must be a multiple of 8`);
  try {
    const embed = ld.matrix("embed_tokens", ["model.embed_tokens.weight"], [V], Dm);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < cfg.layers; l++) {
      const p = `model.layers.${l}.`;
      layers.push({
        ln1: ld.vector(p + "input_layernorm.weight", Dm),
        qkv: ld.matrix(`L${l}.qkv`, ["q", "k", "v"].map((x) => `${p}self_attn.${x}_proj.weight`), [H * D, KVH * D, KVH * D], Dm),
        qkvBias: cfg.qkvBias ? ld.vectors(["q", "k", "v"].map((x) => `${p}self_attn.${x}_proj.bias`), [H * D, KVH * D, KVH * D]) : null,
        o: ld.matrix(`L${l}.o`, [p + "self_attn.o_proj.weight"], [Dm], H * D),
        ln2: ld.vector(p + "post_attention_layernorm.weight", Dm),
        gateUp: ld.matrix(`L${l}.gate_up`, [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], [F, F], Dm),
        down: ld.matrix(`L${l}.down`, [p + "mlp.down_proj.weight"], [Dm], F),
      });
    }
    const norm = ld.vector("model.norm.weight", Dm);
    let lmHead = embed;
    if (!cfg.tiedEmbeddings || tensors.has("lm_head.weight")) {
      lmHead = ld.matrix("lm_head", ["lm_head.weight"], [V], Dm);
    }
    return { embed, layers, norm, lmHead, bytes: ld.bytes };
  } finally {
    ld.destroy();
  }
}

export function destroyWeights(w: ModelWeights) {
  const mats = [w.embed, w.lmHead, ...w.layers.flatMap((l) => [l.qkv, l.o, l.gateUp, l.down])];
  for (const m of new Set(mats)) for (const s of m.shards) s.buffer.destroy();
  for (const l of w.layers) for (const b of [l.ln1, l.ln2, l.qkvBias]) b?.destroy();
  w.norm.destroy();
}
