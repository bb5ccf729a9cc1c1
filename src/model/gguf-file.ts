// GGUF files: the header, metadata and tensor table read through @huggingface/gguf
// (range reads, never the whole file) and checked before anything goes to the GPU;
// and a small writer (fixtures, tests). Tensor data is read later, in chunks, through
// readTensorBytes (src/model/safetensors.ts).
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { gguf, GGMLQuantizationType } from "@huggingface/gguf";
import { QUANT, rowBytes, type QuantType } from "./quant.ts";

/** Tensor types kvc reads: plain floats, or a block format of src/model/quant.ts. */
export type GgufType = "F32" | "F16" | "BF16" | QuantType;
const TYPE_IDS: Record<number, GgufType> = { 0: "F32", 1: "F16", 30: "BF16" };
for (const [t, f] of Object.entries(QUANT)) TYPE_IDS[f.ggml] = t as QuantType;
export const GGUF_TYPE_ID = Object.fromEntries(Object.entries(TYPE_IDS).map(([id, t]) => [t, Number(id)])) as Record<GgufType, number>;

export interface GgufTensor {
  name: string;
  file: string;
  type: GgufType;
  /** rows, cols (cols = ggml's ne0, the contiguous one); vectors: [n] */
  shape: number[];
  /** absolute byte offset of the data in `file` */
  offset: number;
  bytes: number;
}

export interface GgufModel {
  file: string;
  meta: Record<string, unknown>;
  tensors: Map<string, GgufTensor>;
}

/** Bytes of a tensor of type t with rows x cols elements (cols a whole number of blocks). */
export function tensorBytes(t: GgufType, shape: number[]): number {
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  if (t === "F32") return rows * cols * 4;
  if (t === "F16" || t === "BF16") return rows * cols * 2;
  return rows * rowBytes(t, cols);
}

function typeName(id: number): string {
  return (GGMLQuantizationType as unknown as Record<number, string>)[id] ?? `type ${id}`;
}

/**
 * Reads and checks a GGUF file's header: the magic, every tensor's type (one kvc
 * reads), its shape against its block size, and its data inside the file and apart
 * from the next tensor's. Throws an error naming the file and tensor otherwise.
 */
export async function readGguf(file: string): Promise<GgufModel> {
  const fd = openSync(file, "r");
  let size: number;
  let count: number;
  try {
    size = fstatSync(fd).size;
    const head = new Uint8Array(24);
    const n = readSync(fd, head, 0, 24, 0);
    const text = new TextDecoder().decode(head.subarray(0, Math.min(n, 4)));
    if (text !== "GGUF") throw new Error(`${file}: not a GGUF file (magic ${JSON.stringify(text)}, expected "GGUF")`);
    if (n < 24) throw new Error(`${file}: GGUF header is truncated (${size} bytes)`);
    count = Number(new DataView(head.buffer).getBigUint64(8, true));
  } finally {
    closeSync(fd);
  }
  let parsed: Awaited<ReturnType<typeof gguf>>;
  try {
    parsed = await gguf(file, { allowLocalFile: true });
  } catch (e) {
    throw new Error(`${file}: GGUF header is truncated or corrupt (${(e as Error).message})`);
  }
  // the parser reads short past the end of a file without failing: check where it ended
  if (parsed.tensorInfos.length !== count || parsed.tensorInfoByteRange[1] > size) {
    throw new Error(`${file}: GGUF header is truncated or corrupt (its tensor table of ${count} tensors ends past the end of the file at ${size} bytes)`);
  }
  const base = Number(parsed.tensorDataOffset);
  const tensors = new Map<string, GgufTensor>();
  for (const ti of parsed.tensorInfos) {
    const type = TYPE_IDS[ti.dtype];
    if (!type) {
      throw new Error(`${file}: tensor ${ti.name} has type ${typeName(ti.dtype)}; kvc reads F32, F16, BF16, ${Object.keys(QUANT).map((t) => t.toUpperCase()).join(", ")}`);
    }
    const shape = ti.shape.map(Number).reverse();
    const cols = shape[shape.length - 1];
    if (type in QUANT && cols % QUANT[type as QuantType].block) {
      throw new Error(`${file}: tensor ${ti.name} has rows of ${cols} values, not whole ${type.toUpperCase()} blocks of ${QUANT[type as QuantType].block}`);
    }
    tensors.set(ti.name, { name: ti.name, file, type, shape, offset: base + Number(ti.offset), bytes: tensorBytes(type, shape) });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
  sorted.forEach((t, i) => {
    const next = sorted[i + 1];
    if (t.offset + t.bytes > size) {
      throw new Error(`${file}: tensor ${t.name} (${t.type.toUpperCase()} [${t.shape}], ${t.bytes} bytes) runs past the end of the file at ${size} bytes (truncated download?)`);
    }
    if (next && t.offset + t.bytes > next.offset) {
      throw new Error(`${file}: tensor ${t.name} (${t.type.toUpperCase()} [${t.shape}]) needs ${t.bytes} bytes but the next tensor starts ${next.offset - t.offset} bytes after it: its size does not match its shape`);
    }
  });
  return { file, meta: parsed.metadata as Record<string, unknown>, tensors };
}

// --- writer ---

/** A metadata value with its GGUF type; arrays hold one element type. */
export type GgufValue =
  | { type: "u32" | "i32" | "f32" | "bool" | "string"; value: number | boolean | string }
  | { type: "array"; of: "u32" | "i32" | "f32" | "string"; value: (number | string)[] };

const VALUE_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
const ALIGN = 32;

export interface GgufTensorData {
  name: string;
  type: GgufType;
  /** rows, cols as in GgufTensor */
  shape: number[];
  /** the bytes, or a function making them when they are written (big files stay out of memory) */
  data: Uint8Array | (() => Uint8Array);
}

class ByteSink {
  private parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array) {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(x: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x, true);
    this.push(b);
  }
  u64(x: number) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(x), true);
    this.push(b);
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: "u32" | "i32" | "f32" | "bool" | "string", v: number | boolean | string) {
    const b = new Uint8Array(4);
    const dv = new DataView(b.buffer);
    if (type === "string") return this.str(v as string);
    if (type === "bool") return this.push(new Uint8Array([v ? 1 : 0]));
    if (type === "u32") dv.setUint32(0, v as number, true);
    else if (type === "i32") dv.setInt32(0, v as number, true);
    else dv.setFloat32(0, v as number, true);
    this.push(b);
  }
  pad() {
    const n = (ALIGN - (this.length % ALIGN)) % ALIGN;
    if (n) this.push(new Uint8Array(n));
  }
  bytes(): Uint8Array[] {
    return this.parts;
  }
}

/** Writes a GGUF v3 file: metadata in the given order, then tensors, each 32-byte aligned. */
export function writeGguf(file: string, meta: [string, GgufValue][], tensors: GgufTensorData[]) {
  const h = new ByteSink();
  h.push(new TextEncoder().encode("GGUF"));
  h.u32(3);
  h.u64(tensors.length);
  h.u64(meta.length);
  for (const [key, v] of meta) {
    h.str(key);
    h.u32(VALUE_TYPE[v.type]);
    if (v.type === "array") {
      h.u32(VALUE_TYPE[v.of]);
      h.u64(v.value.length);
      for (const x of v.value) h.scalar(v.of, x);
    } else h.scalar(v.type, v.value);
  }
  let offset = 0;
  for (const t of tensors) {
    h.str(t.name);
    h.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) h.u64(d);
    h.u32(GGUF_TYPE_ID[t.type]);
    h.u64(offset);
    offset += Math.ceil(tensorBytes(t.type, t.shape) / ALIGN) * ALIGN;
  }
  h.pad();
  const fd = openSync(file, "w");
  try {
    for (const b of h.bytes()) writeSync(fd, b);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const want = tensorBytes(t.type, t.shape);
      if (data.length !== want) throw new Error(`${t.name}: ${data.length} bytes for ${t.type} [${t.shape}], expected ${want}`);
      writeSync(fd, data);
      const pad = (ALIGN - (data.length % ALIGN)) % ALIGN;
      if (pad) writeSync(fd, new Uint8Array(pad));
    }
  } finally {
    closeSync(fd);
  }
}
