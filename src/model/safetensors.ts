// safetensors reading without loading whole files: the JSON header is parsed, and
// tensor bytes are read in bounded chunks straight from the file descriptor.
import { closeSync, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { readJson } from "./config.ts";

export type DType = "F32" | "F16" | "BF16";
export interface TensorInfo {
  name: string;
  file: string;
  dtype: DType;
  shape: number[];
  /** absolute byte offset of the data in `file` */
  offset: number;
  bytes: number;
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

function readHeader(file: string): TensorInfo[] {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const lenBuf = new Uint8Array(8);
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${file}: too short to be safetensors`);
    const n = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
    if (n <= 0 || n > 100_000_000 || 8 + n > size) throw new Error(`${file}: bad safetensors header length ${n}`);
    const hb = new Uint8Array(n);
    readSync(fd, hb, 0, n, 8);
    let header: Record<string, any>;
    try {
      header = JSON.parse(new TextDecoder().decode(hb));
    } catch {
      throw new Error(`${file}: safetensors header is not JSON`);
    }
    const out: TensorInfo[] = [];
    for (const [name, t] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const eb = DTYPE_BYTES[t.dtype];
      if (!eb) throw new Error(`${file}: tensor ${name} has dtype ${t.dtype}; kvc reads F32, F16 and BF16`);
      const [a, b] = t.data_offsets as [number, number];
      const count = (t.shape as number[]).reduce((x, y) => x * y, 1);
      if (b - a !== count * eb) throw new Error(`${file}: tensor ${name} byte range does not match shape ${JSON.stringify(t.shape)}`);
      if (8 + n + b > size) throw new Error(`${file}: tensor ${name} runs past the end of the file (truncated download?)`);
      out.push({ name, file, dtype: t.dtype, shape: t.shape, offset: 8 + n + a, bytes: b - a });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** All tensors of an HF folder: model.safetensors or the shards of model.safetensors.index.json. */
export function listTensors(dir: string): Map<string, TensorInfo> {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  let files: string[];
  if (existsSync(index)) {
    const map = readJson(index).weight_map as Record<string, string>;
    if (!map) throw new Error(`${index}: no weight_map`);
    files = [...new Set(Object.values(map))].map((f) => join(dir, f));
    for (const f of files) if (!existsSync(f)) throw new Error(`missing shard ${f} (named in ${index})`);
  } else if (existsSync(single)) {
    files = [single];
  } else {
    throw new Error(`missing weights in ${dir}: neither model.safetensors nor model.safetensors.index.json`);
  }
  const all = new Map<string, TensorInfo>();
  for (const f of files) for (const t of readHeader(f)) all.set(t.name, t);
  return all;
}

/** Reads a tensor's bytes [start, start + len) into `dst` (a reusable chunk); GGUF tensors too. */
export function readTensorBytes(t: Pick<TensorInfo, "file" | "name" | "offset">, start: number, dst: Uint8Array, len: number) {
  const fd = openSync(t.file, "r");
  try {
    let done = 0;
    while (done < len) {
      const n = readSync(fd, dst, done, len - done, t.offset + start + done);
      if (n <= 0) throw new Error(`${t.file}: unexpected end of file reading ${t.name}`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}
