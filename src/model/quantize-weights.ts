// On-load quantization (--quantize): a model's f16 matrices quantized on the GPU by
// kernels/quantize.wgsl into the block formats kernels/quant.wgsl reads, shard by
// shard (each f16 shard is freed once its quantized copy exists).
import { createStorage } from "../gpu/buffers.ts";
import { cdiv, type KernelContext } from "../gpu/kernels.ts";
import { QUANT, rowWords, type QuantType } from "./quant.ts";
import type { Matrix, MatrixShard, ModelWeights } from "./weights.ts";

/** Formats --quantize offers (Q6_K is read from GGUF files only). */
export const ON_LOAD_QUANTS = ["q8_0", "q4_0", "q4_k"] as const;
export type OnLoadQuant = (typeof ON_LOAD_QUANTS)[number];

/**
 * The format rows of K weights get: `want` where K is whole blocks of it; Q4_K rows that
 * are not whole 256-blocks fall back to Q4_0 (llama.cpp falls back to Q5_0, which kvc
 * does not read); rows that are not whole 32-blocks stay f16.
 */
export function quantFor(want: OnLoadQuant, K: number): QuantType | null {
  if (K % QUANT[want].block === 0) return want;
  return K % 32 === 0 ? "q4_0" : null;
}

/** One f16 shard (rows x K, K % 8 == 0) quantized into a new buffer; the caller frees the old one. */
export function quantizeShard(kc: KernelContext, s: MatrixShard, K: number, t: QuantType, label: string): MatrixShard {
  if (t === "q6_k") throw new Error("Q6_K is not made on load");
  const out = createStorage(kc.device, s.rows * rowWords(t, K) * 4, `${label}[${t}]`);
  const per = t === "q4_k" ? K / 256 : cdiv(K / 32, 2);
  const st = kc.step();
  st.dispatch(kc.kernel("quantize", { Q8: t === "q8_0", Q4K: t === "q4_k", BODY: QUANT[t].bodyWords }), [s.buffer, out], [K, s.rows], [cdiv(per, 64), Math.min(s.rows, 65535), cdiv(s.rows, 65535)]);
  st.submit();
  return { buffer: out, rowStart: s.rowStart, rows: s.rows, quant: t };
}

function quantizeMatrix(kc: KernelContext, m: Matrix, want: OnLoadQuant, label: string): Matrix {
  const t = quantFor(want, m.K);
  if (!t) return m;
  const shards = m.shards.map((s, i) => {
    if (s.quant) return s;
    const q = quantizeShard(kc, s, m.K, t, `${label}[${i}]`);
    s.buffer.destroy();
    return q;
  });
  return { ...m, shards };
}

/** `w` with every f16 matrix quantized (the tied head once, with the embedding); the f16 buffers are freed. */
export function quantizeWeights(kc: KernelContext, w: ModelWeights, want: OnLoadQuant): ModelWeights {
  kc.forgetBindGroups();
  const embed = quantizeMatrix(kc, w.embed, want, "embed");
  const lmHead = w.lmHead === w.embed ? embed : quantizeMatrix(kc, w.lmHead, want, "lm_head");
  const layers = w.layers.map((l, i) => ({
    ...l,
    qkv: quantizeMatrix(kc, l.qkv, want, `L${i}.qkv`),
    o: quantizeMatrix(kc, l.o, want, `L${i}.o`),
    gateUp: quantizeMatrix(kc, l.gateUp, want, `L${i}.gate_up`),
    down: quantizeMatrix(kc, l.down, want, `L${i}.down`),
  }));
  const buffers = new Set([w.norm, ...layers.flatMap((l) => [l.ln1, l.ln2, l.qkvBias]), ...[embed, lmHead, ...layers.flatMap((l) => [l.qkv, l.o, l.gateUp, l.down])].flatMap((m) => m.shards.map((s) => s.buffer))]);
  let bytes = 0;
  for (const b of buffers) bytes += b?.size ?? 0;
  return { embed, layers, norm: w.norm, lmHead, bytes };
}
